"""`repae-lab workshop ...`: preparing the workshop kit's runs before a session.

    repae-lab workshop prepare [--out DIR] [--only NAME ...] [--set key=value ...] [--quiet]
    repae-lab workshop status  [--out DIR] [--set key=value ...]

The package's build_parser adds them with `add_subcommands(subparsers)`.
"""
from __future__ import annotations

import sys

from ..config import ConfigError, parse_overrides, resolve_config
from ..rundir import RunError
from ..workshop.kit import Kit, prepare
from ..workshop.runs import KIT_RUNS, PRESET


def _typed_overrides(items) -> dict:
    """--set values as the config types them, so that `--set steps=30` names the same runs as {"steps": 30}."""
    raw = parse_overrides(items)
    cfg = resolve_config(PRESET, overrides=raw)
    return {k: getattr(cfg, k) for k in raw}


def _error(err) -> int:
    print(f"repae-lab: error: {err}", file=sys.stderr)
    return 2


def _prepare(args) -> int:
    try:
        overrides = _typed_overrides(args.set)
        prepare(args.out, overrides, names=args.only, progress=not args.quiet)
    except (ConfigError, RunError) as err:
        return _error(err)
    print("the kit is ready: the notebooks reuse these runs"
          + (f" (pass kit_dir={args.out!r} to them, or set REPAE_LAB_CACHE)" if args.out else ""))
    return 0


def _status(args) -> int:
    try:
        kit = Kit(args.out, work_dir=args.out or "runs/workshop", overrides=_typed_overrides(args.set), log=lambda m: None)
    except (ConfigError, RunError) as err:
        return _error(err)
    for name in KIT_RUNS:
        found, old = kit.find(name), kit.outdated(name)
        if found:
            print(f"{name:20s} ready     {found}")
        elif old:
            print(f"{name:20s} outdated  {old} (older settings; `repae-lab workshop prepare` rebuilds it)")
        else:
            print(f"{name:20s} missing   ({kit.estimate(name)})")
    return 0


def add_subcommands(subparsers) -> None:
    """Add `workshop prepare` and `workshop status` to the repae-lab command line."""
    p = subparsers.add_parser("workshop", help="the workshop kit: prepare its runs before a session")
    sub = p.add_subparsers(dest="workshop_command", required=True)

    q = sub.add_parser("prepare", help="train (or reuse) every kit run, its probes and the E2E-VAE, into a cache")
    q.add_argument("--out", default=None, help="the kit folder (default: $REPAE_LAB_CACHE/workshop, else "
                                               "~/.cache/repae_lab/workshop); share it read-only afterwards")
    q.add_argument("--only", nargs="+", metavar="NAME", default=None, help=f"some runs only: {', '.join(KIT_RUNS)}")
    q.add_argument("--set", nargs="*", metavar="KEY=VALUE", default=[],
                   help="config overrides for every run (the notebooks must pass the same `overrides`)")
    q.add_argument("--quiet", action="store_true", help="no progress bars")
    q.set_defaults(func=_prepare)

    q = sub.add_parser("status", help="which kit runs are prepared")
    q.add_argument("--out", default=None, help="the kit folder (default as for prepare)")
    q.add_argument("--set", nargs="*", metavar="KEY=VALUE", default=[], help="the overrides prepare was given")
    q.set_defaults(func=_status)
