"""Checkpoint files: checksums that survive a crash at any point of a save, and only real damage set aside."""

from __future__ import annotations

import os

import pytest
import torch

from dar.errors import CheckpointError
from dar.train import checkpoint as ckpt_io


def state(step: int) -> dict:
    return {"step": step, "model": {"w": torch.full((64,), float(step))}}


@pytest.fixture
def run_dir(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    return tmp_path


def _crash_before_rename(monkeypatch):
    """The process dies between writing the new checkpoint (and the record naming it) and renaming it into place."""
    real = os.replace

    def replace(src, dst):
        if str(dst).endswith(".pt"):
            raise KeyboardInterrupt("killed")
        real(src, dst)

    monkeypatch.setattr(os, "replace", replace)


def test_a_save_cut_short_keeps_the_file_in_place_valid_with_its_own_step(run_dir, monkeypatch):
    latest = run_dir / "checkpoints" / ckpt_io.LATEST
    ckpt_io.save(latest, state(500))
    ckpt_io.save(ckpt_io.milestone_path(run_dir, 600), state(600))
    with monkeypatch.context() as m:
        _crash_before_rename(m)
        with pytest.raises(KeyboardInterrupt):
            ckpt_io.save(latest, state(1000))
    rec = ckpt_io.recorded(latest)
    assert rec["step"] == 500 and rec["next"]["step"] == 1000  # the record describes the file that is there
    ckpt_io.verify(latest)
    assert ckpt_io.candidates(run_dir)[0].name == "step_0000600.pt", "the intact newer milestone comes first"
    assert ckpt_io.newest_intact(run_dir).name == "step_0000600.pt"
    ckpt_io.save(latest, state(1200))  # a later save after the crash is whole again
    assert ckpt_io.recorded(latest) == {"sha256": ckpt_io.sha256(latest), "step": 1200, "bytes": latest.stat().st_size}
    assert ckpt_io.load(latest)["step"] == 1200


def test_a_file_without_a_record_survives_a_save_cut_short(run_dir, monkeypatch):
    latest = run_dir / "checkpoints" / ckpt_io.LATEST
    torch.save(state(5), latest)  # written before checkpoints carried records
    with monkeypatch.context() as m:
        _crash_before_rename(m)
        with pytest.raises(KeyboardInterrupt):
            ckpt_io.save(latest, state(10))
    assert ckpt_io.newest_intact(run_dir) == latest and ckpt_io.load(latest)["step"] == 5


def test_only_damage_sets_a_checkpoint_aside(run_dir, monkeypatch):
    latest = run_dir / "checkpoints" / ckpt_io.LATEST
    ckpt_io.save(latest, state(3))
    real = torch.load

    def oom(*a, **k):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 8.00 GiB")

    monkeypatch.setattr(ckpt_io.torch, "load", oom)
    with pytest.raises(torch.OutOfMemoryError):
        ckpt_io.load(latest)
    monkeypatch.setattr(ckpt_io.torch, "load", real)
    assert ckpt_io.newest_intact(run_dir) == latest and latest.is_file(), "an intact file is never set aside"
    latest.write_bytes(latest.read_bytes()[:100])  # truncated: damage
    assert ckpt_io.newest_intact(run_dir) is None
    assert [
        p.name.split(".damaged-")[0]
        for p in (run_dir / "checkpoints").glob("*.damaged-*")
        if p.suffix == ".pt" or ".pt.damaged" in p.name
    ][:1] == ["latest.pt"]


def test_a_same_size_change_with_its_time_restored_is_still_caught(run_dir):
    path = ckpt_io.milestone_path(run_dir, 7)
    ckpt_io.save(path, state(7))
    ckpt_io.verify(path)  # hashed and cached
    st = path.stat()
    data = bytearray(path.read_bytes())
    data[-200] ^= 0xFF
    path.write_bytes(bytes(data))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # as cp -p or rsync -t would leave it
    with pytest.raises(CheckpointError, match="is damaged"):
        ckpt_io.verify(path)
