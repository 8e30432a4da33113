"""The `repae-lab` command as installed: the application's subcommands (app/cli.py) and those of the layer above
it, the workshop kit's (`repae-lab workshop prepare / status`), on one parser. It sits at the top of the layer
table, so nothing in the library imports upward to assemble the command."""
from __future__ import annotations

from .app import cli
from .workshop.cli import add_subcommands as add_workshop


def build_parser():
    return cli.build_parser(extensions=(add_workshop,))


def main(argv: list[str] | None = None) -> int:
    return cli.main(argv, build_parser())
