#!/usr/bin/env bash
# Train on ImageNet (or any ImageFolder root with train/ and val/ folders) with NUM_PROC processes per node.
#
#   bash i1k.sh NUM_PROC DATA_DIR [imagenet_train.py flags...]
#   bash i1k.sh 8 /data/imagenet -c i1k_configs/vit_3dtrl_1k_scratch.yaml
#   bash i1k.sh 8 -c i1k_configs/vit_3dtrl_1k_scratch.yaml /data/imagenet   (the data folder anywhere, as timm's)
#
# One process per GPU (NCCL); without GPUs the processes share the CPU (gloo).
# Several nodes: run the same command on every node with these variables set
#   NNODES       number of nodes (default 1)
#   NODE_RANK    this node's index, 0..NNODES-1 (default 0)
#   MASTER_ADDR  address of node 0, reachable from all nodes
#   MASTER_PORT  free TCP port on node 0 (default 29500)
# A single node without MASTER_ADDR uses torchrun --standalone (a free local port).
set -euo pipefail

die() { echo "error: $*" >&2; exit 2; }

[ $# -ge 2 ] || die "usage: bash i1k.sh NUM_PROC DATA_DIR [imagenet_train.py flags...]"
NUM_PROC=$1
shift
[[ "$NUM_PROC" =~ ^[1-9][0-9]*$ ]] || die "NUM_PROC must be a positive integer, got '$NUM_PROC'"
# Everything after NUM_PROC goes to imagenet_train.py, as with the release's launcher, so the data folder
# may also follow the flags (bash i1k.sh 8 -c CONFIG DATA_DIR) or come from a config's data_dir.
if [[ "$1" != -* ]]; then
    [ -d "$1" ] || die "data folder not found: $1"
fi
# The split folders (--train-split, --val-split, with timm 0.6's synonyms: validation finds val/) are
# checked by imagenet_train.py --check-only below.

NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
MASTER_PORT=${MASTER_PORT:-29500}
[[ "$NNODES" =~ ^[1-9][0-9]*$ ]] || die "NNODES must be a positive integer, got '$NNODES'"
[[ "$NODE_RANK" =~ ^[0-9]+$ ]] && [ "$NODE_RANK" -lt "$NNODES" ] \
    || die "NODE_RANK must be in 0..$((NNODES - 1)), got '$NODE_RANK'"
if [ "$NNODES" -gt 1 ] && [ -z "${MASTER_ADDR:-}" ]; then
    die "MASTER_ADDR (the address of node 0) is needed when NNODES > 1"
fi

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
if [ -x "$ROOT/.venv/bin/python" ]; then
    PYTHON="$ROOT/.venv/bin/python"
else
    PYTHON=$(command -v python3 || command -v python) || die "no python found"
fi
# Found, not imported: importing torch here would add seconds to every launch.
INSTALLED="import importlib.util, sys; sys.exit(not all(importlib.util.find_spec(m) for m in sys.argv[1:]))"
"$PYTHON" -c "$INSTALLED" threedtrl.runtime torch timm 2>/dev/null \
    || die "the project is not installed in $PYTHON: run pip install -e . in $ROOT (or make venv)"

# Flags, config, data and model are checked once here, so a mistake gives one line, not one per process.
# The check prints the run's output folder; torchrun keeps its logs there (not in /tmp, where an
# interrupted run would leave them behind).
CHECK=$(WORLD_SIZE=$((NNODES * NUM_PROC)) "$PYTHON" "$ROOT/imagenet_train.py" "$@" --check-only)
OUT_DIR=$(printf '%s\n' "$CHECK" | sed -n 's/^output: //p' | tail -n 1)

if [ "$NNODES" -eq 1 ] && [ -z "${MASTER_ADDR:-}" ]; then
    RDZV=(--standalone)
else
    # Node 0 serves the rendezvous on MASTER_PORT: a port in use there would end in a torchrun traceback.
    PORT_FREE="import socket, sys; s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('', int(sys.argv[1])))"
    if [ "$NODE_RANK" -eq 0 ] && ! "$PYTHON" -c "$PORT_FREE" "$MASTER_PORT" 2>/dev/null; then
        die "MASTER_PORT $MASTER_PORT is in use on this machine: set MASTER_PORT to a free port"
    fi
    RDZV=(--nnodes "$NNODES" --node_rank "$NODE_RANK" --master_addr "$MASTER_ADDR" --master_port "$MASTER_PORT")
fi
# torchrun, reporting Ctrl-C, SIGTERM and failures in one line (runtime/torchrun.py)
PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" exec "$PYTHON" -m threedtrl.runtime.torchrun "${RDZV[@]}" --nproc_per_node "$NUM_PROC" --log-dir "$OUT_DIR/torchrun_logs" \
    "$ROOT/imagenet_train.py" "$@"
