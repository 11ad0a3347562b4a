"""The sampling job: per-sample seeds, process/batch independence, shards, protocol, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from dar.data.cache import CacheConfig
from dar.data.cache import run as cache_run
from dar.fingerprint import IdentityMismatch, fingerprint
from dar.provenance import file_sha256
from dar.sampling import PerSampleRNG, save_grid
from dar.sampling.config import SampleConfig
from dar.sampling.job import main as sample_main
from dar.sampling.job import run, shard_dir
from dar.train import TrainConfig, train


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    root = tmp_path_factory.mktemp("sampling")
    cache_run(CacheConfig(dataset="digits", out=str(root / "lat")))
    cfg = TrainConfig(
        data=str(root / "lat"),
        out=str(root / "run"),
        model="SiT-T/2",
        routing="dar-static-c4",
        global_batch=16,
        iterations=4,
        milestones=[4],
        ckpt_every=4,
        log_every=2,
        lr=1e-3,
        precision="fp32",
        device="cpu",
    )
    train(cfg)
    return root / "run" / "checkpoints" / "step_0000004.pt"


def cfg(ckpt, out, **kw):
    base = dict(
        checkpoint=str(ckpt), out=str(out), sampler="ode", nfe=6, num_samples=20, batch_size=5, shard_size=8, device="cpu"
    )
    base.update(kw)
    return SampleConfig(**base)


def test_per_sample_streams_do_not_depend_on_the_batch():
    a = PerSampleRNG(7, [3, 4, 5]).randn((2, 2))
    b = PerSampleRNG(7, [5, 4]).randn((2, 2))
    torch.testing.assert_close(a[2], b[0], rtol=0, atol=0)
    torch.testing.assert_close(a[1], b[1], rtol=0, atol=0)
    assert not torch.equal(a[0], a[1])


def test_npz_format_protocol_and_grid(ckpt, tmp_path):
    out = run(cfg(ckpt, tmp_path / "s.npz", cfg_scale=1.5, grid=str(tmp_path / "g.png")))
    d = np.load(out)
    assert d["arr_0"].shape == (20, 8, 8, 1) and d["arr_0"].dtype == np.uint8 and d["labels"].shape == (20,)
    assert set(d["labels"].tolist()) <= set(range(10)) and len(set(d["labels"].tolist())) > 3
    p = json.loads((tmp_path / "s.npz.json").read_text())
    assert p["iteration"] == 4 and p["routing"] == "dar-static-c4" and p["sampler"] == "ode-heun"
    assert p["nfe_used"] == [6] and p["cfg_scale"] == 1.5 and p["cfg_channels"] == 3 and p["num_samples"] == 20
    assert p["decoder"]["name"] == "identity" and "git_commit" in p["environment"]
    ck = torch.load(ckpt, weights_only=False)
    assert p["identity"]["checkpoint"] == {"run": ck["fingerprint"], "iteration": 4}
    assert p["fingerprint"] == fingerprint(p["identity"]) and p["inputs"]["checkpoint_sha256"] == file_sha256(ckpt)
    assert (tmp_path / "g.png").stat().st_size > 100 and not shard_dir(out).exists()


def test_same_file_on_one_and_two_processes(ckpt, tmp_path, monkeypatch):
    one = np.load(run(cfg(ckpt, tmp_path / "one.npz", sampler="sde")))
    for rank in (1, 0):
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", "2")
        run(cfg(ckpt, tmp_path / "two.npz", sampler="sde"))
        if rank == 1:
            assert not (tmp_path / "two.npz").exists()  # rank 0's shards are still missing
            names = sorted(p.name for p in shard_dir(tmp_path / "two.npz").iterdir())
            assert names == ["manifest.json", "shard_00000008_00000016.npz"]
    two = np.load(tmp_path / "two.npz")
    assert np.array_equal(one["arr_0"], two["arr_0"]) and np.array_equal(one["labels"], two["labels"])


def test_batch_size_does_not_change_the_samples(ckpt, tmp_path):
    a = np.load(run(cfg(ckpt, tmp_path / "a.npz", batch_size=5)))["arr_0"].astype(int)
    b = np.load(run(cfg(ckpt, tmp_path / "b.npz", batch_size=3)))["arr_0"].astype(int)
    assert np.abs(a - b).max() <= 1  # float reduction order can move a value across a rounding boundary
    assert (a == b).mean() > 0.99


def test_rerun_skips_finished_shards(ckpt, tmp_path, monkeypatch):
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    run(cfg(ckpt, tmp_path / "s.npz"))  # shards 0 and 2 of 3
    done = shard_dir(tmp_path / "s.npz") / "shard_00000000_00000008.npz"
    mtime = done.stat().st_mtime_ns
    monkeypatch.setenv("WORLD_SIZE", "1")
    calls = []
    import dar.sampling.job as job

    real = job.generate
    monkeypatch.setattr(job, "generate", lambda *a, **k: (calls.append(list(a[3])), real(*a, **k))[1])
    run(cfg(ckpt, tmp_path / "s.npz"))
    assert calls == [list(range(8, 16))]  # only the missing shard 1 was generated
    assert (tmp_path / "s.npz").is_file() and mtime > 0


def _interrupted(ckpt, out, monkeypatch, **kw):
    """A sampling run cut off after its first shard (rank 0 of 2 makes shards 0 and 2; rank 1 never ran)."""
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    run(cfg(ckpt, out, **kw))
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert not out.exists()


def test_a_rerun_with_another_shard_size_makes_exactly_the_samples_asked_for(ckpt, tmp_path, monkeypatch):
    full = np.load(run(cfg(ckpt, tmp_path / "full.npz", batch_size=2, shard_size=8)))
    _interrupted(ckpt, tmp_path / "s.npz", monkeypatch, batch_size=2, shard_size=8)
    out = np.load(run(cfg(ckpt, tmp_path / "s.npz", batch_size=2, shard_size=4)))
    assert len(out["arr_0"]) == 20 and np.array_equal(out["labels"], full["labels"])
    assert np.array_equal(out["arr_0"], full["arr_0"])  # no sample duplicated or missing
    assert json.loads((tmp_path / "s.npz.json").read_text())["num_samples"] == 20


def test_a_rerun_from_another_checkpoint_at_the_same_path_is_refused(ckpt, tmp_path, monkeypatch, capsys):
    import shutil

    path = tmp_path / "ckpt.pt"
    shutil.copy(ckpt, path)
    _interrupted(path, tmp_path / "s.npz", monkeypatch)
    other = train(TrainConfig(**{**torch.load(ckpt, weights_only=False)["config"], "seed": 1, "out": str(tmp_path / "run1")}))
    shutil.copy(other / "checkpoints" / "step_0000004.pt", path)  # a retrained run, copied over the same path
    with pytest.raises(IdentityMismatch, match=r"identity\.checkpoint\.run: '[0-9a-f]+' recorded there") as e:
        run(cfg(path, tmp_path / "s.npz"))
    assert "--restart" in str(e.value)
    assert sample_main(["--config", _job(tmp_path, cfg(path, tmp_path / "s.npz"))]) == 2
    assert "error: sample shard folder" in capsys.readouterr().err
    # --restart discards the shards of the earlier checkpoint: the file is all of the new one's
    out = np.load(run(cfg(path, tmp_path / "s.npz", restart=True)))
    fresh = np.load(run(cfg(path, tmp_path / "fresh.npz")))
    assert np.array_equal(out["arr_0"], fresh["arr_0"])
    # the same checkpoint's bytes changed under the same identity (e.g. rewritten): the sha256 differs
    _interrupted(path, tmp_path / "t.npz", monkeypatch)
    state = torch.load(path, weights_only=False)
    state["ema"] = {k: v + 0.01 for k, v in state["ema"].items()}
    torch.save(state, path)
    with pytest.raises(IdentityMismatch, match=r"inputs\.checkpoint_sha256"):
        run(cfg(path, tmp_path / "t.npz"))


def _job(tmp_path, c) -> str:
    from dar.config import to_dict

    path = tmp_path / "job.json"
    path.write_text(json.dumps(to_dict(c)))
    return str(path)


def test_bad_inputs(ckpt, tmp_path, capsys):
    assert sample_main(["--checkpoint", str(tmp_path / "nope.pt"), "--out", str(tmp_path / "x.npz")]) == 2
    assert "does not exist; train that run first" in capsys.readouterr().err
    assert sample_main(["--checkpoint", str(ckpt), "--sampler", "ode-rk4", "--out", str(tmp_path / "x.npz")]) == 2
    assert "unknown sampler" in capsys.readouterr().err
    assert sample_main(["--checkpoint", str(ckpt), "--nfe", "7", "--out", str(tmp_path / "x.npz")]) == 2
    assert "NFE must be even" in capsys.readouterr().err
    assert not (tmp_path / "x.npz").exists()


def test_grid_layout(tmp_path):
    imgs = np.zeros((4, 2, 2, 1), dtype=np.uint8)
    imgs[3] = 200
    from PIL import Image

    path = save_grid(imgs, tmp_path / "g.png", ncol=2, pad=1)
    arr = np.array(Image.open(path))
    assert arr.shape == (7, 7) and arr[4:6, 4:6].min() == 200 and arr[1:3, 1:3].max() == 0


def test_bare_official_style_sit_state_dict_loads_and_samples(tmp_path):
    """The official SiT-XL-2-256x256.pt is a bare state_dict; a SiT-T/2 one stands in for it here."""
    from dar.models import build_model
    from dar.train.checkpoint import load_for_inference

    torch.manual_seed(0)
    ref = build_model("SiT-T/2", "residual", input_size=8, in_channels=4, num_classes=10).eval()
    for p in ref.parameters():
        if p.requires_grad:
            p.data.normal_(0, 0.1)
    torch.save(ref.state_dict(), tmp_path / "SiT-T-2-official.pt")
    model, ckpt = load_for_inference(tmp_path / "SiT-T-2-official.pt")
    assert ckpt["config"] == {"model": "SiT-T/2", "routing": "residual"} and ckpt["arch"]["num_classes"] == 10
    x, t, y = torch.randn(2, 4, 8, 8), torch.rand(2), torch.tensor([1, 2])
    torch.testing.assert_close(model(x, t, y), ref(x, t, y), rtol=0, atol=0)
    with pytest.raises(ValueError, match="pass --vae-path"):
        run(cfg(tmp_path / "SiT-T-2-official.pt", tmp_path / "s.npz"))


# ---------------------------------------------------------------------------
# Non-finite outputs are errors, never files
# ---------------------------------------------------------------------------


def test_non_finite_samples_are_an_error_not_a_black_file(ckpt, tmp_path, monkeypatch, capsys):
    from dar.errors import NonFiniteError
    from dar.sampling import loop

    real = loop.guided_velocity

    def exploding(*a, **k):  # a diverged model: the velocity overflows
        v = real(*a, **k)
        return lambda x, t: v(x, t) * float("inf")

    monkeypatch.setattr(loop, "guided_velocity", exploding)
    with pytest.raises(
        NonFiniteError,
        match=r"sampling from .* the sampled latents of 5 sample\(s\) \(indices \[0, 1, 2, 3, 4\]\) hold NaN",
    ):
        run(cfg(ckpt, tmp_path / "s.npz"))
    assert not (tmp_path / "s.npz").exists() and not list(shard_dir(tmp_path / "s.npz").glob("shard_*"))
    assert sample_main(["--config", _job(tmp_path, cfg(ckpt, tmp_path / "s.npz"))]) == 2
    assert capsys.readouterr().err.startswith("error: sampling from")


def test_a_checkpoint_with_non_finite_weights_is_refused(ckpt, tmp_path):
    from dar.errors import NonFiniteError
    from dar.train import checkpoint as ckpt_io

    state = ckpt_io.load(ckpt)
    state["ema"] = {k: torch.full_like(v, float("nan")) if v.is_floating_point() else v for k, v in state["ema"].items()}
    ckpt_io.save(tmp_path / "bad.pt", state)
    with pytest.raises(NonFiniteError, match=rf"checkpoint {tmp_path / 'bad.pt'} holds non-finite EMA weights"):
        run(cfg(tmp_path / "bad.pt", tmp_path / "s.npz"))
    assert not (tmp_path / "s.npz").exists()


def test_a_sampling_job_of_several_sets_draws_what_each_set_alone_draws(ckpt, tmp_path, capsys):
    """`sample-sets` (the per-run grouping of the digits preset) against `sample` per set (per-set grouping): the
    same images and labels, the same recorded identity; the marker lists each file with its sha256 and comes last."""
    from dar.__main__ import main as dar_main
    from dar.config import to_dict
    from dar.train.checkpoint import checkpoint_identity, load_for_inference
    from dar.train.checkpoint import sha256 as ckpt_sha256

    settings = [dict(sampler="ode", cfg_scale=1.0), dict(sampler="sde", cfg_scale=1.5, cfg_channels=None)]
    _, state = load_for_inference(str(ckpt))
    ck_identity = checkpoint_identity(state, ckpt_sha256(str(ckpt)))
    entries = []
    for i, kw in enumerate(settings):
        alone = cfg(ckpt, tmp_path / f"alone{i}.npz", **kw)
        assert dar_main(["sample", "--config", _job(tmp_path, alone)]) == 0
        grouped = cfg(ckpt, tmp_path / "group" / f"set{i}.npz", batch_size=7, **kw)
        entries.append({"config": to_dict(grouped), "identity": grouped.identity(ck_identity)})
    marker = tmp_path / "group" / "sets.done.json"
    job = tmp_path / "sets.json"
    job.write_text(json.dumps({"out": str(marker), "sets": entries}))
    assert dar_main(["sample-sets", "--config", str(job)]) == 0
    drawn = json.loads(marker.read_text())["sets"]
    for i, entry in enumerate(entries):
        a, b = np.load(tmp_path / f"alone{i}.npz"), np.load(entry["config"]["out"])
        np.testing.assert_array_equal(a["labels"], b["labels"])
        assert np.abs(a["arr_0"].astype(int) - b["arr_0"].astype(int)).max() <= 1  # batch 5 vs 7: last-ulp rounding
        side_a = json.loads((tmp_path / f"alone{i}.npz.json").read_text())
        side_b = json.loads((tmp_path / "group" / f"set{i}.npz.json").read_text())
        assert side_a["identity"] == side_b["identity"] == entry["identity"]
        assert drawn[i]["sha256"] == file_sha256(entry["config"]["out"])
    assert marker.stat().st_mtime >= max((tmp_path / "group" / f"set{i}.npz").stat().st_mtime for i in range(2))


def test_a_sampling_job_refuses_a_set_whose_file_records_another_identity(ckpt, tmp_path, capsys):
    """The grid's expected identity is checked after each set: a checkpoint of another run at the path is an error
    naming the field, and no marker is written."""
    from dar.__main__ import main as dar_main
    from dar.config import to_dict

    c = cfg(ckpt, tmp_path / "set.npz")
    wrong = c.identity({"run": "0" * 12, "iteration": 4})
    marker = tmp_path / "sets.done.json"
    job = tmp_path / "sets.json"
    job.write_text(json.dumps({"out": str(marker), "sets": [{"config": to_dict(c), "identity": wrong}]}))
    assert dar_main(["sample-sets", "--config", str(job)]) == 2
    err = capsys.readouterr().err
    assert "identity.checkpoint.run" in err and not marker.exists()
