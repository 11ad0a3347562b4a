"""`python -m dar evaluate` end to end on the digits feature space, and its refusals of bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from dar.data import digits
from dar.metrics.evaluate import METRIC_KEYS
from dar.metrics.evaluate import main as evaluate_main
from dar.metrics.extractors import FEATURE_SPACES, build_extractor
from dar.metrics.reference import compute_reference, load_dataset_images
from dar.provenance import file_sha256

N = 60  # tiny sample file: the first 60 held-out digits
SIDECAR = {"checkpoint": "ckpt/0001000.pt", "iteration": 1000, "model": "SiT-S/2", "routing": "dar-static-c4"}
SIDECAR |= {"sampler": "ode", "nfe": 250, "cfg_scale": 1.5, "cfg_channels": 3, "seeds": [0, N], "git_commit": "sampler-commit"}


@pytest.fixture(scope="module")
def setup(tmp_path_factory, digits_net_path):
    """A digits-train reference cache, an ADM-format twin of it, and a sample file of real held-out digits."""
    root = tmp_path_factory.mktemp("evaluate")
    space = FEATURE_SPACES["digits"]
    train = load_dataset_images("digits-train")
    arrays = compute_reference(
        train, space, build_extractor(space, digits_net_path), file_sha256(digits_net_path), "digits-train"
    )
    ref = root / "ref.npz"
    np.savez(ref, **arrays)
    adm = root / "adm.npz"  # ADM reference-batch layout: images + precomputed statistics, no metadata
    np.savez(adm, arr_0=train, **{k: arrays[k] for k in ("mu", "sigma", "mu_s", "sigma_s")})

    images, labels = digits.load_split("heldout")
    samples = root / "samples.npz"
    np.savez(samples, arr_0=digits.to_uint8(images[:N]), labels=labels[:N].numpy())
    (root / "samples.npz.json").write_text(json.dumps(SIDECAR))
    return {"root": root, "ref": ref, "adm": adm, "samples": samples, "weights": digits_net_path, "arrays": arrays}


def _args(s, out, **over) -> list[str]:
    a = {"samples": s["samples"], "reference": s["ref"], "features": "digits", "weights": s["weights"], "num-samples": N}
    a |= {"out": out, "device": "cpu"} | over
    return [x for k, v in a.items() if v is not None for x in (f"--{k}", str(v))]


def test_evaluate_end_to_end(setup, tmp_path, capsys):
    out = tmp_path / "result.json"
    assert evaluate_main(_args(setup, out)) == 0
    assert "digits-feature metrics" in capsys.readouterr().out
    result = json.loads(out.read_text())

    m = result["metrics"]
    assert set(m) == set(METRIC_KEYS) and all(np.isfinite(v) for v in m.values())
    assert m["fid"] < 40 and m["precision"] > 0.7 and m["recall"] > 0.5 and m["is_mean"] > 3  # real digits vs real digits
    assert result["feature_space"] == "digits" and "Inception" not in result["feature_space_label"].split("NOT")[0]
    assert result["checks"]["fid_adm_sqrtm"] == pytest.approx(m["fid"], rel=1e-6, abs=1e-6)

    p = result["protocol"]
    for key, value in SIDECAR.items():  # the sidecar verbatim ...
        assert p[key if key != "git_commit" else "sampling_git_commit"] == value
    assert p["num_samples"] == N and p["samples"]["images_in_file"] == N  # ... plus the evaluation's own record
    assert p["reference"]["path"] == str(setup["ref"]) and p["reference"]["sha256"] == file_sha256(setup["ref"])
    assert p["reference"]["content_sha256"] == str(setup["arrays"]["content_sha256"])
    assert p["feature_extractor"]["name"] == "dar-digits"
    assert p["feature_extractor"]["weights_sha256"] == file_sha256(setup["weights"])
    assert p["torch_fidelity"] == "0.4.0" and p["git_commit"] != "sampler-commit"
    assert p["metric_settings"] == {
        "is_split_size": 5000, "is_splits": 1, "is_shuffle": False, "prc_neighborhood": 3, "prc_input1": "generated",
        "prc_input2": "reference",
    }  # fmt: skip
    assert result["wall_seconds"] > 0


def test_evaluate_without_the_adm_cross_check_gives_the_same_metrics(setup, tmp_path):
    with_check, without = tmp_path / "with.json", tmp_path / "without.json"
    assert evaluate_main(_args(setup, with_check)) == 0
    assert evaluate_main([*_args(setup, without), "--no-adm-cross-check"]) == 0
    a, b = (json.loads(p.read_text()) for p in (with_check, without))
    assert set(a["checks"]) == {"fid_adm_sqrtm", "sfid_adm_sqrtm"} and b["checks"] == {}
    assert a["metrics"] == b["metrics"]


def test_adm_batch_reference_matches_the_cache(setup, tmp_path):
    # The same statistics in an ADM-layout file: FID/sFID identical; PR from its images equals the cached features'.
    a, b = tmp_path / "cache.json", tmp_path / "adm.json"
    assert evaluate_main(_args(setup, a)) == 0
    assert evaluate_main(_args(setup, b, reference=setup["adm"])) == 0
    ma, mb = json.loads(a.read_text())["metrics"], json.loads(b.read_text())["metrics"]
    assert ma == pytest.approx(mb, rel=1e-6)
    assert json.loads(b.read_text())["protocol"]["reference"]["kind"] == "adm-batch"


def test_first_num_samples_are_used(setup, tmp_path):
    # --num-samples 30 on the 60-image file scores exactly like a file holding only those first 30.
    first = tmp_path / "first30.npz"
    np.savez(first, arr_0=np.load(setup["samples"])["arr_0"][:30])
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    assert evaluate_main(_args(setup, a, **{"num-samples": 30})) == 0
    assert evaluate_main(_args(setup, b, samples=first, **{"num-samples": 30})) == 0
    ra, rb = json.loads(a.read_text()), json.loads(b.read_text())
    assert ra["metrics"] == rb["metrics"]
    assert ra["protocol"]["num_samples"] == 30 and ra["protocol"]["samples"]["images_in_file"] == N


def _write(path, **arrays):
    np.savez(path, **arrays)
    return path


def _bad_cases(s, root):
    good = np.load(s["samples"])["arr_0"]
    heldout = digits.to_uint8(digits.load_split("heldout")[0])
    noisy_train = load_dataset_images("digits-train")
    yield "float", {"samples": _write(root / "f.npz", arr_0=good.astype(np.float32) / 127.5 - 1)}, "dtype float32"
    yield "nchw", {"samples": _write(root / "c.npz", arr_0=good.transpose(0, 3, 1, 2))}, "looks like NCHW"
    yield "unit-range", {"samples": _write(root / "u.npz", arr_0=(good > 128).astype(np.uint8))}, "cast to uint8"
    yield "too-few", {"num-samples": N + 1}, f"holds {N} images but --num-samples is {N + 1}"
    yield "no-arr_0", {"samples": _write(root / "k.npz", images=good)}, "has no 'arr_0'"
    yield "missing", {"samples": root / "nope.npz"}, "does not exist"
    yield "labels", {"samples": _write(root / "l.npz", arr_0=good, labels=np.zeros(3, np.int64))}, "labels must be integers"
    big = np.repeat(np.repeat(heldout[:N], 2, axis=1), 2, axis=2)  # 16x16 digits against an 8x8 reference
    yield "resolution", {"samples": _write(root / "r16.npz", arr_0=big)}, "are 16x16x1 but reference"
    stats16 = {k: s["arrays"][k] for k in ("mu", "sigma", "mu_s", "sigma_s")}
    ref16 = _write(root / "ref16.npz", arr_0=np.repeat(np.repeat(noisy_train, 2, 1), 2, 2), **stats16)
    yield "ref-resolution", {"reference": ref16}, "holds 16x16x1 images"
    inception_like = {"mu": np.zeros(2048), "sigma": np.eye(2048), "mu_s": np.zeros(2023), "sigma_s": np.eye(2023)}
    adm = _write(root / "adm2048.npz", arr_0=noisy_train[:20], **inception_like)
    yield "inception-ref", {"reference": adm}, "has mu of size 2048, but digits 'features' features are 64-d"
    yield "no-weights", {"weights": None}, "needs --weights"
    yield "missing-weights", {"weights": root / "w.pt"}, "python -m dar digits-features"
    garbage = root / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    yield "garbage-weights", {"weights": garbage}, "could not load digits extractor weights"
    other = root / "other.pt"
    other.write_bytes(s["weights"].read_bytes() + b"\0")  # same net, different file hash
    yield "other-weights", {"weights": other}, "was computed with digits weights sha256"
    yield "channels", {"features": "inception"}, "has 1 channel(s) but the inception feature space takes 3"
    bad_sidecar = _write(root / "sc.npz", arr_0=good)
    (root / "sc.npz.json").write_text("{not json")
    yield "sidecar", {"samples": bad_sidecar}, "is not valid JSON"
    yield "out-dir", {"out": root}, "is a folder"
    if not torch.cuda.is_available():
        yield "no-cuda", {"device": "cuda"}, "no CUDA device is visible here"
    (root / "empty.npz").write_bytes(b"")
    yield "empty-file", {"samples": root / "empty.npz"}, "is empty (0 bytes)"
    np.save(root / "plain.npy", good)
    (root / "plain.npy").rename(root / "plain.npz")
    yield "npy-not-npz", {"samples": root / "plain.npz"}, "holds a single ndarray (a .npy), not an .npz"
    (root / "text.npz").write_text("hello")
    yield "not-npz", {"samples": root / "text.npz"}, "is not a readable .npz file"
    blank = _write(root / "black.npz", arr_0=np.zeros_like(good))  # what NaN samples became before they were refused
    yield "blank", {"samples": blank}, f"all {N} images are blank (every pixel is 0)"
    yield "three", {"num-samples": 3}, "--num-samples must be more than 3 (precision/recall use k = 3"
    yield "gpu", {"device": "gpu"}, "argument --device: 'gpu' is not a device (PyTorch calls GPUs 'cuda')"


def test_bad_inputs_fail_clearly_and_write_nothing(setup, tmp_path, capsys):
    cases = list(_bad_cases(setup, tmp_path))
    for name, over, message in cases:
        out = over.get("out", tmp_path / f"{name}.json")
        if name == "gpu":  # argparse's own refusal: usage line + message, status 2
            with pytest.raises(SystemExit) as e:
                evaluate_main(_args(setup, out, **over))
            assert e.value.code == 2 and message in capsys.readouterr().err
            continue
        rc = evaluate_main(_args(setup, out, **{k: v for k, v in over.items() if k != "out"}))
        err = capsys.readouterr().err
        assert rc == 2, (name, err)
        assert err.startswith("error: ") and message in err, (name, err)
        assert "Traceback" not in err
        if name != "out-dir":
            assert not out.exists(), name
    assert not [p for p in tmp_path.glob("*.json") if not p.name.endswith(".npz.json")]  # only the bad sidecar
    assert not list(tmp_path.glob(".*.tmp"))  # no leftover temporary files either
