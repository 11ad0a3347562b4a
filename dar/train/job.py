"""`python -m dar train`: flow-matching training of any registered model and routing.

    python -m dar train --preset digits --routing dar-static-c4 --out results/runs/static-c4
    python -m dar train --config run.json --dry-run        # print the resolved config

Resuming is rerunning the same command: the job continues from the newest
complete checkpoint in the run folder. Under torchrun or dar.launch (submitit)
the job runs data-parallel over every process it is given.
"""

from __future__ import annotations

import argparse
import json
import sys

from dar.config import ConfigError, job_parser, resolve, to_dict
from dar.train.config import PRESETS, TrainConfig


def parse(argv: list[str] | None) -> tuple[TrainConfig, argparse.Namespace]:
    p = job_parser("python -m dar train", __doc__, TrainConfig, PRESETS)
    args = p.parse_args(argv)
    cfg = resolve(TrainConfig, args, PRESETS)
    cfg.validate()
    return cfg, args


def main(argv: list[str] | None = None) -> int:
    try:
        cfg, args = parse(argv)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.dry_run:
        print(json.dumps(to_dict(cfg), indent=2))
        return 0
    from dar.train.loop import TrainingDiverged, train

    try:
        train(cfg)
    except (ConfigError, FileNotFoundError, TrainingDiverged) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0
