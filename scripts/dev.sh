#!/usr/bin/env bash
# Install genserve (first run) and start everything: API on :8000, one worker, and an embedded Redis when
# GENSERVE_REDIS_URL is unset and nothing answers on localhost:6379. Extra arguments go to `genserve dev`.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
exec .venv/bin/genserve dev "$@"
