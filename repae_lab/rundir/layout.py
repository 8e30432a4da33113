"""Where things live in a run directory, and the check that a folder is one.

    RUN/
      config.json                  the resolved Config, written before step 0
      vae_config.json              the VAE's diffusers config (rebuilds its architecture offline)
      sit_config.json              the SiT's architecture (rebuilds it without the dataset or target encoder)
      metrics.jsonl                one JSON object per line, appended while training; readers skip a torn last line
      probe_set.json               indices and labels of the fixed, class-balanced probe images
      snapshots/step-NNNNNNNN.safetensors   probe-set latents, SiT / target tokens, reconstructions
      checkpoints/step-NNNNNNNN/   sit, ema, vae, discriminator, optimizer tensors + state.json + manifest.json
      eval/                        evaluations: step-NNNNNNNN-TAG.{json,png,npz}
      probes/                      probe results cached per snapshot
      environment.json             torch threads and versions the run started with (a bitwise resume needs the same)
      config_history.jsonl         the keys changed on each resume (`train --resume RUN --set ...`)
      summary.json                 written when a run finishes
      tensorboard/                 TensorBoard event files, with --set tracker=tensorboard (tracking/)
      wandb/, wandb_run.json       the W&B run's local files and its run id, with --set tracker=wandb
      tracker_samples/             the trackers' sample grid of each snapshot step (step-NNNNNNNN.png)
"""
from __future__ import annotations

from pathlib import Path

from .errors import RunError

CONFIG = "config.json"
VAE_CONFIG = "vae_config.json"
SIT_CONFIG = "sit_config.json"
METRICS = "metrics.jsonl"
PROBE_SET = "probe_set.json"
SUMMARY = "summary.json"
ENVIRONMENT = "environment.json"        # what a bitwise resume depends on (torch threads, versions)
CONFIG_HISTORY = "config_history.jsonl"  # every change of config.json on resume: {time, step, changes}
EVAL_DIR = "eval"


def check_run_dir(run: str | Path, needs: str = "a folder written by `repae-lab train`") -> Path:
    """`run` as a Path, or RunError when it holds no run (no config.json)."""
    run = Path(run)
    if not (run / CONFIG).is_file():
        raise RunError(f"'{run}' is not a run directory (no {CONFIG}); pass {needs}.")
    return run
