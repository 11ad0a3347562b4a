"""The grid file: presets ship as package data, bad grids fail with the offending key."""

from __future__ import annotations

import copy

import pytest
import yaml

from dar import grid
from dar.grid import GridError


def load_dict(preset: str) -> dict:
    text, _ = grid.locate(preset)
    return yaml.safe_load(text)


def bad(tmp_path, mutate):
    data = copy.deepcopy(load_dict("smoke"))
    mutate(data)
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def test_presets_ship_with_the_package():
    assert grid.presets() == ["digits", "imagenet256", "rehearsal", "smoke", "zoo", "zoo-imagenet256"]
    for name in grid.presets():
        data, text, path = grid.load(name)
        assert data["name"] == name and text.startswith("#") and path.name == f"{name}.yaml"


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d.update(sampels=3), r"\(top level\): Additional properties are not allowed \('sampels'"),
        (lambda d: d["runs"]["sit"].update(model="SiT-Q/2"), r"runs\.sit\.model: unknown model 'SiT-Q/2'"),
        (
            lambda d: d["runs"]["sit"].update(routing="dar-static-c3"),
            r"runs\.sit\.routing: chunk size S=3 does not divide the L=16 sublayers",
        ),
        (lambda d: d["tables"]["table2"]["runs"].append("nope"), r"tables\.table2\.runs\[1\]: run 'nope' is not defined"),
        (
            lambda d: d["tables"]["table2"].update(iterations=[5, 99]),
            r"tables\.table2\.iterations: 99 is past the length of run 'static-c4'",
        ),
        (lambda d: d["train"].update(lrr=1.0), r"train\.lrr: not a settable TrainConfig key"),
        (lambda d: d["train"].update(restart=True), r"train\.restart: not a settable TrainConfig key"),
        (
            lambda d: d["runs"]["sit"].update(train={"model": "SiT-S/2"}),
            r"runs\.sit\.train\.model: not a settable TrainConfig key here \(set it as runs\.<name>\.model",
        ),
        (
            lambda d: d["train"].update(repa=True),
            r"train\.repa: not a settable TrainConfig key here \(set it as runs\.<name>\.repa",
        ),
        (
            lambda d: d["tables"]["table1"].update(iterations=[5, 10]),
            r"tables\.table1\.iterations: Table 1 reports each run at its final iteration",
        ),
        (lambda d: d["evaluation"].update(nfe=0), r"evaluation\.nfe: 0 is less than the minimum"),
        # one evaluation must never count twice: seeds are unique
        (lambda d: d.update(seeds=[0, 0]), r"seeds: \[0, 0\] has non-unique elements"),
        # names become folder names: no path separators, no '..'
        (lambda d: d.update(name="../escape"), r"name: '\.\./escape' does not match"),
        (lambda d: d["runs"].update({"a/b": d["runs"]["sit"]}), r"runs: 'a/b' does not match"),
        (lambda d: d["diagnostics"].update(probe_run="nope"), r"diagnostics\.probe_run: run 'nope' is not defined"),
    ],
)
def test_bad_grids_name_the_offending_key(tmp_path, mutate, message):
    with pytest.raises(GridError, match=message):
        grid.load(bad(tmp_path, mutate))


def test_unknown_preset_lists_the_shipped_ones(tmp_path):
    shipped = r"\['digits', 'imagenet256', 'rehearsal', 'smoke', 'zoo', 'zoo-imagenet256'\]"
    with pytest.raises(GridError, match=r"no grid file for 'nope'; choose one of " + shipped):
        grid.load("nope")
    with pytest.raises(GridError, match="no grid file"):
        grid.load(str(tmp_path / "missing.yaml"))
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(GridError, match="does not hold a mapping"):
        grid.load(str(tmp_path / "list.yaml"))
