#!/usr/bin/env bash
# Print the path of a copy of the real SLURM profile (slurm/config.yaml) with only the job sizes shrunk to the
# single-node CPU cluster of .ci/slurm-up.sh (CLI --set-resources would replace the profile's whole mapping,
# cluster=slurm included). Everything else is the real profile.
set -euo pipefail
cd "$(dirname "$0")/.."
PART=${DAR_SLURM_PARTITION:-debug}
PROFILE=$(mktemp -d)/slurm-ci
mkdir -p "$PROFILE"
python - "$PROFILE/config.yaml" "$PART" <<'PY'
import sys, yaml
cfg = yaml.safe_load(open("slurm/config.yaml"))
for rule, res in cfg["set-resources"].items():
    assert res["cluster"] == "slurm", rule
    res.update(gpus=0, nodes=1, cpus=1, mem_gb=4, time_min=30, partition=sys.argv[2])
cfg["cores"] = 2  # launcher slots; the one-node cluster has 2 CPUs, one per job
yaml.safe_dump(cfg, open(sys.argv[1], "w"))
PY
echo "$PROFILE"
