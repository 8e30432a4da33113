"""`repae-lab import-checkpoint` and `repae-lab compare-vaes`, over the released-model loaders
(repae_lab.models.released) and the VAE comparison (repae_lab.probes.vae_comparison).

Each command catches ReleasedModelError (and the data / feature-space errors) itself and prints the one-line
message, returning exit status 2.
"""
from __future__ import annotations

import sys

from ..data import DatasetError
from ..metrics.feature_spaces import FeatureSpaceError
from ..models.released.errors import ReleasedModelError
from ..models.released.import_run import IMPORTED_FILE, import_checkpoint
from ..probes.imported_snapshot import add_probe_snapshot
from ..probes.vae_comparison import compare_vaes


def _fail(err) -> int:
    print(f"repae-lab: error: {err}", file=sys.stderr)
    return 2


def import_checkpoint_command(args) -> int:
    try:
        run = import_checkpoint(args.src, args.out, vae=args.vae, latents_stats=args.latents_stats,
                                num_heads=args.num_heads, num_classes=args.num_classes,
                                alignment_depth=args.alignment_depth, overwrite=args.overwrite)
        if args.probe_data:
            add_probe_snapshot(run, args.probe_data, probe_size=args.probe_size)
    except ReleasedModelError as err:
        return _fail(err)
    print(f"imported {args.src} into run directory {run} (provenance and notes in {run / IMPORTED_FILE})"
          + ("; probe snapshot written: `repae-lab probe " + str(run) + "`" if args.probe_data else
             "; add --probe-data DATA to probe it"))
    return 0


def compare_vaes_command(args) -> int:
    try:
        result = compare_vaes(args.vae, args.images, args.out, n=args.n, resolution=args.resolution,
                              batch_size=args.batch_size, device=args.device, rfd=args.rfd,
                              rfd_weights=args.rfd_weights, cache_dir=args.cache_dir, seed=args.seed)
    except (ReleasedModelError, DatasetError, FeatureSpaceError) as err:
        return _fail(err)
    print((result.files["md"]).read_text())
    print("written: " + ", ".join(str(p) for p in result.files.values()))
    return 0


def add_subcommands(subparsers) -> None:
    """Add import-checkpoint and compare-vaes to an argparse subparsers object."""
    p = subparsers.add_parser("import-checkpoint", help="turn a released REPA-E / REPA SiT checkpoint into a run directory")
    p.add_argument("src", metavar="SRC", help="official training .pt (or a bare SiT state dict), folder or hub id")
    p.add_argument("--out", required=True, metavar="RUN", help="run directory to create")
    p.add_argument("--vae", default=None, metavar="SRC", help="VAE for checkpoints without one (REPA, LDM-only), or to "
                                                              "replace the bundled one: diffusers folder, LDM .pt, hub id")
    p.add_argument("--latents-stats", default=None, metavar="FILE", help="*-latents-stats.pt replacing the SiT's "
                                                                         "latent BatchNorm statistics")
    p.add_argument("--num-heads", type=int, default=None, help="attention heads, where args.model does not tell")
    p.add_argument("--num-classes", type=int, default=None, help="classes, where args do not tell")
    p.add_argument("--alignment-depth", type=int, default=None, help="REPA alignment depth, where args do not tell")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run directory")
    p.add_argument("--probe-data", default=None, metavar="DATASET_OR_FOLDER",
                   help="write a probe snapshot of these images (digits / fashion-mnist / cifar10 or a folder of "
                        "class folders), so `repae-lab probe` and the widgets work on the imported run")
    p.add_argument("--probe-size", type=int, default=200, help="probe images (class-balanced)")
    p.set_defaults(func=import_checkpoint_command)

    p = subparsers.add_parser("compare-vaes", help="encode the same images with several VAEs and compare every probe")
    p.add_argument("--vae", action="append", required=True, metavar="SPEC",
                   help="repeat: diffusers folder, LDM .pt, run directory, hub id or VAE_CONFIGS name")
    p.add_argument("--images", required=True, metavar="FOLDER_OR_DATASET",
                   help="a folder of images (class subfolders give labels) or digits / fashion-mnist / cifar10")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the table (csv, json, md) and figures")
    p.add_argument("--n", type=int, default=64, help="images to use (class-balanced where labelled)")
    p.add_argument("--resolution", type=int, default=None, help="one input size for all VAEs (default: each VAE's own)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--device", default="cpu")
    p.add_argument("--rfd", default="auto", choices=("auto", "workshop", "dinov2", "inception", "none"),
                   help="feature space of the rFD (auto: workshop evaluator for workshop datasets, else skipped)")
    p.add_argument("--rfd-weights", default=None, help="weights file of the dinov2 / inception feature space")
    p.add_argument("--cache-dir", default=None, help="cache of the workshop evaluator")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=compare_vaes_command)

