"""Print, one per line, the uv flags that say what this machine's pip configuration says.

uv reads neither pip.conf nor PIP_* variables, so without this a machine whose pip is pointed at local wheel
folders, extra indexes or a constraint file (a version cap) would get different packages from uv than from pip,
or download what pip would have taken from the disk. Used by scripts/setup.sh; standard library only.
"""
from __future__ import annotations

import subprocess
import sys

# pip option -> uv flag; each pip value may hold several entries separated by white space
FLAGS = {
    "index-url": "--default-index",
    "extra-index-url": "--index",
    "find-links": "--find-links",
    "constraint": "--constraint",
}


def pip_settings() -> dict[str, list[str]]:
    """The effective pip settings: `pip config list` (files, then PIP_* variables, which win)."""
    out = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True).stdout
    files: dict[str, list[str]] = {}
    env: dict[str, list[str]] = {}
    for line in out.splitlines():
        key, sep, value = line.partition("=")
        if not sep:
            continue
        section, _, option = key.rpartition(".")
        if section not in ("global", "install", ":env:"):
            continue
        target = env if section == ":env:" else files
        target[option] = value.strip().strip("'\"").split()
    return {**files, **env}


def uv_flags(settings: dict[str, list[str]]) -> list[str]:
    flags: list[str] = []
    for option, flag in FLAGS.items():
        for value in settings.get(option, []):
            flags += [flag, value]
    if "cert" in settings:
        # pip was given the system's certificate bundle; uv's own bundled roots would ignore a local authority
        flags.append("--native-tls")
    if "extra-index-url" in settings or "find-links" in settings:
        # pip takes the best version from all places together; uv's default takes a package from the first
        # index that has it, which could pick an older local copy over a newer release
        flags += ["--index-strategy", "unsafe-best-match"]
    return flags


if __name__ == "__main__":
    print("\n".join(uv_flags(pip_settings())))
