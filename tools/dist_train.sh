#!/usr/bin/env bash
# Train with several processes on one machine (GPUs, or CPUs with gloo) through torchrun:
#   tools/dist_train.sh CONFIG NPROC [train.py options]
# Multi-node: run on every node with NNODES, NODE_RANK, MASTER_ADDR (and PORT) set, e.g.
#   NNODES=2 NODE_RANK=0 MASTER_ADDR=10.0.0.1 tools/dist_train.sh configs/bio_resnext.py 8
set -euo pipefail
if [ $# -lt 2 ]; then
    echo "usage: $0 CONFIG NPROC [train.py options]" >&2
    exit 2
fi
CONFIG=$1
NPROC=$2
shift 2
PYTHON=${PYTHON:-python}
TOOL=${TOOL:-train.py}  # tools/dist_test.sh runs test.py through this script
exec "$PYTHON" -m torch.distributed.run \
    --nnodes="${NNODES:-1}" --node_rank="${NODE_RANK:-0}" \
    --master_addr="${MASTER_ADDR:-127.0.0.1}" --master_port="${PORT:-29500}" \
    --nproc_per_node="$NPROC" \
    "$(dirname "$0")/$TOOL" "$CONFIG" --launcher pytorch "$@"
