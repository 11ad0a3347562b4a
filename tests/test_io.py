"""Atomic outputs: ordinary permissions, and a full disk said plainly with nothing left behind."""

from __future__ import annotations

import os
import stat
import tempfile

import numpy as np
import pytest
import torch

from dar import io
from dar.errors import DiskFullError


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_atomic_outputs_honour_the_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        io.write_json(tmp_path / "a.json", {"x": 1})
        io.write_npz(tmp_path / "b.npz", arr_0=np.zeros(3))
    finally:
        os.umask(old)
    for name in ("a.json", "b.npz"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == mode, name


@pytest.fixture
def full_disk(monkeypatch, tmp_path):
    """Every temporary output file is /dev/full: its writes fail with ENOSPC, as on a full filesystem."""
    real = tempfile.mkstemp

    def mkstemp(prefix="", suffix="", dir=None):
        fd, path = real(prefix=prefix, suffix=suffix, dir=dir)
        os.close(fd)
        os.unlink(path)
        os.symlink("/dev/full", path)
        return os.open("/dev/null", os.O_RDONLY), path

    monkeypatch.setattr(io.tempfile, "mkstemp", mkstemp)
    return tmp_path


@pytest.mark.parametrize(
    "write",
    [
        lambda p: io.write_json(p, {"x": "y" * 100_000}),
        lambda p: io.write_npz(p, arr_0=np.zeros(100_000)),
        lambda p: _torch_save(p),  # torch says "unexpected pos ... vs ..."
    ],
    ids=["json", "npz", "torch.save"],
)
def test_a_full_disk_says_so_and_leaves_no_file(full_disk, write):
    target = full_disk / "out.bin"
    with pytest.raises(DiskFullError, match=rf"no space left on device while writing {target}") as e:
        write(target)
    assert "MiB free" in str(e.value) and e.value.errno == 28
    assert list(full_disk.iterdir()) == [], "neither the output nor a temporary file is left"


def _torch_save(path):
    with io.atomic_path(path) as tmp:
        torch.save({"w": torch.zeros(100_000)}, tmp)


def test_read_jsonl_skips_a_torn_line(tmp_path):
    p = tmp_path / "m.jsonl"
    p.write_text('{"step": 1}\n{"step": 2}\n{"ste')
    assert io.read_jsonl(p) == [{"step": 1}, {"step": 2}]
