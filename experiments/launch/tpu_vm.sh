#!/usr/bin/env bash
# Train on a (multi-host) Cloud TPU VM slice: the same command runs on every worker; JAX finds the
# other hosts from the TPU metadata (`lcbm train` calls jax.distributed.initialize() itself).
#
#   experiments/launch/tpu_vm.sh TPU_NAME ZONE experiments/configs/llava_stage2.py gs://BUCKET/runs/stage2 \
#       --config.data.dir=gs://BUCKET/data
#
# The workdir and data dir must be visible to every host (GCS or a shared disk).
set -euo pipefail
if [ $# -lt 4 ]; then
  echo "usage: $0 TPU_NAME ZONE CONFIG WORKDIR [--config.KEY=VALUE ...]" >&2
  exit 2
fi
TPU_NAME=$1 ZONE=$2 CONFIG=$3 WORKDIR=$4
shift 4
REPO=${REPO:-https://github.com/lcbm-jax/lcbm-jax.git}

gcloud compute tpus tpu-vm ssh "$TPU_NAME" --zone "$ZONE" --worker=all --command "
  set -e
  [ -d lcbm-jax ] || git clone -q $REPO lcbm-jax
  cd lcbm-jax && python3 -m pip install -q -e . 'jax[tpu]' -f https://storage.googleapis.com/jax-releases/libtpu_releases.html
  python3 -m lcbm_jax.cli train --config $CONFIG --workdir $WORKDIR $*
"
