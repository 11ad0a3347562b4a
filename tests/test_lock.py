"""File locks: one holder per run folder, released when the holder dies however it dies."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from dar.lock import FileLock, FolderBusy, FolderLock

HOLD = (
    "import sys, time; from dar.lock import FolderLock\n"
    "with FolderLock(sys.argv[1], 'run folder'):\n    print('held', flush=True); time.sleep(60)\n"
)


def test_a_second_holder_is_refused_with_the_holders_pid(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        with (
            pytest.raises(FolderBusy, match=rf"run folder {tmp_path} is in use by pid {proc.pid} on host"),
            FolderLock(tmp_path, "run folder"),
        ):
            pass
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    with FolderLock(tmp_path, "run folder"):  # the kernel released the killed holder's lock
        assert (tmp_path / ".lock").read_text().startswith('{"pid": ' + str(os.getpid()))


def test_errors_inside_the_block_are_not_taken_for_a_busy_folder(tmp_path):
    with pytest.raises(FolderBusy, match="inner"), FolderLock(tmp_path, "run folder"):
        raise FolderBusy("inner")
    with FolderLock(tmp_path, "run folder"):
        pass


def test_file_lock_waits_for_the_holder(tmp_path):
    code = (
        "import sys, time; from dar.lock import FileLock\n"
        "with FileLock(sys.argv[1]):\n    print('held', flush=True); time.sleep(1.5)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "x.lock")], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    t0 = time.monotonic()
    with FileLock(tmp_path / "x.lock"):
        waited = time.monotonic() - t0
    proc.wait()
    assert waited > 0.5 and proc.returncode == 0
