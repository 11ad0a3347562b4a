"""Metric sinks of a training run (dar/train/sinks.py) and the heartbeat a training job logs."""

from __future__ import annotations

import json
import logging
import re
import sys

import pytest

from conftest import tiny_cfg
from dar.config import ConfigError
from dar.train.loop import train
from dar.train.sinks import METRICS_FILE, TENSORBOARD_DIR, JSONLSink, TensorBoardSink, open_sinks


def _steps(path):
    return [json.loads(x)["step"] for x in path.read_text().splitlines()]


def test_jsonl_sink_appends_and_a_resume_drops_what_came_after_the_checkpoint(tmp_path):
    sink = JSONLSink(tmp_path, resume_step=0)
    for s in (2, 4, 6):
        sink.write({"step": s, "loss": 1.0 / s})
    JSONLSink(tmp_path, resume_step=4)  # the job is resumed from the checkpoint of step 4
    assert _steps(tmp_path / METRICS_FILE) == [2, 4]


def _scalars(logdir, tag):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(logdir))
    acc.Reload()
    return {e.step: e.value for e in acc.Scalars(tag)}


def test_tensorboard_sink_writes_one_scalar_per_field_and_purges_on_resume(tmp_path):
    pytest.importorskip("tensorboard")
    sink = TensorBoardSink(tmp_path, resume_step=0)
    for s in (1, 2, 3, 4):
        sink.write({"step": s, "loss": float(s), "grad_norm": 0.5, "mem_gb": float("nan")})
    sink.close()
    assert _scalars(tmp_path / TENSORBOARD_DIR, "train/loss") == {1: 1.0, 2: 2.0, 3: 3.0, 4: 4.0}
    sink = TensorBoardSink(tmp_path, resume_step=2)  # resumed from step 2: steps 3, 4 are logged again
    for s in (3, 4):
        sink.write({"step": s, "loss": 10.0 * s, "grad_norm": 0.5})
    sink.close()
    assert _scalars(tmp_path / TENSORBOARD_DIR, "train/loss") == {1: 1.0, 2: 2.0, 3: 30.0, 4: 40.0}


def test_tensorboard_without_the_package_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails as if not installed
    with pytest.raises(ConfigError, match=r"--tensorboard needs the tensorboard package .*pip install tensorboard"):
        open_sinks(tmp_path, 0, tensorboard=True)
    assert not (tmp_path / TENSORBOARD_DIR).exists()


HEARTBEAT = re.compile(
    r"step (\d+)/(\d+) \(([\d.]+)%\) \| loss [\d.]+ \| grad [\d.e+-]+ \| [\d.]+ s/step \| \d+ img/s \| mem [\d.]+ GB \| ETA (\S+)"
)


def test_a_training_job_logs_one_heartbeat_per_log_every_steps(digits_cache, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="dar")
    tb = pytest.importorskip("tensorboard") is not None
    out = train(tiny_cfg(digits_cache, tmp_path / "r", iterations=6, ckpt_every=3, log_every=2, tensorboard=tb))
    beats = [HEARTBEAT.search(r.getMessage()) for r in caplog.records if r.name == "dar.train"]
    beats = [m for m in beats if m]
    assert [(int(m[1]), int(m[2])) for m in beats] == [(2, 6), (4, 6), (6, 6)]
    assert [m[3] for m in beats] == ["33.3", "66.7", "100.0"]
    assert beats[-1][4] == "0s" and all(m[4] != "?" for m in beats)  # a known ETA, zero at the end
    assert _steps(out / METRICS_FILE) == [2, 4, 6]
    assert sorted(_scalars(out / TENSORBOARD_DIR, "train/loss")) == [2, 4, 6]
