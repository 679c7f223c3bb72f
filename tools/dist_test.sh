#!/usr/bin/env bash
# Evaluate or write the prediction CSV with several processes (GPUs, or CPUs with gloo) through
# torchrun; each process scores its share of the images and the first one writes the files:
#   tools/dist_test.sh CONFIG CHECKPOINT NPROC [test.py options]
# Multi-node: as tools/dist_train.sh (NNODES, NODE_RANK, MASTER_ADDR, PORT).
set -euo pipefail
if [ $# -lt 3 ]; then
    echo "usage: $0 CONFIG CHECKPOINT NPROC [test.py options]" >&2
    exit 2
fi
CONFIG=$1
CHECKPOINT=$2
NPROC=$3
shift 3
TOOL=test.py exec "$(dirname "$0")/dist_train.sh" "$CONFIG" "$NPROC" "$CHECKPOINT" "$@"
