#!/usr/bin/env bash
# Train on several GPU hosts: run this script once per host (by hand, pdsh, or under SLURM, where
# the rank and host list come from the environment). Process 0's host is the coordinator.
#
#   # on every host, PROCESS_ID = 0 .. NUM_PROCESSES-1:
#   COORDINATOR=host0:12345 NUM_PROCESSES=2 PROCESS_ID=0 experiments/launch/gpu_multihost.sh \
#       experiments/configs/llava_stage2.py /shared/runs/stage2 --config.data.dir=/shared/data
#
#   # SLURM (one task per host):
#   srun --nodes=2 --ntasks-per-node=1 experiments/launch/gpu_multihost.sh CONFIG WORKDIR ...
#
# The workdir and data dir must be on a filesystem every host sees.
set -euo pipefail
if [ $# -lt 2 ]; then
  echo "usage: $0 CONFIG WORKDIR [--config.KEY=VALUE ...]" >&2
  exit 2
fi
CONFIG=$1 WORKDIR=$2
shift 2
if [ -n "${SLURM_PROCID:-}" ]; then
  NUM_PROCESSES=${NUM_PROCESSES:-$SLURM_NTASKS}
  PROCESS_ID=${PROCESS_ID:-$SLURM_PROCID}
  COORDINATOR=${COORDINATOR:-$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n1):12345}
fi
: "${COORDINATOR:?set COORDINATOR=host:port of process 0}"
: "${NUM_PROCESSES:?set NUM_PROCESSES}"
: "${PROCESS_ID:?set PROCESS_ID}"

exec python3 -m lcbm_jax.cli train --config "$CONFIG" --workdir "$WORKDIR" \
  --coordinator-address "$COORDINATOR" --num-processes "$NUM_PROCESSES" --process-id "$PROCESS_ID" "$@"
