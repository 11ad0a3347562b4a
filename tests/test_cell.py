"""The cell job: its protocol is read from the sample files it evaluates, and it refuses samples made otherwise."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dar.cell import CellConfig, cell_identity
from dar.cell import main as cell_main
from dar.cell import run as cell_run
from dar.config import to_dict
from dar.data import digits
from dar.fingerprint import IdentityMismatch, fingerprint
from dar.metrics.extractors import FEATURE_SPACES, build_extractor
from dar.metrics.reference import compute_reference, load_dataset_images
from dar.provenance import file_sha256

N = 40
IDENTITY = {"checkpoint": {"run": "0123456789ab", "iteration": 10}, "sampler": "ode", "nfe": 4, "cfg_scale": 1.0}
IDENTITY |= {"cfg_channels": None, "cfg_interval": [], "num_samples": N, "seed": 0, "ema": True}


def sidecar(identity=IDENTITY, **over):
    """What the sampling job records beside a sample file (dar/sampling/job.py)."""
    side = {"identity": identity, "fingerprint": fingerprint(identity), "iteration": 10, "model": "SiT-T/2"}
    side |= {"routing": "dar-static-c4-repa", "sampler": "ode-heun", "sampler_alias": "ode", "nfe": 4, "cfg_scale": 1.0}
    side |= {"cfg_channels": "all", "num_samples": N, "seed": 0}
    return side | over


@pytest.fixture(scope="module")
def setup(tmp_path_factory, digits_net_path):
    root = tmp_path_factory.mktemp("cell")
    space = FEATURE_SPACES["digits"]
    arrays = compute_reference(
        load_dataset_images("digits-train"), space, build_extractor(space, digits_net_path), file_sha256(digits_net_path), "x"
    )
    np.savez(root / "ref.npz", **arrays)
    images, labels = digits.load_split("heldout")
    np.savez(root / "s.npz", arr_0=digits.to_uint8(images[:N]), labels=labels[:N].numpy())
    (root / "s.npz.json").write_text(json.dumps(sidecar()))
    return root, digits_net_path


def config(root, weights, tmp_path, **over) -> CellConfig:
    base = dict(
        table="table3", name="dar-repa_it10_ode_cfg1.0", out=str(tmp_path / "cell.json"), preset="t", scale="digits",
        run="dar-repa", label="DAR+REPA", cfg=False, paper_iteration=100_000,
        expect={"model": "SiT-T/2", "routing": "dar-static-c4-repa", "iteration": 10}, seeds=[0], samples=[str(root / "s.npz")],
        sample_identities=[IDENTITY], evals=[str(tmp_path / "eval0.json")], features="digits",
        reference=str(root / "ref.npz"), reference_name="digits-train", weights=str(weights), num_samples=N, device="cpu",
    )  # fmt: skip
    return CellConfig(**{**base, **over})


def test_cell_reads_its_protocol_from_the_samples(setup, tmp_path):
    root, weights = setup
    cfg = config(root, weights, tmp_path)
    res = cell_run(cfg)
    assert json.loads((tmp_path / "cell.json").read_text()) == json.loads(json.dumps(res))
    assert res["routing"] == "dar-static-c4-repa" and res["model"] == "SiT-T/2" and res["iteration"] == 10
    assert res["fingerprint"] == fingerprint(cell_identity(cfg)) and res["identity"]["samples"] == [fingerprint(IDENTITY)]
    assert res["metrics"]["fid"]["n"] == 1 and res["paper"]["fid"] == 7.09  # Table 3, DAR+REPA at 100K
    assert res["protocols"][0]["routing"] == "dar-static-c4-repa" and res["protocols"][0]["reference"]["sha256"]


@pytest.mark.parametrize(
    "over, message",
    [
        # the grid's run was changed to another routing; the samples still come from the old checkpoint
        (
            {"expect": {"model": "SiT-T/2", "routing": "dar-static-c8", "iteration": 10}},
            "routing: 'dar-static-c4-repa' recorded there, 'dar-static-c8' now",
        ),
        ({"expect": {"model": "SiT-S/2", "routing": "dar-static-c4-repa", "iteration": 10}}, "model: 'SiT-T/2' recorded there"),
        (
            {"expect": {"model": "SiT-T/2", "routing": "dar-static-c4-repa", "iteration": 20}},
            "iteration: 10 recorded there, 20 now",
        ),
        ({"sample_identities": [{**IDENTITY, "cfg_scale": 1.5}]}, "cfg_scale: 1.0 recorded there, 1.5 now"),
        ({"sample_identities": [{**IDENTITY, "checkpoint": {"run": "ffffffffffff", "iteration": 10}}]}, "checkpoint.run"),
    ],
)
def test_cell_refuses_samples_made_under_another_protocol(setup, tmp_path, over, message):
    root, weights = setup
    with pytest.raises(IdentityMismatch, match=message.replace("(", r"\(").replace(".", r"\.")) as e:
        cell_run(config(root, weights, tmp_path, **over))
    assert "forcerun sample" in str(e.value)
    assert not (tmp_path / "cell.json").exists() and not (tmp_path / "eval0.json").exists()


def test_cell_cli_reads_one_config_file_and_names_missing_samples(setup, tmp_path, capsys):
    root, weights = setup
    cfg = config(root, weights, tmp_path, samples=[str(tmp_path / "missing.npz")])
    path = tmp_path / "job.json"
    path.write_text(json.dumps(to_dict(cfg)))
    assert cell_main(["--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: sample file") and "missing.npz" in err and "snakemake" in err
    path.write_text(json.dumps(to_dict(config(root, weights, tmp_path))))
    assert cell_main(["--config", str(path)]) == 0
    assert "[cell]" in capsys.readouterr().out


def test_cell_refuses_samples_of_checkpoint_bytes_that_are_gone(setup, tmp_path):
    """A run restarted under the same identity rewrites its checkpoints: its old samples are not the new weights'."""
    root, weights = setup
    ckpt = tmp_path / "step_0000010.pt"
    ckpt.write_bytes(b"the checkpoint as it is now")
    samples = tmp_path / "s.npz"
    samples.write_bytes((root / "s.npz").read_bytes())
    side = sidecar(checkpoint=str(ckpt), inputs={"checkpoint_sha256": "0" * 64})  # drawn from other bytes
    (tmp_path / "s.npz.json").write_text(json.dumps(side))
    with pytest.raises(IdentityMismatch, match=r"checkpoint_sha256: '0000.*' recorded there, '[0-9a-f]{64}' now") as e:
        cell_run(config(root, weights, tmp_path, samples=[str(samples)]))
    assert "was restarted" in str(e.value) and "--forcerun sample" in str(e.value)
    # a sidecar whose fingerprint is not its identity's (edited by hand) is refused too
    (tmp_path / "s.npz.json").write_text(json.dumps(sidecar(fingerprint="feedfacecafe")))
    with pytest.raises(IdentityMismatch, match="fingerprint: 'feedfacecafe' recorded there"):
        cell_run(config(root, weights, tmp_path, samples=[str(samples)]))
