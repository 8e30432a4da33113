#!/usr/bin/env bash
# Create ./.venv and install repae_lab into it (with the test tools and the experiment trackers when given --dev).
# Safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
extras="[notebooks]"
if [ "${1:-}" = "--dev" ]; then
  extras="[notebooks,tracking,dev]"
fi
.venv/bin/python -m pip install --quiet --editable ".${extras}"
