#!/usr/bin/env bash
# The workflow on a real SLURM: the smoke preset through `snakemake --profile slurm`, then one
# training job that times out, is requeued by submitit and resumes from its checkpoint.
# Assumes .ci/slurm-up.sh ran and the venv is active. The profile's paper-scale sizes (GPUs,
# nodes, memory, partition) are overridden for this one-node CPU cluster; everything else is the
# real profile.
set -euo pipefail
cd "$(dirname "$0")/.."
PART=${DAR_SLURM_PARTITION:-debug}
OUT=${DAR_SLURM_RESULTS:-results/slurm-ci}
rm -rf "$OUT"
PROFILE=$(bash .ci/slurm-profile.sh)  # the real profile, job sizes shrunk to this node

echo "== smoke preset through snakemake --profile (slurm/config.yaml, sizes shrunk)"
start=$(date +%Y-%m-%dT%H:%M:%S)
snakemake "$OUT/smoke/table.csv" --profile "$PROFILE" --config preset=smoke results="$OUT"
n_jobs=$(sacct -a -n -X -S "$start" -o JobID | wc -l)
echo "SLURM accounted $n_jobs jobs"
test "$n_jobs" -ge 10
test -s "$OUT/smoke/table.csv"

echo "== a training job that times out, is requeued and resumes"
python -m dar cache-latents --dataset digits --out "$OUT/requeue/latents" >/dev/null
# time_min=3: submitit asks SLURM for USR2 90 s before the limit, so the job is checkpointed and
# requeued about 90 s in; the run needs longer than that (checkpoints every 10 steps), so it must
# resume from a checkpoint to finish, whatever the speed of the machine.
python -m dar.launch train --cluster slurm --partition "$PART" --cpus 2 --mem-gb 2 --time-min 3 \
  --folder "$OUT/requeue/submitit" --name requeue-test -- \
  --data "$OUT/requeue/latents" --out "$OUT/requeue/run" --model SiT-T/2 --routing dar-static-c4 \
  --global-batch 64 --iterations 1500 --ckpt-every 10 --log-every 50 --precision fp32 --device cpu \
  | tee "$OUT/requeue/launcher.log"
grep -q "resuming from" "$OUT"/requeue/submitit/*_log.out || { echo "no resume seen in the job log"; exit 1; }
test -s "$OUT/requeue/run/done.json"
echo "requeue test: the job was requeued and resumed to completion"
