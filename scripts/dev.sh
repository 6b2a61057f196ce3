#!/usr/bin/env bash
# Install genserve (first run; only what the service needs) and start everything: API on :8000, one worker, and a
# Redis of its own (embedded) unless GENSERVE_REDIS_URL names one. Extra arguments go to `genserve dev`.
set -euo pipefail
cd "$(dirname "$0")/.."
GENSERVE_EXTRAS= ./scripts/setup.sh
exec .venv/bin/genserve dev "$@"
