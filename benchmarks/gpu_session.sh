#!/usr/bin/env bash
# Everything the project measures on a lent GPU host, in one call of at most 9 minutes (benchmarks/gpu_session.py
# lists the stages; each is time-boxed and its results are packed into $OUT as it ends).
#
#   here, once:   bash scripts/gpu_wheels.sh            # the wheels the GPU host lacks, into .whl/
#                 a checkout of End2End-Diffusion/REPA-E in .official/REPA-E and ../shared/tools/official_step.py
#                 copied to .official/ (both git-ignored; docs/performance.md says how)
#   device tool:  run(command="bash benchmarks/gpu_session.sh", carry=[".whl", ".official"], timeout_s=590)
#   here, no GPU: bash benchmarks/gpu_session.sh --device cpu     # CPU stand-ins: checks the session's mechanics
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/gpu-out}
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
if [ -x .venv/bin/python ]; then          # a machine set up with scripts/setup.sh
    exec .venv/bin/python benchmarks/gpu_session.py --out "$OUT" "$@"
fi
if ls .whl/*.whl >/dev/null 2>&1; then    # a GPU host with torch but without the rest: the carried wheels
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        || { echo "wheel install failed"; exit 1; }
    export PYTHONPATH=/tmp/site:$PWD
else
    export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
fi
exec python3 benchmarks/gpu_session.py --out "$OUT" "$@"
