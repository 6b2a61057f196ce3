#!/usr/bin/env bash
# Install genserve with its test extras (first run), check formatting, lint, types, and run the whole test suite
# (slow tests included). Extra arguments go to pytest, e.g. ./scripts/test.sh -m "not slow" -x
set -euo pipefail
cd "$(dirname "$0")/.."
GENSERVE_EXTRAS=test ./scripts/setup.sh

# System tools the end-to-end tests use: Chromium for the docs pages, curl and jq for the README's walk-through.
missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v curl >/dev/null || missing+=(curl)
command -v jq >/dev/null || missing+=(jq)
if ((${#missing[@]})); then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "# installing ${missing[*]}"
    apt-get install -y -qq "${missing[@]}" >/dev/null 2>&1 \
      || { apt-get update -qq && apt-get install -y -qq "${missing[@]}" >/dev/null; }
  else
    echo "test.sh: the tests need ${missing[*]} (Debian/Ubuntu: sudo apt-get install ${missing[*]})" >&2
    exit 1
  fi
fi

CODE=(app worker models tests bench genserve.py client)
.venv/bin/ruff format --check "${CODE[@]}"
.venv/bin/ruff check "${CODE[@]}"
.venv/bin/mypy app worker models bench genserve.py
.venv/bin/mypy --strict client/src/genserve_client  # the client's own configuration (client/pyproject.toml)
# Every core runs tests (pytest-xdist), each test module on one of them, so that a module's services start once. One
# process when the tests use a configured Redis database (GENSERVE_TEST_REDIS_URL): they flush it, so they cannot share
# it. GENSERVE_TEST_WORKERS sets the number of processes.
parallel=(-n "${GENSERVE_TEST_WORKERS:-auto}" --dist loadfile)
[ -z "${GENSERVE_TEST_REDIS_URL:-}" ] || parallel=()
exec .venv/bin/python -m pytest -q "${parallel[@]}" "$@"
