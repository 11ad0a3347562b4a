"""Config resolution: every value checked in one place, with the key and what is allowed in the message."""

from __future__ import annotations

import math

import pytest

from dar.__main__ import main as dar_main
from dar.config import ConfigError, Range, check_device, from_dict
from dar.sampling.config import SampleConfig
from dar.train.config import TrainConfig


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--lr", "nan"], "lr: nan is not a finite number; allowed: 0 < lr <= 1"),
        (["--lr", "-1"], "lr: -1.0 is out of range; allowed: 0 < lr <= 1"),
        (["--lr", "1e30"], "lr: 1e+30 is out of range; allowed: 0 < lr <= 1"),
        (["--adam-betas", "2,3"], "adam_betas[0]: 2.0 is out of range; allowed: 0 <= adam_betas < 1"),
        (["--weight-decay", "-5"], "weight_decay: -5.0 is out of range; allowed: 0 <= weight_decay"),
        (["--grad-clip", "-1"], "grad_clip: -1.0 is out of range; allowed: 0 < grad_clip"),
        (["--ema-decay", "2"], "ema_decay: 2.0 is out of range; allowed: 0 <= ema_decay <= 1"),
        (["--class-dropout", "1"], "class_dropout: 1.0 is out of range; allowed: 0 <= class_dropout < 1"),
        (["--device", "gpu"], "device: 'gpu' is not a device (PyTorch calls GPUs 'cuda')"),
        (["--routing", "dar-static-c3"], "routing: chunk size S=3 does not divide the L=16 sublayers"),
        (["--precision", "fp16"], "precision: 'fp16' is not one of bf16, fp32"),
        (["--global-batch", "0"], "global_batch: 0 is out of range; allowed: 1 <= global_batch"),
        (["--repa", "true", "--repa-encoder-weights", "w.pt", "--repa-depth", "9"], "repa_depth: 9 is past the 8 blocks"),
    ],
)
def test_train_rejects_bad_values_naming_key_and_range(flags, message, capsys):
    assert dar_main(["train", "--model", "SiT-T/2", *flags, "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--cfg-scale", "nan"], "cfg_scale: nan is not a finite number"),
        (["--cfg-interval", "0.9,0.1"], "cfg_interval: [0.9, 0.1] is not an interval lo,hi with lo < hi"),
        (["--cfg-interval", "0.2,1.5"], "cfg_interval[1]: 1.5 is out of range; allowed: 0 <= cfg_interval <= 1"),
        (["--device", "gpu"], "device: 'gpu' is not a device"),
        (["--nfe", "0"], "nfe: 0 is out of range"),
        (["--num-samples", "-3"], "num_samples: -3 is out of range"),
    ],
)
def test_sample_rejects_bad_values(flags, message, tmp_path, capsys):
    ckpt = tmp_path / "c.pt"
    ckpt.write_bytes(b"x")  # never read: the values are checked first
    assert dar_main(["sample", "--checkpoint", str(ckpt), *flags, "--out", str(tmp_path / "s.npz")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "s.npz").exists()


def test_ranges_and_devices():
    r = Range(0, 1, lo_open=True)
    assert 1e-4 in r and 1 in r and 0 not in r and -1 not in r and r.text("lr") == "0 < lr <= 1"
    for ok in ("auto", "cpu", "cuda", "cuda:3"):
        check_device("device", ok)
    for bad in ("gpu", "cuda:x", "tpu"):
        with pytest.raises(ConfigError, match="is not a device"):
            check_device("device", bad)
    assert from_dict(TrainConfig, {"lr": "0.5"}).lr == 0.5
    with pytest.raises(ConfigError, match="inf is not a finite number"):
        from_dict(SampleConfig, {"cfg_scale": math.inf})


def test_unexpected_failures_are_one_line_and_debug_shows_the_traceback(monkeypatch, capsys):
    import dar.cells

    def boom(argv):
        raise KeyError("surprise")

    monkeypatch.setattr(dar.cells, "main", boom)
    monkeypatch.setenv("DAR_DEBUG", "0")  # restored (unset) after the test, whatever --debug sets below
    assert dar_main(["cells"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: unexpected KeyError in `python -m dar cells`: 'surprise'") and "--debug" in err
    with pytest.raises(KeyError, match="surprise"):
        dar_main(["--debug", "cells"])


def test_expected_failures_of_any_command_are_error_lines(tmp_path, capsys):
    assert dar_main(["cells", "--table", "tabel1"]) == 2
    assert capsys.readouterr().err == "error: --table 'tabel1' is not one of table1, table2, table3, table4, fig1b, zoo\n"
    assert dar_main(["train", "--config", str(tmp_path / "none.json")]) == 2
    assert f"error: config file {tmp_path / 'none.json'} does not exist" in capsys.readouterr().err
    (tmp_path / "list.json").write_text("[1, 2]")
    assert dar_main(["sample", "--config", str(tmp_path / "list.json")]) == 2
    assert "does not hold a JSON object" in capsys.readouterr().err


def test_filesystem_mistakes_are_error_lines(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    assert dar_main(["cache-latents", "--dataset", "digits", "--out", str(tmp_path / "file" / "lat")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: Not a directory") and "check the path" in err
    ckpt = tmp_path / "c.pt"
    ckpt.write_bytes(b"x")
    assert dar_main(["sample", "--checkpoint", str(ckpt), "--out", str(tmp_path)]) == 2
    assert f"out: {tmp_path} is a folder" in capsys.readouterr().err


def test_booleans_are_not_numbers_and_grid_errors_say_where():
    with pytest.raises(ConfigError, match=r"cannot read True as int"):
        from_dict(TrainConfig, {"iterations": True})
    with pytest.raises(ConfigError, match=r"^runs\.sit: lr: 5\.0 is out of range"):
        from_dict(TrainConfig, {"lr": 5.0}, where="runs.sit")
