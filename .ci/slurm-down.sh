#!/usr/bin/env bash
# Stop what .ci/slurm-up.sh started (by recorded PID only), after cancelling the queue.
set -uo pipefail
STATE=${DAR_SLURM_STATE:-/run/dar-slurm}
[ -s "$STATE/pids" ] || exit 0
ids=$(squeue -h -o %i 2>/dev/null || true)
[ -n "$ids" ] && scancel $ids && sleep 3
tac "$STATE/pids" | while read -r name pid; do
  [ "$(cat /proc/$pid/comm 2>/dev/null)" = "$name" ] || continue
  kill -TERM "$pid" 2>/dev/null
  for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
  kill -KILL "$pid" 2>/dev/null || true
done
rm -f "$STATE/pids"
