#!/usr/bin/env bash
# Train on several GPU hosts, one process per host (process 0's host is the coordinator), started
# through SLURM or pdsh/ssh; --dry-run prints every command, each host's included, and runs nothing.
#
#   # SLURM, from inside an allocation (sbatch / salloc --nodes=2), or with --nodes N:
#   experiments/launch/gpu_multihost.sh --slurm experiments/configs/llava_stage2.py /shared/runs/stage2 \
#       --config.data.dir=/shared/data
#   # pdsh (or --via ssh), process I on the I-th host:
#   experiments/launch/gpu_multihost.sh --hosts gpu0,gpu1 CONFIG WORKDIR [--config.KEY=VALUE ...]
#   # by hand: --dry-run --via ssh prints one `ssh HOST 'bash -c ...'` line per host: run those, or
#   # each one's quoted part on its host.
#
# What the hosts run: the wheel built from this checkout (`python3 -m build`; or --wheel FILE, or
# --repo URL[@REF] for `pip install git+URL`) and this checkout's experiments/, both put into STAGE,
# a directory every host sees at the same path (default WORKDIR/launch). Each process installs the
# package into its own venv (${TMPDIR:-/tmp}/lcbm-venv-UID-RANK, over the host's python3 packages;
# LCBM_PIP, default 'jax[cuda12]', is installed with it) and runs `lcbm train` from STAGE. The
# workdir and data dir must be on a filesystem every host sees (or gs://, then --stage is needed).
#
# Options (before CONFIG): --dry-run  --slurm [--nodes N]  --hosts H0,H1,... [--via pdsh|ssh]
#   --port P (12345)  --coordinator HOST:PORT (default: the first host)  --stage DIR
#   --wheel FILE | --repo URL[@REF]. Environment: LCBM_PIP, LCBM_PYTHON (python3; makes the venvs),
#   LCBM_SRUN_ARGS (more srun options, word split, e.g. "--partition=gpu --gres=gpu:8").
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

usage="usage: $0 [--dry-run] (--slurm [--nodes N] | --hosts H0,H1,... [--via pdsh|ssh]) [--port P]
       [--coordinator HOST:PORT] [--stage DIR] [--wheel FILE | --repo URL[@REF]] CONFIG WORKDIR [--config.KEY=VALUE ...]"
MODE="" NODES=${SLURM_JOB_NUM_NODES:-} HOSTS="" VIA=pdsh PORT=12345 COORDINATOR="" STAGE=""
while [[ ${1:-} == --* ]]; do
  case $1 in
    --dry-run) DRY_RUN=1; shift ;;
    --slurm) MODE=slurm; shift ;;
    --hosts) MODE=hosts; HOSTS=${2:?--hosts needs H0,H1,...}; shift 2 ;;
    --nodes | --via | --port | --coordinator | --stage | --wheel | --repo)
      [ $# -ge 2 ] || die "$1 needs a value"
      case $1 in
        --nodes) NODES=$2 ;; --via) VIA=$2 ;; --port) PORT=$2 ;; --coordinator) COORDINATOR=$2 ;;
        --stage) STAGE=$2 ;; --wheel) WHEEL_FILE=$2 ;; --repo) REPO_URL=$2 ;;
      esac
      shift 2 ;;
    *) die "unknown option $1"$'\n'"$usage" ;;
  esac
done
[ $# -ge 2 ] && [ -n "$MODE" ] || { echo "$usage" >&2; exit 2; }
CONFIG=$1 WORKDIR=$2
shift 2
set_overrides "$@"
RCONFIG=$(remote_config "$CONFIG")
[[ $WORKDIR == *://* ]] || WORKDIR=$(abspath "$WORKDIR")
if [ -z "$STAGE" ]; then
  [[ $WORKDIR != *://* ]] || die "workdir $WORKDIR is not a local path: pass --stage DIR (a directory every host sees)"
  STAGE=$WORKDIR/launch
fi
STAGE=$(abspath "$STAGE")
PYTHON=${LCBM_PYTHON:-python3}

# One host's command (bash -c, pdsh or ssh runs it there): RANK, COUNT and COORD are shell text,
# literal values or the SLURM variables the task expands.
host_command() {
  local rank=$1 count=$2 coord=$3
  printf '%s' "set -e; cd $(q "$STAGE"); V=\"\${TMPDIR:-/tmp}/lcbm-venv-\$(id -u)-$rank\"; "
  printf '%s' "[ -x \"\$V/bin/python\" ] || $(q "$PYTHON") -m venv --system-site-packages \"\$V\"; "
  printf '%s' "$(install_snippet '"$V/bin/python"' "" 'jax[cuda12]'); "
  printf '%s' "exec \"\$V/bin/python\" -m lcbm_jax.cli train $(cmdline --config "$RCONFIG" --workdir "$WORKDIR") "
  printf '%s' "--coordinator-address $coord --num-processes $count --process-id $rank"
  ((${#OVERRIDES[@]} == 0)) || printf ' %s' "$(cmdline "${OVERRIDES[@]}")"
  printf '\n'
}

# Local: the package and the configs into STAGE.
run mkdir -p "$STAGE"
stage_wheel "$STAGE"
run rm -rf "$STAGE/experiments"
run cp -R "$ROOT/experiments" "$STAGE/experiments"

if [ "$MODE" = slurm ]; then
  [ -n "$NODES" ] || die "--slurm outside an allocation needs --nodes N"
  read -r -a srun_args <<<"${LCBM_SRUN_ARGS:-}"
  if [ -n "$COORDINATOR" ]; then
    coord=$(q "$COORDINATOR")
  else   # the first node of the job, found by each task
    coord='"$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n1):'"$PORT"'"'
  fi
  run srun --nodes="$NODES" --ntasks="$NODES" --ntasks-per-node=1 --kill-on-bad-exit=1 \
    ${srun_args[@]+"${srun_args[@]}"} bash -c "$(host_command '$SLURM_PROCID' '$SLURM_NTASKS' "$coord")"
  exit 0
fi

IFS=, read -r -a hosts <<<"$HOSTS"
((${#hosts[@]})) || die "--hosts is empty"
case $VIA in pdsh) remote=(pdsh -w) ;; ssh) remote=(ssh) ;; *) die "--via pdsh or ssh, not $VIA" ;; esac
coord=$(q "${COORDINATOR:-${hosts[0]}:$PORT}")
pids=()
for i in "${!hosts[@]}"; do
  # Through bash whatever the login shell there (pdsh and ssh hand the words to it as one line).
  remote_line="bash -c $(q "$(host_command "$i" "${#hosts[@]}" "$coord")")"
  if ((DRY_RUN)); then
    run "${remote[@]}" "${hosts[$i]}" "$remote_line"
  else
    run "${remote[@]}" "${hosts[$i]}" "$remote_line" &
    pids+=($!)
  fi
done
rc=0
for pid in ${pids[@]+"${pids[@]}"}; do wait "$pid" || rc=$?; done
exit "$rc"
