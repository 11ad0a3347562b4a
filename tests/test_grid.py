"""The experiment grid: presets expand to runs, cells and paths; bad grids fail with the offending key."""

from __future__ import annotations

import copy

import pytest
import yaml

from dar.grid import CONFIG_DIR, Grid, GridError
from dar.grid import main as cells_main


def load_dict(preset: str) -> dict:
    return yaml.safe_load((CONFIG_DIR / f"{preset}.yaml").read_text())


@pytest.mark.parametrize("preset", ["smoke", "digits", "imagenet256"])
def test_presets_validate_and_expand(preset):
    grid = Grid.load(preset)
    assert grid.cells and grid.runs
    for cell in grid.cells:
        run = grid.runs[(cell.run, cell.seeds[0])]
        assert cell.iteration in run.milestones, "every cell's iteration must be kept as a milestone"
        assert cell.iteration <= run.iterations


def test_imagenet256_is_the_papers_protocol():
    grid = Grid.load("imagenet256")
    ev = grid.data["evaluation"]
    assert (ev["num_samples"], ev["nfe"], ev["cfg_scale"], ev["cfg_channels"]) == (50000, 250, 1.5, 3)
    assert grid.data["train"]["global_batch"] == 1024 and grid.data["train"]["model"] == "SiT-XL/2"
    iters = {name: r["iterations"] for name, r in grid.data["runs"].items()}
    assert iters["sit"] == 1_750_000 and iters["static-c4"] == 600_000 and iters["dynamic-c4"] == 500_000
    t1 = [c for c in grid.cells if c.table == "table1"]
    assert len(t1) == 5 * 2 * 2  # runs x {ode, sde} x {w/o, w/ guidance}
    assert {c.cfg_scale for c in t1} == {1.0, 1.5}
    assert {c.iteration for c in grid.cells if c.table == "table4"} == {300_000}


def test_readable_cell_paths_and_shared_samples():
    grid = Grid.load("digits")
    cell = grid.cell("table1", "static-c4_ode_cfg1.5")
    assert str(grid.cell_path(cell)) == "results/digits/cells/table1/static-c4_ode_cfg1.5.json"
    # Table 2 at 300 and Table 4 at 300 for static-c4 use the same sample file: one sampling job serves both.
    t2 = grid.cell("table2", "static-c4_it300_ode_cfg1.0")
    t4 = grid.cell("table4", "static-c4_it300_ode_cfg1.0")
    assert grid.samples_path(t2.sample_keys()[0]) == grid.samples_path(t4.sample_keys()[0])
    assert len(grid.sample_keys()) < len(grid.cells)


def test_cell_describe_is_the_collated_tables_first_columns(tmp_path):
    from dar.collate import collate

    grid = Grid.load("smoke", results=tmp_path)
    cell = grid.cell("table1", "static-c4_ode_cfg1.5")
    ids = ["table", "name", "run", "iteration", "sampler", "cfg", "cfg_scale", "nfe", "num_samples"]
    assert list(cell.describe()) == ids and cell.describe()["cfg_scale"] == 1.5
    assert list(collate(grid).columns[: len(ids) + 1]) == [*ids, "path"]


def test_train_and_sample_args_are_valid_commands():
    from dar.sampling.job import SampleConfig
    from dar.train.job import parse

    grid = Grid.load("digits")
    cfg, _ = parse(grid.train_args("static-c4", 0))
    assert cfg.routing == "dar-static-c4" and cfg.iterations == 600 and cfg.milestones == [100, 200, 300, 400, 600]
    assert cfg.out == "results/digits/runs/static-c4/seed0"
    import argparse

    from dar.config import add_arguments, resolve

    p = argparse.ArgumentParser()
    add_arguments(p, SampleConfig)
    key = grid.cell("table1", "sit_sde_cfg1.5").sample_keys()[0]
    sc = resolve(SampleConfig, p.parse_args(grid.sample_args(key)))
    assert sc.sampler == "sde" and sc.cfg_scale == 1.5 and sc.cfg_channels is None and sc.num_samples == 500


def bad(tmp_path, mutate):
    data = copy.deepcopy(load_dict("smoke"))
    mutate(data)
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


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
        (lambda d: d["evaluation"].update(nfe=0), r"evaluation\.nfe: 0 is less than the minimum"),
    ],
)
def test_bad_grids_name_the_offending_key(tmp_path, mutate, message):
    with pytest.raises(GridError, match=message):
        Grid.load(bad(tmp_path, mutate))


def test_cells_command_prints_paths_and_rerun_commands(capsys):
    assert cells_main(["--preset", "smoke", "--table", "table1"]) == 0
    out = capsys.readouterr().out
    assert "results/smoke/cells/table1/static-c4_ode_cfg1.5.json" in out
    assert "snakemake results/smoke/cells/table1/static-c4_ode_cfg1.5.json --force" in out
    assert cells_main(["--preset", "nope"]) == 2


def test_commands_name_a_bad_preset_on_stderr(capsys):
    from dar.collate import main as collate_main
    from dar.report.render import main as report_main

    for main in (collate_main, report_main):
        assert main(["--preset", "nope"]) == 2
        assert capsys.readouterr().err.startswith("error: preset: no grid file")
