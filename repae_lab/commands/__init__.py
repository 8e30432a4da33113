"""The `repae-lab` command as installed (console script `repae_lab.commands:main`, and `python -m repae_lab`):
every subcommand on one parser. It sits at the top of the layer table, so nothing in the library imports upward to
assemble the command.

    cli.py        train, export-vae, sample, eval, probe, quickstart, presets; the error handling all commands share
    released.py   import-checkpoint, compare-vaes (released models)
    notebooks.py  run-notebook, sweep (papermill)
    workshop.py   workshop prepare, workshop status (the workshop kit's runs)
"""
from __future__ import annotations

import argparse

from . import cli, notebooks, released, workshop


def build_parser() -> argparse.ArgumentParser:
    """The parser of every subcommand, in the order `repae-lab --help` lists them."""
    parser = argparse.ArgumentParser(prog="repae-lab", description="REPA-E research workbench")
    sub = parser.add_subparsers(dest="command", required=True)
    for commands in (cli, released, notebooks, workshop):
        commands.add_subcommands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    return cli.run(build_parser().parse_args(argv))
