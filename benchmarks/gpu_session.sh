#!/usr/bin/env bash
# Everything the project checks on a lent GPU, in one call that fits the device budget (about 9 minutes at most; each stage's limit is below):
#
#   here, once:   bash scripts/gpu_wheels.sh
#   device tool:  run(command="bash benchmarks/gpu_session.sh", carry=[".whl"], timeout_s=560)
#
# Each stage has its own time limit and writes into $OUT as it goes, so a stage that runs long costs only
# itself. Most important first: the paper-size throughput (issue 6's MFU goals), then the CUDA tests, then
# torch.compile throughput and a kernel profile. Copy the figures into docs/performance.md with the device.
set -u
OUT=${OUT:-$PWD/gpu-out}
mkdir -p "$OUT"
cd "$(dirname "$0")/.."
if ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        || { echo "wheel install failed"; exit 1; }
    export PYTHONPATH=/tmp/site:$PWD
else
    export PYTHONPATH=$PWD
fi
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
stage() {   # stage NAME SECONDS COMMAND...: run, keep its output, say how it ended
    local name=$1 limit=$2; shift 2
    local t0=$SECONDS
    timeout "$limit" "$@" >"$OUT/$name.txt" 2>&1
    echo "== $name: exit $? after $((SECONDS - t0)) s" | tee -a "$OUT/stages.txt"
    tail -n 25 "$OUT/$name.txt"
}
{ nvidia-smi; python3 -c "import torch, sys; print(sys.version); print(torch.__version__, torch.cuda.get_device_name())"; } \
    >"$OUT/device.txt" 2>&1
head -n 20 "$OUT/device.txt"
bench="python3 benchmarks/throughput.py --device cuda --precision bf16 --sizes xl2-sdvae --steps 10 --warmup 3"
# the goals: repa-cached >= 40% MFU, repa-e >= 30% MFU (SiT-XL/2, SD-VAE, DINOv2-B, bf16); 32 = the paper's per-GPU batch
stage eager 120 $bench --recipes repa-cached,repa,repa-e --batch 32 --json "$OUT/eager.json"
stage eager-channels-last 60 $bench --recipes repa-e --batch 32 --set channels_last=true --json "$OUT/eager-cl.json"
stage pytest-cuda 120 python3 -m pytest -q -p no:cacheprovider -m cuda tests/test_cuda.py
stage compile 150 $bench --recipes repa-cached,repa-e --batch 32 --compile --json "$OUT/compile.json"
stage eager-batch64-profile 60 $bench --recipes repa-cached --batch 64 --steps 5 --profile --json "$OUT/profile.json"
