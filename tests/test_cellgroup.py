"""Evaluation jobs of several cells: the same cell JSONs as one job per cell; failures named, others still made."""

from __future__ import annotations

import json

import pytest
from test_cell import config, setup  # noqa: F401  (the module fixture: reference and one sample file)

from dar.cell import main as cell_main
from dar.cellgroup import load
from dar.cellgroup import main as group_main
from dar.config import ConfigError, to_dict


def test_a_group_writes_what_each_cell_alone_writes(setup, tmp_path):  # noqa: F811
    root, weights = setup
    alone, grouped = tmp_path / "alone", tmp_path / "grouped"
    cells = {}
    for folder in (alone, grouped):
        folder.mkdir()
        cells[folder] = [
            config(root, weights, folder, name=f"dar-repa_it10_ode_cfg1.0_{i}", out=str(folder / f"cell{i}.json"),
                   evals=[str(folder / f"eval{i}.json")])
            for i in range(2)
        ]  # fmt: skip
    for i, cfg in enumerate(cells[alone]):
        (alone / f"job{i}.json").write_text(json.dumps(to_dict(cfg)))
        assert cell_main(["--config", str(alone / f"job{i}.json")]) == 0
    (grouped / "job.json").write_text(json.dumps({"cells": [to_dict(c) for c in cells[grouped]]}))
    assert group_main(["--config", str(grouped / "job.json")]) == 0
    for i in range(2):
        a, g = (json.loads((f / f"cell{i}.json").read_text()) for f in (alone, grouped))
        assert a["metrics"] == g["metrics"] and a["identity"] == g["identity"] and a["fingerprint"] == g["fingerprint"]
        assert (
            json.loads((alone / f"eval{i}.json").read_text())["metrics"]
            == json.loads((grouped / f"eval{i}.json").read_text())["metrics"]
        )


def test_a_failing_cell_is_named_and_the_others_are_still_evaluated(setup, tmp_path, capsys):  # noqa: F811
    root, weights = setup
    good = config(root, weights, tmp_path, out=str(tmp_path / "good.json"), evals=[str(tmp_path / "e0.json")])
    bad = config(root, weights, tmp_path, name="missing", out=str(tmp_path / "bad.json"),
                 samples=[str(tmp_path / "gone.npz")], evals=[str(tmp_path / "e1.json")])  # fmt: skip
    (tmp_path / "job.json").write_text(json.dumps({"cells": [to_dict(bad), to_dict(good)]}))
    assert group_rc(tmp_path / "job.json") == 2
    err = capsys.readouterr()
    assert "1 of 2 cells could not be evaluated" in err.err and "table3/missing: sample file" in err.err
    assert (tmp_path / "good.json").is_file() and not (tmp_path / "bad.json").exists()


def group_rc(path) -> int:
    from dar.__main__ import run

    return run("cell-group", ["--config", str(path)])


@pytest.mark.parametrize("content", ['{"cells": []}', '{"cell": [{}]}', "[1, 2]", "not json"])
def test_bad_group_configs_are_refused_naming_the_file(tmp_path, content):
    path = tmp_path / "job.json"
    path.write_text(content)
    with pytest.raises(ConfigError, match=r"job\.json"):
        load(path)
