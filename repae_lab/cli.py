"""`repae-lab`: the command line over the library.

    repae-lab train --preset workshop --recipe repa-e --out runs/workshop-repa-e [--set key=value ...] [--config FILE.yaml]
    repae-lab train --resume RUN
    repae-lab export-vae RUN --out DIR
    repae-lab presets
"""
from __future__ import annotations

import argparse
import sys

from .config import PRESETS, RECIPES, ConfigError, parse_overrides, resolve_config


def _train(args) -> int:
    from .train import format_summary, train

    if args.resume:
        summary = train(resume=args.resume, progress=not args.quiet)
    else:
        cfg = resolve_config(args.preset, recipe=args.recipe, yaml_file=args.config, overrides=parse_overrides(args.set))
        if args.dry_run:
            print(cfg.to_json())
            return 0
        out = args.out or f"runs/{cfg.preset}-{cfg.recipe}"
        summary = train(cfg, out, progress=not args.quiet)
    print(format_summary(summary))
    return 0


def _export(args) -> int:
    from .export import export_vae

    path = export_vae(args.run, args.out)
    print(f"E2E-VAE written to {path} (diffusers AutoencoderKL layout, latents_mean / latents_std in config.json)")
    return 0


def _presets(args) -> int:
    for name, values in PRESETS.items():
        print(f"{name}: dataset={values.get('dataset')} resolution={values.get('resolution')} vae={values.get('vae')} "
              f"sit={values.get('sit_size')}/{values.get('patch_size')} steps={values.get('steps')} "
              f"batch={values.get('batch_size')}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="repae-lab", description="REPA-E research workbench")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a recipe into a run directory, or resume one")
    p.add_argument("--preset", default="workshop", help=f"one of: {', '.join(PRESETS)}")
    p.add_argument("--recipe", default=None, help=f"one of: {', '.join(RECIPES)} (default: repa-e)")
    p.add_argument("--out", default=None, help="run directory to create (default runs/PRESET-RECIPE)")
    p.add_argument("--config", default=None, help="YAML file of key: value overrides")
    p.add_argument("--set", nargs="*", metavar="KEY=VALUE", default=[], help="config overrides, e.g. steps=1000")
    p.add_argument("--resume", default=None, metavar="RUN", help="continue RUN from its last good checkpoint")
    p.add_argument("--dry-run", action="store_true", help="print the resolved config and exit")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_train)

    p = sub.add_parser("export-vae", help="write a run's tuned VAE as a diffusers AutoencoderKL (the E2E-VAE)")
    p.add_argument("run")
    p.add_argument("--out", required=True)
    p.set_defaults(func=_export)

    p = sub.add_parser("presets", help="list the presets")
    p.set_defaults(func=_presets)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from .data import DatasetError
    from .train import RunError

    try:
        return args.func(args)
    except (ConfigError, DatasetError, RunError) as err:
        print(f"repae-lab: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("repae-lab: interrupted; the last checkpoint is kept (resume with `repae-lab train --resume RUN`)",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
