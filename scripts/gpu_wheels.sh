#!/usr/bin/env bash
# Fetch into .whl/ (git-ignored) the Python wheels a lent GPU host lacks. Measured on an H200 host (shared
# ENVIRONMENT.md, issue 24): Python 3.12 with torch, timm, accelerate, scikit-learn, numba, pandas, matplotlib,
# safetensors and huggingface-hub, but no diffusers, plotly, umap-learn, lpips, torch-fidelity, papermill, ipykernel
# or their dependencies, and no package registry. These 43 wheels (about 29 MB) made the quickstart, papermill and
# the official loop (einops) run there. Versions follow this checkout's .venv where it has the package.
# Then: device tool run(command="bash benchmarks/gpu_session.sh", carry=[".whl", ".official"]).
set -euo pipefail
cd "$(dirname "$0")/.."
py=.venv/bin/python
[ -x "$py" ] || py=python3
WHEELS=(diffusers importlib_metadata zipp lazy-importer plotly umap-learn pynndescent lpips torch-fidelity papermill
        entrypoints tenacity nbformat nbclient fastjsonschema jsonschema jsonschema-specifications referencing
        rpds-py jupyter_client jupyter_core ipykernel nest-asyncio2 ipython ipython_pygments_lexers traitlets pyzmq
        tornado comm debugpy matplotlib-inline prompt_toolkit wcwidth jedi parso pexpect ptyprocess stack_data
        asttokens executing pure_eval platformdirs einops)
pinned=()
for name in "${WHEELS[@]}"; do
    version=$("$py" -c "import importlib.metadata as m; print(m.version('$name'))" 2>/dev/null || true)
    pinned+=("$name${version:+==$version}")
done
rm -rf .whl && mkdir -p .whl
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp --abi cp312 \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --platform any -d .whl "${pinned[@]}"
echo "$(ls .whl | wc -l) wheels, $(du -sh .whl | cut -f1) in .whl/"
