#!/usr/bin/env bash
# Evaluate or write the prediction CSV on a Slurm cluster, one task per GPU:
#   GPUS=8 tools/slurm_test.sh PARTITION JOB_NAME CONFIG CHECKPOINT [test.py options]
# GPUS, GPUS_PER_NODE, CPUS_PER_TASK and SRUN_ARGS as for tools/slurm_train.sh.
set -euo pipefail
if [ $# -lt 4 ]; then
    echo "usage: $0 PARTITION JOB_NAME CONFIG CHECKPOINT [test.py options]" >&2
    exit 2
fi
PARTITION=$1
JOB_NAME=$2
CONFIG=$3
CHECKPOINT=$4
shift 4
TOOL=test.py exec "$(dirname "$0")/slurm_train.sh" "$PARTITION" "$JOB_NAME" "$CONFIG" \
    "$CHECKPOINT" "$@"
