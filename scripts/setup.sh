#!/usr/bin/env bash
# Create ./.venv and install repae_lab into it (with the test tools and the experiment trackers when given --dev).
# Safe to re-run.
#
# The installer is uv (from PyPI) when it can be had: it downloads and unpacks wheels in parallel, which is most
# of the set-up's time (torch alone is several GB unpacked). Where uv cannot be installed, or REPAE_LAB_INSTALLER=pip
# asks for it, plain pip does the same install. uv does not read pip's configuration, so the machine's pip
# settings (local wheel folders, extra indexes, version caps) are handed to it (scripts/pip_config_for_uv.py):
# both installers then pick the same packages from the same places.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
extras="[notebooks]"
if [ "${1:-}" = "--dev" ]; then
  extras="[notebooks,tracking,dev]"
fi
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi

installer=${REPAE_LAB_INSTALLER:-uv}
if [ "$installer" = uv ] && ! .venv/bin/python -m uv --version > /dev/null 2>&1; then
  .venv/bin/python -m pip install --quiet --disable-pip-version-check uv > /dev/null 2>&1 \
    || { echo "setup: uv could not be installed; installing with pip instead"; installer=pip; }
fi

if [ "$installer" = uv ]; then
  mapfile -t pip_settings < <(.venv/bin/python scripts/pip_config_for_uv.py)
  # --compile-bytecode: pip writes the .pyc files at install time, uv leaves them to the first import, and where
  # PYTHONDONTWRITEBYTECODE is set (these machines and CI) no import ever writes them: every process then compiled
  # torch's and diffusers' sources again (`repae-lab --help` 12.4 s -> 4.8 s once compiled, measured under load)
  .venv/bin/python -m uv pip install --quiet --compile-bytecode --python .venv/bin/python "${pip_settings[@]}" \
    --editable ".${extras}"
else
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet --editable ".${extras}"
fi
