"""The library's own subcommands of `repae-lab` (the package's build_parser puts every subcommand on one parser),
and the error handling every subcommand shares.

    repae-lab train --preset workshop --recipe repa-e --out runs/workshop-repa-e [--set key=value ...] [--config FILE.yaml]
    repae-lab train --resume RUN [--set steps=2000 lr=5e-5 ...]
    repae-lab export-vae RUN --out DIR
    repae-lab export-tracker RUN [RUN ...] --to tensorboard|wandb DIR [--samples N]
    repae-lab sample RUN --n N --out FILE [--sampler sde|euler|heun --steps K --cfg S --interval LOW,HIGH --seed S]
    repae-lab eval RUN [--n N --space workshop,dinov2,inception ...]
    repae-lab probe RUN [RUN ...] [--out DIR] [--recompute] [--no-umap]
    repae-lab quickstart --out DIR [--set key=value ...]
    repae-lab presets
"""
from __future__ import annotations

import sys

from ..config import PRESETS, RECIPES, ConfigError, parse_overrides, resolve_config
from ..evaluation import evaluate_run, format_record
from ..jobs.launch import USER_ERRORS, train
from ..models.export import export_vae
from ..probes import ProbeError, ProbeSettings, compare_runs, summary_table
from ..sampling import SamplingSpec, parse_interval, sample_to_files
from ..tracking import export_run
from ..training.distributed import shutdown
from ..training.summary import format_summary


def _train(args) -> int:
    if args.resume:
        if args.config or args.dry_run:
            raise ConfigError("--resume continues a run with its own config.json; --config / --dry-run apply to new "
                              "runs (change keys on resume with --set KEY=VALUE).")
        summary = train(resume=args.resume, overrides=parse_overrides(args.set), progress=not args.quiet)
    else:
        cfg = resolve_config(args.preset, recipe=args.recipe, yaml_file=args.config, overrides=parse_overrides(args.set))
        if args.dry_run:
            print(cfg.to_json())
            return 0
        out = args.out or f"runs/{cfg.preset}-{cfg.recipe}"
        summary = train(cfg, out, progress=not args.quiet)
    if summary:                       # under torchrun only rank 0 has one
        print(format_summary(summary))
    shutdown()
    return 0


def _export(args) -> int:
    path = export_vae(args.run, args.out)
    print(f"E2E-VAE written to {path} (diffusers AutoencoderKL layout, latents_mean / latents_std in config.json)")
    return 0


def _export_tracker(args) -> int:
    for run in args.runs:
        for kind, folder in args.to:
            target = export_run(run, kind, folder, samples=args.samples)
            print(f"{run} -> {target}")
    views = {"tensorboard": "tensorboard --logdir {}", "wandb": "wandb sync {}/wandb/offline-run-*"}
    print("view with: " + "; ".join(views[k].format(f) for k, f in dict.fromkeys(map(tuple, args.to))))
    return 0


def _sampling_spec(args):
    return SamplingSpec(sampler=args.sampler, steps=args.steps, cfg_scale=args.cfg, interval=parse_interval(args.interval),
                        seed=args.seed, ema=not args.no_ema)


def _sample(args) -> int:
    result = sample_to_files(args.run, args.n, args.out, _sampling_spec(args), checkpoint=args.checkpoint,
                             batch_size=args.batch_size, progress=not args.quiet)
    files, p = result["files"], result["protocol"]
    print(f"{p['n']} images of step {p['step']} ({p['images_per_second']} img/s): {files['npz']} (ADM layout, "
          f"labels beside arr_0), grid {files['png']}, protocol {files['json']}")
    return 0


def _eval(args) -> int:
    record = evaluate_run(args.run, n=args.n, spaces=args.space, spec=_sampling_spec(args), n_ref=args.n_ref,
                          weights={"dinov2": args.dinov2_weights, "inception": args.inception_weights},
                          recon=not args.no_recon, checkpoint=args.checkpoint, save_samples=not args.no_npz,
                          batch_size=args.batch_size, progress=not args.quiet)
    print(format_record(record))
    return 0


def _probe(args) -> int:
    settings = ProbeSettings(umap=not args.no_umap, aligned_umap=not (args.no_umap or args.no_aligned_umap))
    try:
        results, csv_path, json_path = compare_runs(args.runs, args.out, settings, recompute=args.recompute,
                                                    log=None if args.quiet else print)
    except ImportError as err:
        if "umap" not in str(err):
            raise
        print(f"repae-lab: error: {err} (or pass --no-umap)", file=sys.stderr)
        return 2
    except ProbeError as err:
        print(f"repae-lab: error: {err}", file=sys.stderr)
        return 2
    print(summary_table(results, all_steps=args.all_steps))
    print(f"table of every run and step: {csv_path} (+ {json_path.name}); per-run results cached in RUN/probes/")
    return 0


def _add_sampling_args(p) -> None:
    p.add_argument("run")
    p.add_argument("--sampler", default="sde", help="sde (Euler-Maruyama, the paper's) | euler | heun")
    p.add_argument("--steps", type=int, default=None, help="default: 250 for sde, 50 for euler / heun")
    p.add_argument("--cfg", type=float, default=1.0, help="classifier-free guidance scale (1 = none)")
    p.add_argument("--interval", default="0,1", metavar="LOW,HIGH", help="guide only where LOW <= t <= HIGH")
    p.add_argument("--seed", type=int, default=0, help="labels and noise; image i depends only on (seed, i)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--checkpoint", default=None, help="a checkpoint folder (default: the newest good one)")
    p.add_argument("--no-ema", action="store_true", help="sample the raw SiT instead of its EMA")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _quickstart(args) -> int:
    # here, not at the top: the quickstart draws its report with plotly, part of the notebook extra that a GPU
    # host which only trains may lack, and every other command must start without it
    from ..experiments.quickstart import QUICKSTART_RECIPES, quickstart

    recipes = tuple(r.strip() for r in args.recipes.split(",") if r.strip()) if args.recipes else QUICKSTART_RECIPES
    quickstart(args.out, preset=args.preset, recipes=recipes, overrides=parse_overrides(args.set), jobs=args.jobs,
               eval_n=args.eval_n)
    return 0


def _presets(args) -> int:
    for name, values in PRESETS.items():
        print(f"{name}: dataset={values.get('dataset')} resolution={values.get('resolution')} vae={values.get('vae')} "
              f"sit={values.get('sit_size')}/{values.get('patch_size')} steps={values.get('steps')} "
              f"batch={values.get('batch_size')}")
    return 0


def add_subcommands(sub) -> None:
    """Add train, export-vae, sample, eval, probe, quickstart and presets to the repae-lab parser's subparsers."""
    p = sub.add_parser("train", help="train a recipe into a run directory, or resume one")
    p.add_argument("--preset", default="workshop", help=f"one of: {', '.join(PRESETS)}")
    p.add_argument("--recipe", default=None, help=f"one of: {', '.join(RECIPES)} (default: repa-e)")
    p.add_argument("--out", default=None, help="run directory to create (default runs/PRESET-RECIPE)")
    p.add_argument("--config", default=None, help="YAML file of key: value overrides")
    p.add_argument("--set", nargs="+", action="extend", metavar="KEY=VALUE", default=[],
                   help="config overrides, e.g. --set steps=1000 seed=1 (repeatable); with --resume, the keys "
                        "that may change on resume (steps, learning rates, cadences, alarm policy, speed switches)")
    p.add_argument("--resume", default=None, metavar="RUN", help="continue RUN from its last good checkpoint")
    p.add_argument("--dry-run", action="store_true", help="print the resolved config and exit")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_train)

    p = sub.add_parser("export-vae", help="write a run's tuned VAE as a diffusers AutoencoderKL (the E2E-VAE)")
    p.add_argument("run")
    p.add_argument("--out", required=True)
    p.set_defaults(func=_export)

    p = sub.add_parser("export-tracker", help="write runs' history (metrics, evaluations, snapshot pictures, config) "
                                              "into TensorBoard or W&B; again replaces the previous export")
    p.add_argument("runs", nargs="+", metavar="RUN")
    p.add_argument("--to", nargs=2, action="append", required=True, metavar=("TRACKER", "DIR"),
                   type=str, help="tensorboard DIR (event files in DIR/RUN_NAME/) or wandb DIR (an offline run in "
                                  "DIR/wandb/); repeatable")
    p.add_argument("--samples", type=int, default=0, help="also draw N samples from every checkpoint kept")
    p.set_defaults(func=_export_tracker)

    p = sub.add_parser("sample", help="sample a run into an ADM-format .npz (+ PNG grid)")
    _add_sampling_args(p)
    p.add_argument("--n", type=int, required=True, help="number of images (class-balanced labels)")
    p.add_argument("--out", required=True, help="FILE(.npz): writes FILE.npz, FILE.png and FILE.json")
    p.set_defaults(func=_sample)

    p = sub.add_parser("eval", help="Frechet distances, precision / recall, IS and VAE reconstruction of a run")
    _add_sampling_args(p)
    p.add_argument("--n", type=int, default=None, help="samples (default 1000 on workshop data, 50000 otherwise)")
    p.add_argument("--space", default=None, help="feature spaces, comma-separated: workshop, dinov2, inception")
    p.add_argument("--n-ref", type=int, default=None, help="reference images (default: the whole train split)")
    p.add_argument("--dinov2-weights", default=None, help="local DINOv2-B/14 weights file or timm hub id")
    p.add_argument("--inception-weights", default=None, help="local torch-fidelity Inception-V3 weights file")
    p.add_argument("--no-recon", action="store_true", help="skip the VAE reconstruction metrics")
    p.add_argument("--no-npz", action="store_true", help="do not keep the samples as an .npz in RUN/eval")
    p.set_defaults(func=_eval)

    p = sub.add_parser("probe", help="latent probes (PCA, UMAP, linear / k-NN, CKNNA, latent statistics) of runs")
    p.add_argument("runs", nargs="+", metavar="RUN", help="run directories; every snapshot of each is probed")
    p.add_argument("--out", default=None, help="folder for probe_table.csv / .json (default: the runs' shared "
                                               "parent folder, e.g. runs/; else the first run's folder)")
    p.add_argument("--recompute", action="store_true", help="ignore the results cached in RUN/probes/")
    p.add_argument("--no-umap", action="store_true", help="skip UMAP and AlignedUMAP")
    p.add_argument("--no-aligned-umap", action="store_true", help="skip only AlignedUMAP across steps")
    p.add_argument("--all-steps", action="store_true", help="print every step, not only each run's last")
    p.add_argument("--quiet", action="store_true", help="no per-step progress lines")
    p.set_defaults(func=_probe)

    p = sub.add_parser("quickstart", help="train repa, e2e-diffusion and repa-e side by side, probe and evaluate "
                                          "them, and write DIR/report.html (the README's main job)")
    p.add_argument("--out", default="runs/quickstart", help="folder for the runs and report.html")
    p.add_argument("--preset", default="workshop", help=f"one of: {', '.join(PRESETS)}")
    p.add_argument("--recipes", default=None, help="comma-separated (default: repa,e2e-diffusion,repa-e)")
    p.add_argument("--set", nargs="+", action="extend", metavar="KEY=VALUE", default=[],
                   help="config overrides for every run, e.g. --set steps=200")
    p.add_argument("--jobs", type=int, default=3, help="runs trained at once, one thread each when more than one "
                   "(3 beats 2 on a 2-core CPU: 193 s against 207 s, docs/results.md)")
    p.add_argument("--eval-n", type=int, default=1000, help="samples for each run's final FD")
    p.set_defaults(func=_quickstart)

    p = sub.add_parser("presets", help="list the presets")
    p.set_defaults(func=_presets)


def run(args) -> int:
    """Run one parsed command line: a bad input or a broken run directory ends in one line and exit status 2."""
    try:
        return args.func(args)
    except USER_ERRORS as err:
        print(f"repae-lab: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("repae-lab: interrupted; the last checkpoint is kept (resume with `repae-lab train --resume RUN`)",
              file=sys.stderr)
        return 130
