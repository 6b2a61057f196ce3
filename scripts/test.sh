#!/usr/bin/env bash
# Install genserve with its test extras (first run), lint, and run the whole test suite (slow tests included).
# Extra arguments go to pytest, e.g. ./scripts/test.sh -m "not slow" -x
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
.venv/bin/ruff check app worker models tests bench
.venv/bin/mypy app worker models bench
exec .venv/bin/python -m pytest -q "$@"
