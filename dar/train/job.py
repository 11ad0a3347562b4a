"""`python -m dar train`: flow-matching training of any registered model and routing.

    python -m dar train --config results/digits/jobs/train/static-c4_seed0.json   # what the workflow runs
    python -m dar train --preset digits --run static-c4 --seed 1                # a grid run, by name
    python -m dar train --preset imagenet256 --run static-c4 --dry-run          # print the resolved config

Resuming is rerunning the same command: the job continues from the newest
complete checkpoint in the run folder, after checking that the checkpoint was
made under the same identity (model, routing, hyper-parameters, seed, data) and
from the same input files; a difference is refused with the differing fields
named (`--restart` sets the folder's checkpoints aside and trains afresh). With
--preset the run folder is the grid's, named by the run's fingerprint, so a
changed setting trains a new run. Under torchrun or dar.launch (submitit) the
job runs data-parallel over every process it is given.
"""

from __future__ import annotations

import argparse
import json
import sys

from dar.config import ConfigError, given, job_parser, resolve, to_dict
from dar.train.config import TrainConfig


def parse(argv: list[str] | None) -> tuple[TrainConfig, argparse.Namespace]:
    p = job_parser("python -m dar train", __doc__, TrainConfig)
    p.add_argument("--preset", help="a grid preset (dar/presets/<name>.yaml, or a .yaml path): train one of its runs (--run)")
    p.add_argument("--run", help="with --preset: the grid run to train (python -m dar cells --preset P --runs lists them)")
    args = p.parse_args(argv)
    if args.preset or args.run:
        if not (args.preset and args.run):
            raise ConfigError("--preset and --run go together: the run to train and the grid it belongs to")
        from dar.plan import Plan

        plan = Plan.load(args.preset)
        overrides = given(TrainConfig, args)
        seed = int(overrides.pop("seed", plan.seeds[0]))
        cfg = plan.train_config(args.run, seed, **overrides)
    else:
        cfg = resolve(TrainConfig, args)
    cfg.validate()
    return cfg, args


def main(argv: list[str] | None = None) -> int:
    try:
        cfg, args = parse(argv)
    except ConfigError as e:
        from dar.config import debug_mode

        if debug_mode():
            raise
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.dry_run:
        print(json.dumps(to_dict(cfg), indent=2))
        return 0
    from dar.config import debug_mode
    from dar.errors import HarnessError
    from dar.train.loop import TrainingDiverged, train

    try:
        train(cfg)
    except (HarnessError, FileNotFoundError) as e:
        if debug_mode():
            raise
        print(f"error: {e}", file=sys.stderr)
        return 1 if isinstance(e, TrainingDiverged) else 2  # a diverged run vs an input to fix
    return 0
