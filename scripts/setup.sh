#!/usr/bin/env bash
# Creates the virtualenv (once) and installs genserve into it; run by dev.sh and test.sh.
#
# torch: the CPU build (torch==2.13.0+cpu, from PyTorch's CPU wheel index) where there is no NVIDIA GPU, the CUDA build
# (torch==2.13.0 from PyPI) where `nvidia-smi` lists one; GENSERVE_TORCH overrides both, e.g.
#   GENSERVE_TORCH="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128" ./scripts/dev.sh
# A torch already in the virtualenv is kept. A wheel that pip can find without an index (PIP_FIND_LINKS, a local
# wheelhouse) is used first, so a machine without access to PyTorch's index does not wait on it.
#
# genserve itself (and its client) is installed with GENSERVE_EXTRAS (dev.sh: none; test.sh: "test"), and again only
# when pyproject.toml or client/pyproject.toml changed or more extras are asked for (a stamp in the virtualenv says
# what is installed).
# GENSERVE_SETUP_DRY_RUN=1 prints the commands instead of running them (the tests check them that way).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON=${PYTHON:-python3}
VENV=${GENSERVE_VENV:-.venv}
EXTRAS=${GENSERVE_EXTRAS-}
TORCH_VERSION=2.13.0
CPU_INDEX=https://download.pytorch.org/whl/cpu
DRY=${GENSERVE_SETUP_DRY_RUN:-}

run() {
  if [ -n "$DRY" ]; then echo "+ $*"; else "$@"; fi
}

has_gpu() {
  command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L 2>/dev/null | grep -q GPU
}

if [ ! -x "$VENV/bin/python" ]; then
  run "$PYTHON" -m venv "$VENV"
  run "$VENV/bin/python" -m pip install -q --upgrade pip
fi

if [ -n "$DRY" ] || ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
  if [ -n "$DRY" ] && [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c "import torch" 2>/dev/null; then
    echo "# torch is installed: kept"
  elif [ -n "${GENSERVE_TORCH:-}" ]; then
    # shellcheck disable=SC2086
    run "$VENV/bin/python" -m pip install -q $GENSERVE_TORCH
  elif has_gpu; then
    run "$VENV/bin/python" -m pip install -q "torch==$TORCH_VERSION"
  elif [ -n "$DRY" ]; then
    echo "+ $VENV/bin/python -m pip install -q --no-index --no-deps torch==$TORCH_VERSION+cpu  # a local wheel, if any"
    echo "+ $VENV/bin/python -m pip install -q torch==$TORCH_VERSION+cpu  # then its dependencies, from the usual index"
    echo "+ $VENV/bin/python -m pip install -q torch==$TORCH_VERSION+cpu --index-url $CPU_INDEX  # else"
  elif "$VENV/bin/python" -m pip install -q --no-index --no-deps "torch==$TORCH_VERSION+cpu" 2>/dev/null; then
    # The wheel was local (torch's dependencies are ordinary packages, from the usual index).
    "$VENV/bin/python" -m pip install -q "torch==$TORCH_VERSION+cpu"
  else
    "$VENV/bin/python" -m pip install -q "torch==$TORCH_VERSION+cpu" --index-url "$CPU_INDEX"
  fi
fi

stamp="$VENV/.genserve-installed"
want="$(cat pyproject.toml client/pyproject.toml | sha256sum | cut -c1-16) extras=${EXTRAS}"
have=$(cat "$stamp" 2>/dev/null || true)
if [ "$have" = "$want" ] || { [ -z "$EXTRAS" ] && [ "${have% extras=*}" = "${want% extras=*}" ]; }; then
  echo "# genserve is installed and up to date"
  exit 0
fi
# The client (client/: its own distribution) with its command line: `genserve upload|train|sample|...` is the client's,
# `genserve serve|worker|dev|keys` the server's, one command either way.
if [ -n "$EXTRAS" ]; then
  run "$VENV/bin/python" -m pip install -q -e "./client[cli,$EXTRAS]" -e ".[$EXTRAS]"
else
  run "$VENV/bin/python" -m pip install -q -e "./client[cli]" -e .
fi
if [ -z "$DRY" ]; then echo "$want" > "$stamp"; fi
