"""The training job: tiny runs, exact resume after SIGKILL, DDP equivalence, errors."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import tiny_cfg
from dar.__main__ import main as dar_main
from dar.config import ConfigError
from dar.data.cache import CacheConfig, run
from dar.fingerprint import IdentityMismatch
from dar.train import TrainingDiverged, train
from dar.train import checkpoint as ckpt_io
from dar.train.job import main as train_main
from dar.train.loop import DataOrder

ROOT = Path(__file__).resolve().parents[1]


def weights(run_dir, name="model"):
    state = ckpt_io.load(ckpt_io.newest(run_dir))
    return state[name]


def assert_same(a, b, exact=True):
    assert a.keys() == b.keys()
    for k in a:
        if exact:
            assert torch.equal(a[k], b[k]), k
        else:
            torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5, msg=k)


def test_tiny_digits_run_learns_and_records(digits_cache, tmp_path):
    out = train(tiny_cfg(digits_cache, tmp_path / "r", routing="dar-static-c4", iterations=30, milestones=[10], log_every=5))
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == [5, 10, 15, 20, 25, 30]
    assert lines[-1]["loss"] < lines[0]["loss"]
    for key in ("grad_norm", "lr", "images_per_s", "sec_per_step", "mem_gb", "routing_entropy", "routing_max_weight"):
        assert key in lines[-1]
    assert (out / "checkpoints" / "step_0000010.pt").is_file() and (out / "done.json").is_file()
    assert (out / "loss.png").stat().st_size > 1000
    saved = json.loads((out / "config.json").read_text())
    assert saved["config"]["routing"] == "dar-static-c4" and saved["arch"]["in_channels"] == 1
    model, ckpt = ckpt_io.load_for_inference(out / "checkpoints" / "step_0000010.pt")
    assert ckpt["step"] == 10 and model.routing_spec.name == "dar-static-c4"


def test_a_zoo_routing_and_its_width_matched_control_train_and_load(digits_cache, tmp_path):
    from dar.models.matched import matched_width

    out = train(tiny_cfg(digits_cache, tmp_path / "hc", routing="hc-dynamic-n4", iterations=6, milestones=[3]))
    model, _ = ckpt_io.load_for_inference(out / "checkpoints" / "step_0000003.pt")
    assert model.routing_spec.name == "hc-dynamic-n4"
    out = train(tiny_cfg(digits_cache, tmp_path / "ctrl", width_match="mhc-n4", iterations=6, milestones=[3]))
    saved = json.loads((out / "config.json").read_text())
    width = matched_width("SiT-T/2", "mhc-n4", input_size=8, in_channels=1, num_classes=10)
    assert width != 64 and saved["arch"]["hidden_size"] == width and saved["config"]["width_match"] == "mhc-n4"
    model, _ = ckpt_io.load_for_inference(out / "checkpoints" / "step_0000003.pt")
    assert model.hidden_size == width and model.routing_spec.name == "residual"


def test_imagefolder_run(tmp_path):
    from test_data import make_tree

    tree = make_tree(tmp_path / "tree")
    run(CacheConfig(dataset="imagefolder", root=str(tree), image_size=16, out=str(tmp_path / "lat"), shard_size=4, workers=0))
    out = train(tiny_cfg(tmp_path / "lat", tmp_path / "r", global_batch=4, iterations=3))
    assert (out / "done.json").is_file()
    assert json.loads((out / "config.json").read_text())["arch"]["in_channels"] == 3


def test_rerun_after_completion_does_nothing(digits_cache, tmp_path):
    cfg = tiny_cfg(digits_cache, tmp_path / "r", iterations=3)
    train(cfg)
    before = weights(tmp_path / "r")
    train(cfg)
    assert_same(before, weights(tmp_path / "r"))


def _cli(cache, out, extra=()):
    return [
        sys.executable,
        "-m",
        "dar",
        "train",
        "--data",
        str(cache),
        "--out",
        str(out),
        "--model",
        "SiT-T/2",
        "--routing",
        "dar-dynamic-c2",
        "--global-batch",
        "16",
        "--iterations",
        "40",
        "--ckpt-every",
        "5",
        "--log-every",
        "5",
        "--precision",
        "fp32",
        "--device",
        "cpu",
        "--deterministic",
        "true",
        *extra,
    ]


def test_sigkill_then_rerun_equals_uninterrupted(digits_cache, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run(_cli(digits_cache, tmp_path / "full"), check=True, env=env, capture_output=True)
    proc = subprocess.Popen(
        _cli(digits_cache, tmp_path / "killed"), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    latest = tmp_path / "killed" / "checkpoints" / "latest.pt"
    deadline = time.time() + 120
    while time.time() < deadline and not latest.exists():
        time.sleep(0.05)
    time.sleep(0.3)  # let it run past the checkpoint, then kill without warning
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    step_at_kill = torch.load(latest, weights_only=False)["step"]
    assert 5 <= step_at_kill < 40, "the run must be killed mid-way"
    subprocess.run(_cli(digits_cache, tmp_path / "killed"), check=True, env=env, capture_output=True)
    for name in ("model", "ema", "opt"):
        a, b = weights(tmp_path / "full", name), weights(tmp_path / "killed", name)
        if name == "opt":
            a, b = {str(k): v for k, v in a["state"].items()}, {str(k): v for k, v in b["state"].items()}
            for k in a:
                for kk in ("exp_avg", "exp_avg_sq"):
                    assert torch.equal(a[k][kk], b[k][kk])
        else:
            assert_same(a, b, exact=True)
    steps = [json.loads(x)["step"] for x in (tmp_path / "killed" / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(5, 41, 5)), "the loss curve must have no gaps or duplicates after resume"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_process_ddp_equals_one_process(digits_cache, tmp_path):
    common = ["--routing", "dar-static-c2", "--iterations", "4", "--global-batch", "16", "--micro-batch", "4"]
    base = [
        sys.executable,
        "-m",
        "dar",
        "train",
        "--data",
        str(digits_cache),
        "--model",
        "SiT-T/2",
        "--precision",
        "fp32",
        "--device",
        "cpu",
        "--ckpt-every",
        "4",
        "--log-every",
        "2",
        *common,
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([*base, "--out", str(tmp_path / "one")], check=True, env=env, capture_output=True)
    port = str(_free_port())
    procs = [
        subprocess.Popen(
            [*base, "--out", str(tmp_path / "two")],
            env={**env, "RANK": str(r), "LOCAL_RANK": str(r), "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for r in range(2)
    ]
    for p in procs:
        out, _ = p.communicate(timeout=300)
        assert p.returncode == 0, out.decode()
    assert_same(weights(tmp_path / "one"), weights(tmp_path / "two"), exact=False)
    assert json.loads((tmp_path / "two" / "config.json").read_text())["world_size"] == 2


def test_gradient_accumulation_matches_full_batch(digits_cache, tmp_path):
    train(tiny_cfg(digits_cache, tmp_path / "full", iterations=3, deterministic=False))
    train(tiny_cfg(digits_cache, tmp_path / "acc", iterations=3, micro_batch=4, deterministic=False))
    assert_same(weights(tmp_path / "full"), weights(tmp_path / "acc"), exact=False)


def test_nan_loss_stops_and_keeps_last_good_checkpoint(digits_cache, tmp_path):
    out = tmp_path / "r"
    train(tiny_cfg(digits_cache, out, iterations=3, ckpt_every=3))
    # The same run continued on a poisoned copy of the data diverges at step 4.
    poisoned = tmp_path / "poisoned"
    run(CacheConfig(dataset="digits", out=str(poisoned)))
    m = np.load(poisoned / "shard_00000" / "moments.npy")
    m[:, :, 0] = np.nan
    np.save(poisoned / "shard_00000" / "moments.npy", m)
    with pytest.raises(TrainingDiverged, match=r"loss is nan and gradient norm nan at step 4.*latest.pt"):
        train(tiny_cfg(poisoned, out, iterations=6, ckpt_every=3))
    assert torch.load(out / "checkpoints" / "latest.pt", weights_only=False)["step"] == 3


def test_data_order_covers_each_epoch_once():
    order = DataOrder(n=10, global_batch=4, seed=1)
    seen = torch.cat([order.positions(s) for s in range(5)])  # 20 samples = 2 epochs
    assert sorted(seen[:10].tolist()) == list(range(10)) and sorted(seen[10:].tolist()) == list(range(10))
    assert order.position_of(3) == {"epoch": 1, "offset": 2}


def test_bad_config_errors_and_writes_nothing(digits_cache, tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"modle": "SiT-T/2"}))
    assert train_main(["--config", str(bad), "--out", str(tmp_path / "r")]) == 2
    assert "unknown key(s) ['modle']" in capsys.readouterr().err
    assert train_main(["--model", "SiT-Q/2", "--out", str(tmp_path / "r")]) == 2
    assert "model: unknown 'SiT-Q/2'" in capsys.readouterr().err
    assert train_main(["--milestones", "5,500", "--iterations", "100", "--out", str(tmp_path / "r")]) == 2
    assert "milestones [500] lie outside" in capsys.readouterr().err
    assert train_main(["--data", str(tmp_path / "missing"), "--out", str(tmp_path / "r"), "--device", "cpu"]) == 2
    assert "run: python -m dar cache-latents" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()
    with pytest.raises(ConfigError, match="not divisible by micro_batch"):
        train(tiny_cfg(digits_cache, tmp_path / "r2", micro_batch=5))


def test_dry_run_prints_a_grid_runs_resolved_config(capsys):
    assert train_main(["--preset", "digits", "--run", "dynamic-c4", "--dry-run"]) == 0
    cfg = json.loads(capsys.readouterr().out)
    assert cfg["routing"] == "dar-dynamic-c4" and cfg["model"] == "SiT-T/2" and cfg["global_batch"] == 64
    assert cfg["out"].startswith("results/digits/runs/dynamic-c4/seed0-")
    assert train_main(["--preset", "digits", "--dry-run"]) == 2
    assert "--preset and --run go together" in capsys.readouterr().err
    assert train_main(["--preset", "digits", "--run", "nope", "--dry-run"]) == 2
    assert "run: 'nope' is not a run of preset digits" in capsys.readouterr().err


# ---------------------------------------------------------------------------
# Run identity: a run folder resumes only under the identity it was begun with
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "change, field",
    [
        ({"lr": 2e-3}, "identity.lr: 0.001 recorded there, 0.002 now"),
        ({"routing": "dar-static-c8"}, "identity.routing: 'dar-static-c4' recorded there, 'dar-static-c8' now"),
        ({"routing": "dar-explicit-c4"}, "identity.routing"),  # same keys and shapes as static: loads without complaint
        ({"seed": 1}, "identity.seed: 0 recorded there, 1 now"),
        ({"global_batch": 8}, "identity.global_batch"),
        ({"class_dropout": 0.2}, "identity.class_dropout"),
        ({"weight_decay": 0.01}, "identity.weight_decay"),
    ],
)
def test_resume_under_another_identity_is_refused(digits_cache, tmp_path, change, field):
    out = tmp_path / "r"
    train(tiny_cfg(digits_cache, out, routing="dar-static-c4", iterations=3, ckpt_every=3))
    before = weights(out)
    with pytest.raises(IdentityMismatch, match=re.escape(field)) as e:
        train(tiny_cfg(digits_cache, out, iterations=6, ckpt_every=3, **{"routing": "dar-static-c4", **change}))
    assert "--restart" in str(e.value) and "new run folder" in str(e.value)
    assert_same(before, weights(out))  # nothing was touched
    assert json.loads((out / "done.json").read_text())["identity"]["lr"] == 1e-3


def test_restart_sets_the_old_run_aside_and_trains_afresh(digits_cache, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="dar")
    out = tmp_path / "r"
    train(tiny_cfg(digits_cache, out, iterations=3, ckpt_every=3))
    old = weights(out)
    assert (
        train_main(
            ["--config", str(_config_file(tmp_path, tiny_cfg(digits_cache, out, iterations=3, lr=2e-3))), "--restart", "true"]
        )
        == 0
    )
    replaced = sorted(out.glob("replaced-*"))
    assert len(replaced) == 1 and (replaced[0] / "checkpoints").is_dir() and (replaced[0] / "metrics.jsonl").is_file()
    assert "set aside in" in caplog.text
    assert_same(old, ckpt_io.load(ckpt_io.newest(replaced[0]))["model"])  # the old run is kept, not overwritten
    fresh = train(tiny_cfg(digits_cache, tmp_path / "fresh", iterations=3, lr=2e-3))
    assert_same(weights(out), weights(fresh))  # the restarted run is exactly a new run of the new config
    assert ckpt_io.load(ckpt_io.newest(out))["identity"]["lr"] == 2e-3


def _config_file(tmp_path, cfg):
    from dar.config import to_dict

    path = tmp_path / "job.json"
    path.write_text(json.dumps(to_dict(cfg)))
    return path


def test_lengthening_a_run_continues_it_exactly(digits_cache, tmp_path):
    train(tiny_cfg(digits_cache, tmp_path / "a", iterations=3, ckpt_every=3))
    train(tiny_cfg(digits_cache, tmp_path / "a", iterations=6, ckpt_every=3))  # same identity: the length is not part of it
    train(tiny_cfg(digits_cache, tmp_path / "b", iterations=6, ckpt_every=3))
    assert_same(weights(tmp_path / "a"), weights(tmp_path / "b"))


def test_a_milestone_the_run_passed_without_keeping_is_refused(digits_cache, tmp_path):
    train(tiny_cfg(digits_cache, tmp_path / "r", iterations=6, ckpt_every=3))
    with pytest.raises(ConfigError, match=r"is at step 6 but kept no checkpoint at milestone\(s\) \[2\]"):
        train(tiny_cfg(digits_cache, tmp_path / "r", iterations=6, ckpt_every=3, milestones=[2, 6]))
    # the step the run stopped at is its newest checkpoint: asked for as a milestone later, it is kept
    train(tiny_cfg(digits_cache, tmp_path / "r", iterations=6, ckpt_every=3, milestones=[6]))
    assert ckpt_io.load(ckpt_io.milestone_path(tmp_path / "r", 6))["step"] == 6


def test_other_data_is_refused_on_resume(digits_cache, tmp_path):
    from test_data import make_tree

    train(tiny_cfg(digits_cache, tmp_path / "r", iterations=3, ckpt_every=3))
    tree = make_tree(tmp_path / "tree")
    run(CacheConfig(dataset="imagefolder", root=str(tree), image_size=8, out=str(tmp_path / "lat"), shard_size=4, workers=0))
    with pytest.raises(IdentityMismatch, match=r"identity\.data\.dataset: 'digits' recorded there, 'imagefolder' now"):
        train(tiny_cfg(tmp_path / "lat", tmp_path / "r", iterations=6, ckpt_every=3))
    # the same data in another shard layout is the same data: the run resumes from it
    run(CacheConfig(dataset="digits", out=str(tmp_path / "lat2"), shard_size=100))
    train(tiny_cfg(tmp_path / "lat2", tmp_path / "r", iterations=4, ckpt_every=2))
    # other latents under the same identity (a cache re-encoded with other numbers): the content hash differs
    m = np.load(tmp_path / "lat2" / "shard_00000" / "moments.npy")
    np.save(tmp_path / "lat2" / "shard_00000" / "moments.npy", m * 1.01)
    (tmp_path / "lat2" / "index.json").unlink()
    run(CacheConfig(dataset="digits", out=str(tmp_path / "lat2"), shard_size=100))  # finds its shards, rewrites the index
    with pytest.raises(IdentityMismatch, match=r"inputs\.latents_sha256"):
        train(tiny_cfg(tmp_path / "lat2", tmp_path / "r", iterations=6, ckpt_every=2))
    # a finished run reads no more data: rerunning it (e.g. after its cache was rebuilt) only notes the change
    train(tiny_cfg(tmp_path / "lat2", tmp_path / "r", iterations=4, ckpt_every=2))
    assert (tmp_path / "r" / "done.json").is_file()


def test_a_checkpoint_without_identity_is_refused(digits_cache, tmp_path):
    out = tmp_path / "r"
    train(tiny_cfg(digits_cache, out, iterations=3, ckpt_every=3))
    path = ckpt_io.newest(out)
    state = torch.load(path, weights_only=False)
    del state["identity"], state["inputs"]
    ckpt_io.save(path, state)  # as written before runs recorded what made them (with a valid checksum)
    with pytest.raises(IdentityMismatch, match="identity: missing recorded there"):
        train(tiny_cfg(digits_cache, out, iterations=6, ckpt_every=3))


def test_one_trainer_per_run_folder(digits_cache, tmp_path):
    from dar.lock import FolderBusy, FolderLock

    out = tmp_path / "r"
    with FolderLock(out, "training run folder"):  # another trainer holds the folder
        with pytest.raises(FolderBusy, match=rf"training run folder {out} is in use by pid {os.getpid()}"):
            train(tiny_cfg(digits_cache, out, iterations=3))
    assert not (out / "checkpoints").exists()


# ---------------------------------------------------------------------------
# Faults: non-finite states, damaged checkpoints, torn logs, full disks
# ---------------------------------------------------------------------------


def test_non_finite_weights_are_never_saved(digits_cache, tmp_path, monkeypatch):
    out = tmp_path / "r"
    train(tiny_cfg(digits_cache, out, iterations=3, ckpt_every=3))
    real, calls = torch.optim.AdamW.step, []

    def step(self, *a, **k):  # the update of step 6 goes wrong; the loss of that step was still finite
        result = real(self, *a, **k)
        calls.append(1)
        if len(calls) == 3:  # steps 4, 5, 6 after resuming from 3
            self.param_groups[0]["params"][0].data.fill_(float("inf"))
        return result

    monkeypatch.setattr(torch.optim.AdamW, "step", step)
    with pytest.raises(
        TrainingDiverged, match=r"the model state holds non-finite values at step 6.*Newest checkpoint: .*latest\.pt"
    ):
        train(tiny_cfg(digits_cache, out, iterations=6, ckpt_every=3))
    state = ckpt_io.load(out / "checkpoints" / "latest.pt")
    assert state["step"] == 3 and not ckpt_io.non_finite(state["model"]) and not ckpt_io.non_finite(state["ema"])


def test_a_damaged_latest_checkpoint_falls_back_to_the_newest_intact_one(digits_cache, tmp_path, capsys):
    out = tmp_path / "r"
    train(tiny_cfg(digits_cache, out, iterations=4, ckpt_every=2, milestones=[2]))  # step_0000002.pt, latest.pt at 4
    latest = out / "checkpoints" / "latest.pt"
    data = bytearray(latest.read_bytes())
    data[len(data) // 2] ^= 0x01  # one flipped bit
    latest.write_bytes(bytes(data))
    with pytest.raises(ckpt_io.CheckpointError, match=rf"checkpoint {latest} is damaged: its sha256"):
        ckpt_io.load(latest)
    train(tiny_cfg(digits_cache, out, iterations=6, ckpt_every=2, milestones=[2]))
    err = capsys.readouterr().err
    assert "is damaged" in err and "set aside as latest.pt.damaged-" in err and "trying the next newest" in err
    damaged = [p for p in (out / "checkpoints").glob("latest.pt.damaged-*") if not p.name.endswith(".json")]
    assert len(damaged) == 1, "the damaged file is kept, set aside"
    train(tiny_cfg(digits_cache, tmp_path / "clean", iterations=6, ckpt_every=2, milestones=[2]))
    assert_same(weights(out), weights(tmp_path / "clean"))  # resumed from step 2: the same run
    steps = [json.loads(x)["step"] for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == [2, 4, 6]


@pytest.mark.parametrize("damage", ["empty", "truncated", "not a checkpoint"])
def test_unreadable_checkpoints_name_the_file(digits_cache, tmp_path, damage, capsys):
    out = train(tiny_cfg(digits_cache, tmp_path / "r", iterations=2, ckpt_every=2, milestones=[2]))
    path = out / "checkpoints" / "step_0000002.pt"
    ckpt_io.sidecar(path).unlink()  # no checksum to compare: only readability is left to check
    data = path.read_bytes()
    path.write_bytes({"empty": b"", "truncated": data[: len(data) // 3], "not a checkpoint": b"hello"}[damage])
    rc = dar_main(["sample", "--checkpoint", str(path), "--out", str(tmp_path / "s.npz"), "--device", "cpu"])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith(f"error: checkpoint {path} ") and "Traceback" not in err
    assert not (tmp_path / "s.npz").exists()


def test_a_torn_metrics_line_is_dropped_on_resume(digits_cache, tmp_path, caplog):
    out = tmp_path / "r"
    train(tiny_cfg(digits_cache, out, iterations=4, ckpt_every=2, log_every=2))
    with open(out / "metrics.jsonl", "a") as f:
        f.write('{"step": 6, "lo')  # a write cut short by a full disk or a kill
    train(tiny_cfg(digits_cache, out, iterations=6, ckpt_every=2, log_every=2))
    assert f"{out / 'metrics.jsonl'} line 3 is cut short" in caplog.text
    assert [json.loads(x)["step"] for x in (out / "metrics.jsonl").read_text().splitlines()] == [2, 4, 6]


def test_labels_outside_the_classes_are_refused(tmp_path):
    from dar.errors import DataError

    run(CacheConfig(dataset="digits", out=str(tmp_path / "lat")))
    labels = np.load(tmp_path / "lat" / "shard_00000" / "labels.npy")
    labels[0] = 10  # = num_classes: the model's null (CFG) class
    np.save(tmp_path / "lat" / "shard_00000" / "labels.npy", labels)
    with pytest.raises(DataError, match=r"labels span 0\.\.10 but its index says num_classes = 10"):
        train(tiny_cfg(tmp_path / "lat", tmp_path / "r", iterations=1))


def test_a_full_disk_while_logging_is_said_plainly(digits_cache, tmp_path, monkeypatch):
    from dar.errors import DiskFullError
    from dar.train import sinks

    real_open = open

    def full_open(path, mode="r", *a, **k):
        if str(path).endswith("metrics.jsonl") and "a" in mode:
            return real_open("/dev/full", "w")
        return real_open(path, mode, *a, **k)

    monkeypatch.setattr(sinks, "open", full_open, raising=False)
    with pytest.raises(DiskFullError, match=r"no space left on device while writing .*metrics\.jsonl"):
        train(tiny_cfg(digits_cache, tmp_path / "r", iterations=2, log_every=1))


def test_official_train_py_checkpoints_load_their_ema_weights(tmp_path):
    """SiT's and DiT's train.py save {"model", "ema", "opt", "args"}; their find_model takes "ema"."""
    from dar.models import build_model

    torch.manual_seed(0)
    ema = build_model("SiT-T/2", "residual", input_size=8, in_channels=4, num_classes=10).eval()
    raw = build_model("SiT-T/2", "residual", input_size=8, in_channels=4, num_classes=10)
    torch.save(
        {"model": raw.state_dict(), "ema": ema.state_dict(), "opt": {}, "args": {"model": "SiT-T/2"}}, tmp_path / "0001000.pt"
    )
    model, _ = ckpt_io.load_for_inference(tmp_path / "0001000.pt")
    x, t, y = torch.randn(2, 4, 8, 8), torch.rand(2), torch.tensor([1, 2])
    torch.testing.assert_close(model(x, t, y), ema(x, t, y), rtol=0, atol=0)
