#!/usr/bin/env bash
# Train on a Slurm cluster, one task per GPU:
#   GPUS=16 tools/slurm_train.sh PARTITION JOB_NAME CONFIG [train.py options]
# GPUS (default 8), GPUS_PER_NODE (default 8), CPUS_PER_TASK (default 5) and SRUN_ARGS tune srun.
set -euo pipefail
if [ $# -lt 3 ]; then
    echo "usage: $0 PARTITION JOB_NAME CONFIG [train.py options]" >&2
    exit 2
fi
PARTITION=$1
JOB_NAME=$2
CONFIG=$3
shift 3
GPUS=${GPUS:-8}
GPUS_PER_NODE=${GPUS_PER_NODE:-8}
CPUS_PER_TASK=${CPUS_PER_TASK:-5}
PYTHON=${PYTHON:-python}
TOOL=${TOOL:-train.py}  # tools/slurm_test.sh runs test.py through this script
# shellcheck disable=SC2086
srun -p "$PARTITION" --job-name="$JOB_NAME" \
    --gres=gpu:"$GPUS_PER_NODE" --ntasks="$GPUS" --ntasks-per-node="$GPUS_PER_NODE" \
    --cpus-per-task="$CPUS_PER_TASK" --kill-on-bad-exit=1 ${SRUN_ARGS:-} \
    "$PYTHON" -u "$(dirname "$0")/$TOOL" "$CONFIG" --launcher slurm "$@"
