"""`python -m dar <command> [args]`: thin dispatch to each command's module `main(argv)`."""

from __future__ import annotations

import importlib
import sys

COMMANDS = {
    "params": ("dar.params", "parameter counts of every registered model and routing"),
    "cache-latents": ("dar.data.cache", "encode a dataset into the sharded latent cache (resumable)"),
    "train": ("dar.train.job", "train a model/routing (resumable; DDP under torchrun or dar.launch)"),
    "train-bench": ("dar.train.bench", "training throughput and peak memory on synthetic latents"),
    "sample": ("dar.sampling.job", "N samples from a checkpoint as an ADM .npz (sharded, resumable)"),
    "cells": ("dar.cells", "list every table cell of a preset with its target path and rerun command"),
    "cell": ("dar.cell", "evaluate one table cell over its seeds (the job behind each cell target)"),
    "collate": ("dar.collate", "collate every cell result of a preset into one table"),
    "fetch-assets": ("dar.assets", "download every pretrained asset into one folder (run where the network is)"),
    "digits-features": ("dar.metrics.digits_net", "train the digits feature network used for digits-scale metrics"),
    "reference-stats": ("dar.metrics.reference", "compute and cache reference statistics for FID/sFID/PR"),
    "evaluate": ("dar.metrics.evaluate", "FID, sFID, IS, precision, recall of a sample file (ADM protocol)"),
    "diagnose": ("dar.diagnostics.job", "diagnostics of cross-layer information flow (Figs. 2, 3, 5, chunk-size theory)"),
    "report": ("dar.report.render", "render the HTML report of a preset (tables and figures, ours beside the paper's)"),
    "kernel-bench": ("kernels.bench", "Fig. 6 benchmark of the fused DAR aggregation kernel"),
    "device-check": ("kernels.device_check", "the fused kernel's GPU checks as one time-boxed run (tests, Fig. 6, step ratio)"),
    "kernel-compile": ("kernels.aot", "compile the fused kernels for a CUDA target without a GPU: registers, spills, pipelining"),
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        width = max(map(len, COMMANDS))
        lines = [f"  {name:<{width}}  {help_}" for name, (_, help_) in COMMANDS.items()]
        msg = "usage: python -m dar <command> [args]\n\ncommands:\n" + "\n".join(lines)
        if argv and argv[0] not in ("-h", "--help"):
            print(f"unknown command {argv[0]!r}\n\n{msg}", file=sys.stderr)
            return 2
        print(msg)
        return 0
    module = importlib.import_module(COMMANDS[argv[0]][0])
    return module.main(argv[1:]) or 0


if __name__ == "__main__":
    sys.exit(main())
