#!/usr/bin/env bash
# Creates .venv (once) and installs genserve into it. Sourced by dev.sh and test.sh.
# torch: the CPU wheel torch==2.13.0 by default; GPU users set GENSERVE_TORCH to their CUDA build, e.g.
#   GENSERVE_TORCH="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128" ./scripts/dev.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip
fi
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  # shellcheck disable=SC2086
  .venv/bin/python -m pip install -q ${GENSERVE_TORCH:-torch==2.13.0}
fi
.venv/bin/python -m pip install -q -e ".[${GENSERVE_EXTRAS:-test}]"
