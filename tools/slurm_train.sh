#!/usr/bin/env bash
# Train on a Slurm cluster, one task per GPU:
#   GPUS=16 tools/slurm_train.sh PARTITION JOB_NAME CONFIG [train.py options]
# GPUS (default 8), GPUS_PER_NODE (default 8), CPUS_PER_TASK (default 5) and SRUN_ARGS tune srun.
# Slurm sends SIGUSR1 SIGNAL_LEAD seconds (default 300) before the time limit; training then
# saves a recovery checkpoint and exits with status 75, as it does on SIGTERM (preemption).
# With REQUEUE=1, inside a batch job (sbatch --requeue), such a stop requeues the job, and every
# run of the job continues from the work dir's latest checkpoint (--auto-resume).
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
SIGNAL_LEAD=${SIGNAL_LEAD:-300}
PYTHON=${PYTHON:-python}
TOOL=${TOOL:-train.py}  # tools/slurm_test.sh runs test.py through this script
PREEMPTED=75            # train.py's status after a signal and a saved recovery checkpoint
EXTRA=()
if [ "$TOOL" = train.py ]; then
    EXTRA+=(--signal="USR1@$SIGNAL_LEAD")
fi
RESUME=()
if [ "${REQUEUE:-0}" = 1 ] && [ "$TOOL" = train.py ]; then
    RESUME+=(--auto-resume)
fi
status=0
# shellcheck disable=SC2086
srun -p "$PARTITION" --job-name="$JOB_NAME" \
    --gres=gpu:"$GPUS_PER_NODE" --ntasks="$GPUS" --ntasks-per-node="$GPUS_PER_NODE" \
    --cpus-per-task="$CPUS_PER_TASK" --kill-on-bad-exit=1 "${EXTRA[@]}" ${SRUN_ARGS:-} \
    "$PYTHON" -u "$(dirname "$0")/$TOOL" "$CONFIG" --launcher slurm "${RESUME[@]}" "$@" \
    || status=$?
if [ "$status" = "$PREEMPTED" ] && [ "${REQUEUE:-0}" = 1 ] && [ -n "${SLURM_JOB_ID:-}" ]; then
    echo "Training stopped with a recovery checkpoint; requeueing job $SLURM_JOB_ID" >&2
    scontrol requeue "$SLURM_JOB_ID"
fi
exit "$status"
