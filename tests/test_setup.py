"""scripts/setup.sh: uv when it can be had, plain pip otherwise, both given the machine's pip settings.

The real installs are timed in docs/results.md; here a stand-in python records what setup.sh asks of it, so the
choice of installer and the flags handed to uv are checked in a second.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT

sys.path.insert(0, str(ROOT / "scripts"))
from pip_config_for_uv import uv_flags  # noqa: E402

# A stand-in for python: `-m venv DIR` makes DIR/bin/python (itself); every call is appended to $CALLS;
# `-m uv --version` succeeds once `-m pip install uv` has, and neither does when $UV_MISSING is set
FAKE_PYTHON = r'''#!/usr/bin/env bash
echo "$*" >> "$CALLS"
if [ "$1 $2" = "-m venv" ]; then mkdir -p "$3/bin" && cp "$0" "$3/bin/python"; exit 0; fi
if [ "$*" = "-m uv --version" ]; then [ -z "${UV_MISSING:-}" ] && [ -e "$CALLS.uv" ]; exit; fi
if [ "$*" = "-m pip install --quiet --disable-pip-version-check uv" ]; then
  [ -z "${UV_MISSING:-}" ] && touch "$CALLS.uv"; [ -z "${UV_MISSING:-}" ]; exit; fi
if [ "$2" = "scripts/pip_config_for_uv.py" ]; then exec "$REAL_PYTHON" "$2"; fi
exit 0
'''


@pytest.fixture
def fake_checkout(tmp_path):
    repo = tmp_path / "repo"
    (repo / "scripts").mkdir(parents=True)
    for name in ("setup.sh", "pip_config_for_uv.py"):
        shutil.copy(ROOT / "scripts" / name, repo / "scripts" / name)
    fake = tmp_path / "python"
    fake.write_text(FAKE_PYTHON)
    fake.chmod(0o755)
    return repo, fake


def run_setup(repo, fake, *args, **env):
    calls = repo.parent / "calls.txt"
    # the stand-in hands pip_config_for_uv.py to the real python, whose `pip config list` then reads this machine
    environ = {k: v for k, v in os.environ.items() if k != "REPAE_LAB_INSTALLER"}
    environ.update({"PYTHON": str(fake), "CALLS": str(calls), "REAL_PYTHON": sys.executable, **env})
    proc = subprocess.run(["bash", "scripts/setup.sh", *args], cwd=repo, env=environ, capture_output=True, text=True)
    return proc, calls.read_text().splitlines()


def test_setup_installs_with_uv_and_the_machines_pip_settings(fake_checkout):
    repo, fake = fake_checkout
    proc, calls = run_setup(repo, fake, "--dev")
    assert proc.returncode == 0, proc.stderr
    install = [c for c in calls if c.startswith("-m uv pip install")]
    assert len(install) == 1, calls
    assert install[0].endswith("--editable .[notebooks,tracking,dev]")
    assert "--compile-bytecode" in install[0]     # as pip does: no process compiles the packages' sources again
    assert not any(c.startswith("-m pip install --quiet --editable") for c in calls)


def test_setup_falls_back_to_pip_when_uv_cannot_be_installed(fake_checkout):
    repo, fake = fake_checkout
    proc, calls = run_setup(repo, fake, UV_MISSING="1")
    assert proc.returncode == 0, proc.stderr
    assert "installing with pip instead" in proc.stdout
    assert "-m pip install --quiet --editable .[notebooks]" in calls
    assert not any(c.startswith("-m uv pip install") for c in calls)


def test_pip_is_used_when_asked_for(fake_checkout):
    repo, fake = fake_checkout
    proc, calls = run_setup(repo, fake, REPAE_LAB_INSTALLER="pip")
    assert proc.returncode == 0, proc.stderr
    assert "-m pip install --quiet --editable .[notebooks]" in calls
    assert not any("uv" in c for c in calls)


def test_pip_settings_become_uv_flags():
    flags = uv_flags({"find-links": ["/opt/wheels"], "extra-index-url": ["file:///a", "file:///b"],
                      "constraint": ["/etc/caps.txt"], "index-url": ["https://mirror/simple"], "cert": ["/ca.pem"]})
    assert flags == ["--default-index", "https://mirror/simple", "--index", "file:///a", "--index", "file:///b",
                     "--find-links", "/opt/wheels", "--constraint", "/etc/caps.txt", "--native-tls",
                     "--index-strategy", "unsafe-best-match"]
    assert uv_flags({}) == []
