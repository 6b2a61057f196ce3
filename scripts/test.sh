#!/usr/bin/env bash
# Install genserve with its test extras (first run), check formatting, lint, types, and run the whole test suite
# (slow tests included). Extra arguments go to pytest, e.g. ./scripts/test.sh -m "not slow" -x
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
CODE=(app worker models tests bench genserve.py)
.venv/bin/ruff format --check "${CODE[@]}"
.venv/bin/ruff check "${CODE[@]}"
.venv/bin/mypy app worker models bench genserve.py
exec .venv/bin/python -m pytest -q "$@"
