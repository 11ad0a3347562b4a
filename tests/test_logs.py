"""Job logging (dar/logs.py): durations, ETAs, heartbeat fields, progress lines, ranks and levels."""

from __future__ import annotations

import io
import logging
import math
import re

import pytest

from dar import logs
from dar.errors import HarnessError


@pytest.mark.parametrize(
    "seconds, text",
    [(0, "0s"), (45.4, "45s"), (59.6, "1m00s"), (185, "3m05s"), (7440, "2h04m"), (3 * 86400 + 4 * 3600, "3d04h")],
)
def test_duration_known_answers(seconds, text):
    assert logs.duration(seconds) == text


@pytest.mark.parametrize("bad", [math.inf, math.nan, -1, None])
def test_duration_of_an_unknown_time_is_a_question_mark(bad):
    assert logs.duration(bad) == "?"


def test_eta_is_the_steps_left_times_the_step_time():
    assert logs.eta_seconds(150, 1750, 0.1) == pytest.approx(160.0)
    assert logs.eta_seconds(1750, 1750, 0.1) == 0.0
    assert logs.eta_seconds(1800, 1750, 0.1) == 0.0  # past the end: nothing left
    assert logs.eta_seconds(0, 10, 0.0) == math.inf and logs.eta_seconds(0, 10, math.nan) == math.inf


def test_heartbeat_names_every_number_a_person_watches():
    rec = {"loss": 0.69543, "grad_norm": 0.92431, "sec_per_step": 0.10566, "images_per_s": 605.7, "mem_gb": 0.8706}
    line = logs.heartbeat(150, 1750, rec, eta_s=169.1)
    assert line == "step 150/1750 (8.6%) | loss 0.6954 | grad 0.924 | 0.106 s/step | 606 img/s | mem 0.87 GB | ETA 2m49s"
    line = logs.heartbeat(10, 20, {**rec, "align_loss": -0.5, "routing_entropy": 0.9}, eta_s=math.inf)
    assert "align -0.5000" in line and "route H 0.900" in line and line.endswith("ETA ?")


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_progress_logs_every_interval_with_rate_and_eta(caplog):
    caplog.set_level(logging.INFO, logger="dar")
    clock = FakeClock()
    p = logs.Progress(100, "sample x", unit="img", log=logs.get("t"), every_s=10, tty=False, clock=clock)
    for _ in range(10):  # 10 img per 5 s: 2 img/s
        clock.t += 5
        p.update(10)
    p.close()
    lines = [r.getMessage() for r in caplog.records]
    # a line at t = 10, 20, 30, 40 (the update at t = 50 completes the loop: the final line instead)
    assert len(lines) == 5
    assert lines[0] == "sample x 20/100 img (20%) | 2.0 img/s | elapsed 10s | ETA 40s"
    assert lines[3] == "sample x 80/100 img (80%) | 2.0 img/s | elapsed 40s | ETA 10s"
    assert lines[-1] == "sample x 100/100 img (100%) | 2.0 img/s | elapsed 50s | done"


def test_progress_of_nothing_says_nothing(caplog):
    caplog.set_level(logging.INFO, logger="dar")
    with logs.Progress(0, "features", log=logs.get("t"), every_s=0, tty=False) as p:
        p.update(5)
    assert caplog.records == []


def test_progress_on_a_terminal_is_a_bar_not_log_lines(caplog):
    caplog.set_level(logging.INFO, logger="dar")
    with logs.Progress(3, "cache", log=logs.get("t"), every_s=0, tty=True) as p:
        assert p.bar is not None
        p.update(3)
    assert caplog.records == []


def _configured(rank: int, level: str = "INFO") -> tuple[logging.Logger, io.StringIO]:
    buf = io.StringIO()
    return logs.configure(level, rank=rank, stream=buf), buf


def test_lines_carry_a_utc_timestamp_level_and_logger_name():
    buf = io.StringIO()
    logs.configure("INFO", rank=0, stream=buf)
    logs.get("train").info("step %d", 5)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ I \[dar\.train\] step 5\n", buf.getvalue())
    logs.configure("INFO", rank=0, stream=buf)  # reconfiguring replaces the handler: no line is written twice
    logs.get("train").info("once")
    assert buf.getvalue().count("once") == 1


def test_other_ranks_log_warnings_only_and_say_which_rank(monkeypatch):
    monkeypatch.delenv(logs.ALL_RANKS_ENV, raising=False)
    _, buf = _configured(rank=3)
    logs.get("train").info("heartbeat")
    logs.get("train").warning("disk slow")
    assert "heartbeat" not in buf.getvalue() and "W [dar.train rank3] disk slow" in buf.getvalue()
    monkeypatch.setenv(logs.ALL_RANKS_ENV, "1")
    _, buf = _configured(rank=3)
    logs.get("train").info("heartbeat")
    assert "I [dar.train rank3] heartbeat" in buf.getvalue()


def test_the_level_comes_from_the_flag_then_the_environment(monkeypatch):
    monkeypatch.setenv(logs.LEVEL_ENV, "WARNING")
    assert logs.configure(rank=0, stream=io.StringIO()).level == logging.WARNING
    assert logs.configure("debug", rank=0, stream=io.StringIO()).level == logging.DEBUG
    monkeypatch.setenv(logs.LEVEL_ENV, "LOUD")
    with pytest.raises(HarnessError, match="log level 'LOUD' is not one of DEBUG, INFO, WARNING, ERROR"):
        logs.configure(rank=0, stream=io.StringIO())


def test_log_level_flag_is_taken_from_anywhere_on_the_line():
    argv = ["train", "--config", "c.json", "--log-level", "WARNING"]
    assert logs.pop_level(argv) == "WARNING" and argv == ["train", "--config", "c.json"]
    argv = ["--log-level=debug", "sample"]
    assert logs.pop_level(argv) == "DEBUG" and argv == ["sample"]
    assert logs.pop_level(["train"]) is None
    with pytest.raises(HarnessError, match="--log-level needs a value"):
        logs.pop_level(["train", "--log-level"])


def test_the_cli_configures_logging_and_refuses_a_bad_level(capsys):
    from dar.__main__ import main

    assert main(["--log-level", "ERROR", "--help"]) == 0
    assert logging.getLogger("dar").level == logging.ERROR
    assert main(["--log-level", "chatty", "--help"]) == 2
    assert "error: log level 'chatty' is not one of" in capsys.readouterr().err
