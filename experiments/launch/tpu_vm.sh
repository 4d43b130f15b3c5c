#!/usr/bin/env bash
# Train on a Cloud TPU VM, one host or a pod slice: the same command runs on every worker (JAX finds
# the other hosts from the TPU metadata; `lcbm train` calls jax.distributed.initialize() itself).
#
#   experiments/launch/tpu_vm.sh [--dry-run] TPU_NAME ZONE experiments/configs/llava_stage2.py \
#       gs://BUCKET/runs/stage2 --config.data.dir=gs://BUCKET/data
#
# What the workers run: the wheel built from this checkout (`python3 -m build`; or --wheel FILE, or
# --repo URL[@REF] for `pip install git+URL`) with its [gcs] extra and LCBM_PIP (default 'jax[tpu]'),
# and this checkout's experiments/: one tarball (made in --stage DIR, default dist/tpu-launch),
# copied to every worker with `gcloud ... scp --worker=all`, unpacked into ~/lcbm-launch.
# The workdir and data dir must be visible to every worker: gs:// (or a shared disk).
#
# Preemption: a worker that gets SIGTERM saves a checkpoint and exits 0 (the summary says
# "preempted": true). Then, or when the ssh fails while the TPU is not READY, this script waits for
# the TPU to be READY again (running LCBM_TPU_RECREATE, e.g. a delete + create, if it is PREEMPTED),
# copies the tarball again and reruns the same command, which resumes from the newest verified
# checkpoint; at most --max-restarts times (20). LCBM_TPU_POLL_S (60) and LCBM_TPU_WAIT_S (7200)
# pace and bound the wait. The loop runs here: keep this shell alive (tmux, or a small VM).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

usage="usage: $0 [--dry-run] [--wheel FILE | --repo URL[@REF]] [--stage DIR] [--max-restarts N] TPU_NAME ZONE CONFIG WORKDIR [--config.KEY=VALUE ...]"
STAGE=$ROOT/dist/tpu-launch MAX_RESTARTS=20
while [[ ${1:-} == --* ]]; do
  case $1 in
    --dry-run) DRY_RUN=1; shift ;;
    --wheel | --repo | --stage | --max-restarts)
      [ $# -ge 2 ] || die "$1 needs a value"
      case $1 in
        --wheel) WHEEL_FILE=$2 ;; --repo) REPO_URL=$2 ;; --stage) STAGE=$2 ;; --max-restarts) MAX_RESTARTS=$2 ;;
      esac
      shift 2 ;;
    *) die "unknown option $1"$'\n'"$usage" ;;
  esac
done
[ $# -ge 4 ] || { echo "$usage" >&2; exit 2; }
TPU_NAME=$1 ZONE=$2 CONFIG=$3 WORKDIR=$4
shift 4
set_overrides "$@"
RCONFIG=$(remote_config "$CONFIG")
STAGE=$(abspath "$STAGE")
BUNDLE=lcbm-launch.tar.gz
POLL_S=${LCBM_TPU_POLL_S:-60} WAIT_S=${LCBM_TPU_WAIT_S:-7200}

# Local: the package and the configs, one tarball.
run mkdir -p "$STAGE"
stage_wheel "$STAGE"
members=()
[ -z "$WHEEL" ] || members=(-C "$STAGE" "$WHEEL")
run tar -czf "$STAGE/$BUNDLE" --exclude=__pycache__ ${members[@]+"${members[@]}"} -C "$ROOT" experiments

# Every worker: unpack, install, train.
train=$(cmdline python3 -m lcbm_jax.cli train --config "$RCONFIG" --workdir "$WORKDIR" ${OVERRIDES[@]+"${OVERRIDES[@]}"})
worker_command="set -e; rm -rf ~/lcbm-launch; mkdir -p ~/lcbm-launch; tar -xzf ~/$BUNDLE -C ~/lcbm-launch; \
cd ~/lcbm-launch; $(install_snippet python3 "[gcs]" 'jax[tpu]'); $train"
tpu=(gcloud compute tpus tpu-vm)

launch() {   # the copy and the run on every worker; the run's stdout also goes to $log
  run "${tpu[@]}" scp "$STAGE/$BUNDLE" "$TPU_NAME:$BUNDLE" --zone "$ZONE" --worker=all || return
  if ((DRY_RUN)); then
    run "${tpu[@]}" ssh "$TPU_NAME" --zone "$ZONE" --worker=all --command "$worker_command"
  else
    run "${tpu[@]}" ssh "$TPU_NAME" --zone "$ZONE" --worker=all --command "$worker_command" | tee "$log"
  fi
}

tpu_state() {
  "${tpu[@]}" describe "$TPU_NAME" --zone "$ZONE" --format='value(state)' 2>/dev/null || true
}

wait_until_ready() {
  local waited=0 state recreated=0
  while state=$(tpu_state); [ "$state" != READY ]; do
    echo "tpu_vm.sh: $TPU_NAME is ${state:-not found}; waiting for READY" >&2
    if [[ -n ${LCBM_TPU_RECREATE:-} && $recreated = 0 && ( -z $state || $state = PREEMPTED || $state = TERMINATED ) ]]; then
      echo "+ $LCBM_TPU_RECREATE" >&2
      bash -c "$LCBM_TPU_RECREATE" || echo "tpu_vm.sh: LCBM_TPU_RECREATE failed; still waiting" >&2
      recreated=1
    fi
    ((waited < WAIT_S)) || die "$TPU_NAME not READY after ${WAIT_S}s; rerun this script once it is"
    sleep "$POLL_S"
    waited=$((waited + POLL_S))
    ((POLL_S > 0)) || waited=$((waited + 1))
  done
}

if ((DRY_RUN)); then
  launch
  echo "# on preemption: wait for $TPU_NAME to be READY, then the same scp and ssh again (at most $MAX_RESTARTS times)"
  exit 0
fi
log=$(mktemp)
trap 'rm -f "$log"' EXIT
for ((restart = 0; ; restart++)); do
  set +e
  launch
  rc=$?
  set -e
  if ((rc == 0)) && ! grep -q '"preempted": true' "$log"; then
    exit 0
  fi
  if ((rc != 0)) && [ "$(tpu_state)" = READY ]; then
    exit "$rc"   # the run failed on a TPU that is still there: not a preemption
  fi
  ((restart < MAX_RESTARTS)) || die "preempted $((restart + 1)) times; rerun this script to resume"
  echo "tpu_vm.sh: preempted (exit $rc); relaunching once $TPU_NAME is READY (restart $((restart + 1)) of $MAX_RESTARTS)" >&2
  sleep "$POLL_S"
  wait_until_ready
done
