#!/usr/bin/env bash
# Fetch, into .whl/ (git-ignored), the Python wheels the lent GPU hosts lack (shared ENVIRONMENT.md: they
# have torch, timm, safetensors, huggingface-hub, scipy, scikit-learn, tqdm, pytest, but not diffusers nor
# importlib_metadata, and reach no registry). Run once here; then `benchmarks/gpu_session.sh` on the GPU host
# installs them with the device tool's `carry: [".whl"]`. Versions follow this checkout's .venv.
set -euo pipefail
cd "$(dirname "$0")/.."
py=.venv/bin/python
[ -x "$py" ] || py=python3
version() { "$py" -c "import importlib.metadata as m; print(m.version('$1'))"; }
rm -rf .whl && mkdir -p .whl
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 -d .whl \
    "diffusers==$(version diffusers)" "importlib_metadata==$(version importlib_metadata)"
ls -l .whl
