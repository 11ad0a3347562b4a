#!/usr/bin/env bash
# The rehearsal preset, the paper's code path on stand-in assets with random weights (dar/rehearsal.py), through
# `snakemake --profile` on the single-node SLURM, stage by stage so that a failure names its stage; then its
# report. Assumes .ci/slurm-up.sh ran and the venv is active.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${DAR_SLURM_RESULTS:-results/slurm-ci}
PROFILE=$(bash .ci/slurm-profile.sh)
rm -rf "$OUT/rehearsal"
started=$(date +%s)
stage() {
  local name=$1; shift
  echo "== rehearsal stage: $name"
  local t0; t0=$(date +%s)
  if ! snakemake "$@" --profile "$PROFILE" --config preset=rehearsal results="$OUT"; then
    echo "rehearsal FAILED at stage: $name (logs: $OUT/rehearsal/logs/)"
    exit 1
  fi
  echo "   $name: $(( $(date +%s) - t0 )) s"
}
stage "stand-in assets and synthetic ImageFolder" "$OUT/rehearsal/assets/.fetched"
stage "latent cache (SD VAE encode, ADM centre crop)" --until cache_latents
stage "training (10 runs: SiT, SiT-Plus, DAR variants, skip, REPA with DINOv2)" --until train
stage "sampling (Heun ODE / Euler-Maruyama SDE, cfg 1.5 on channels 0-2, SD VAE decode)" --until sample
stage "evaluation (Inception-v3 FID, sFID, IS, precision, recall against the ADM batch)" --until cell
stage "diagnostics, kernel benchmark, collated table and report"
test -s reports/rehearsal/index.html
grep -q "dress rehearsal" reports/rehearsal/index.html
echo "rehearsal: every stage of the paper path ran through SLURM in $(( $(date +%s) - started )) s; report reports/rehearsal/index.html"
