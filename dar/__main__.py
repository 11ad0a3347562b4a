"""`python -m dar [--debug] [--log-level L] <command> [args]`: thin dispatch to each command's module `main(argv)`.

Every job logs through one configuration (dar/logs.py: UTC timestamps, rank 0 only, `--log-level`
DEBUG | INFO | WARNING | ERROR anywhere on the line, or DAR_LOG_LEVEL).

Expected failures print one `error: ...` line naming the input and the fix (status 2); `--debug`
(or DAR_DEBUG=1, e.g. for jobs on a cluster) shows the traceback instead."""

from __future__ import annotations

import errno
import importlib
import os
import sys

COMMANDS = {
    "params": ("dar.params", "parameter counts of every registered model and routing"),
    "cache-latents": ("dar.data.cache", "encode a dataset into the sharded latent cache (resumable)"),
    "train": ("dar.train.job", "train a model/routing (resumable; DDP under torchrun or dar.launch)"),
    "train-bench": ("dar.train.bench", "training throughput and peak memory on synthetic latents"),
    "run-bench": ("dar.runbench", "where a preset's run spent its time (per-rule benchmark records) and step times per routing"),
    "sample": ("dar.sampling.job", "N samples from a checkpoint as an ADM .npz (sharded, resumable)"),
    "sample-sets": ("dar.sampling.sets", "the sample sets of one sampling job, in one process (the workflow's sample rule)"),
    "plan": ("dar.planner", "the compute plan of a grid before it runs: GPU-hours and wall time per job and in total"),
    "cells": ("dar.cells", "list every table cell of a preset with its target path and rerun command"),
    "cell": ("dar.cell", "evaluate one table cell over its seeds (the job behind each cell target)"),
    "cell-group": ("dar.cellgroup", "evaluate every cell of one evaluation job in one process (per-table cell jobs)"),
    "collate": ("dar.collate", "collate every cell result of a preset into one table"),
    "claims": ("dar.claims", "judge the paper's claims on a preset's cells and diagnostics (claims.json)"),
    "fetch-assets": ("dar.assets", "download every pretrained asset into one folder (run where the network is)"),
    "rehearsal-assets": ("dar.rehearsal", "random-weight stand-ins of every asset and a synthetic ImageFolder (rehearsal)"),
    "digits-features": ("dar.metrics.digits_net", "train the digits feature network used for digits-scale metrics"),
    "reference-stats": ("dar.metrics.reference", "compute and cache reference statistics for FID/sFID/PR"),
    "evaluate": ("dar.metrics.evaluate", "FID, sFID, IS, precision, recall of a sample file (ADM protocol)"),
    "diagnose": ("dar.diagnostics.job", "diagnostics of cross-layer information flow (Figs. 2, 3, 5, chunk-size theory)"),
    "report": ("dar.report.render", "render the HTML report of a preset (tables and figures, ours beside the paper's)"),
    "kernel-bench": ("kernels.bench", "Fig. 6 benchmark of the fused DAR aggregation kernel"),
    "device-check": ("kernels.device_check", "the fused kernel's GPU checks as one time-boxed run (tests, Fig. 6, step ratio)"),
    "kernel-compile": ("kernels.aot", "compile the fused kernels for a CUDA target without a GPU: registers, spills, pipelining"),
}


# Filesystem errors a user causes and fixes (a path that is a folder, not a folder, read-only, not theirs).
USER_ERRNOS = {errno.EACCES, errno.EPERM, errno.ENOTDIR, errno.EISDIR, errno.EROFS, errno.EEXIST, errno.ENAMETOOLONG}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if "--debug" in argv:  # anywhere on the line: tracebacks instead of one-line errors (also DAR_DEBUG=1)
        argv.remove("--debug")
        os.environ["DAR_DEBUG"] = "1"
    from dar import logs
    from dar.errors import HarnessError

    try:
        logs.configure(logs.pop_level(argv))
    except HarnessError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        width = max(map(len, COMMANDS))
        lines = [f"  {name:<{width}}  {help_}" for name, (_, help_) in COMMANDS.items()]
        msg = "usage: python -m dar [--debug] [--log-level L] <command> [args]\n\ncommands:\n" + "\n".join(lines)
        if argv and argv[0] not in ("-h", "--help"):
            print(f"unknown command {argv[0]!r}\n\n{msg}", file=sys.stderr)
            return 2
        print(msg)
        return 0
    return run(argv[0], argv[1:])


def run(command: str, args: list[str]) -> int:
    """A command's main(args); an expected failure (dar.errors.HarnessError, a missing file) is one `error:` line
    and status 2, anything else an `error: unexpected ...` line and status 1; tracebacks only under --debug."""
    from dar import allocator
    from dar.config import debug_mode
    from dar.errors import HarnessError

    allocator.tune()  # keep activation buffers in the process (dar/allocator.py)
    try:
        module = importlib.import_module(COMMANDS[command][0])
        return module.main(args) or 0
    except (HarnessError, FileNotFoundError) as e:
        if debug_mode():
            raise
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        if debug_mode() or e.errno not in USER_ERRNOS:
            raise
        print(f"error: {e.strerror}: {e.filename or ''} (check the path and its permissions)", file=sys.stderr)
        return 2
    except Exception as e:
        if debug_mode():
            raise
        print(
            f"error: unexpected {type(e).__name__} in `python -m dar {command}`: {e} "
            "(a bug, or an input nothing checks yet: rerun with --debug for the traceback)",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
