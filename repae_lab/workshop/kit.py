"""The kit's runs on disk: found where the instructor prepared them, else trained where the notebook may write.

    kit = Kit()                      # prepared runs in $REPAE_LAB_CACHE/workshop (or ~/.cache/repae_lab/workshop)
    kit.run("vanilla")               # the prepared run, or trained now (the time it takes is printed first)
    kit.train_live("e2e-diffusion", view=TrainingMonitor)   # a fresh copy, trained while the view refreshes
    kit.probes("e2e-diffusion")      # its probe results (read from the cache when prepared)

A kit run's folder is `NAME-DIGEST`, the digest of its full settings (runs.py plus the notebook's overrides), so
a finished folder is reused as it is (a read-only shared folder included) and changed settings never collide
with old runs. `prepare` (the `repae-lab workshop prepare` command) makes every run, its probes and the
exported E2E-VAE in one go. A kit folder prepared under older settings holds its runs under other digests:
the notebooks refuse it (one line naming `prepare`) rather than retrain during a session; `prepare` rebuilds it.
"""
from __future__ import annotations

import hashlib
import json
import re
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from ..config import PRESETS, config_from_dict, resolve_config
from ..jobs.launch import train
from ..jobs.runs import ensure_run, run_is_complete
from ..models.export import export_vae
from ..models.trained_cache import default_cache_dir
from ..probes import load_probes, probe_run
from ..rundir import RunError, list_snapshots, read_json
from .live import LiveView
from .runs import COMMON, KIT_RUNS, PRESET, PROBES, SETUP_SECONDS, describe, estimate_seconds

EXPORT_MARK = "repae_lab_export.json"      # written last by models.export.export_vae


def default_kit_dir() -> Path:
    return default_cache_dir() / "workshop"


def writable(folder: Path) -> bool:
    """True when files can be created in `folder` (made if missing); a read-only shared cache is not."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-"):
            pass
        return True
    except OSError:
        return False


class Kit:
    """The workshop's runs for one set of overrides (CI passes tiny settings; a workshop passes none)."""

    def __init__(self, kit_dir: str | Path | None = None, work_dir: str | Path = "runs/workshop",
                 overrides: dict[str, Any] | None = None, *, progress: bool = True, log: Callable = print,
                 rebuild_outdated: bool = False):
        self.kit_dir = Path(kit_dir) if kit_dir else default_kit_dir()
        self.work_dir = Path(work_dir)
        self.overrides = dict(overrides or {})
        self.progress, self.log = progress, log
        self.rebuild_outdated = rebuild_outdated      # prepare's: train the runs an outdated kit folder lacks

    # ----------------------------------------------------------------- names and places
    def _spec(self, name: str):
        if name not in KIT_RUNS:
            raise RunError(f"the kit has no run named {name!r}; its runs are: {', '.join(KIT_RUNS)}.")
        return KIT_RUNS[name]

    def settings(self, name: str) -> dict[str, Any]:
        """The config overrides of a kit run (without the E2E-VAE's path, which depends on where it lies)."""
        return {**COMMON, **self._spec(name).overrides, **self.overrides}

    def key(self, name: str) -> str:
        spec = self._spec(name)
        # the preset's own values count too: a change there retrains the kit as a change in runs.py does
        source = {"preset": PRESET, "preset_settings": PRESETS[PRESET], "recipe": spec.recipe,
                  "settings": self.settings(name),
                  "vae_from": self.key(spec.vae_from) if spec.vae_from else None}
        return hashlib.sha256(json.dumps(source, sort_keys=True, default=str).encode()).hexdigest()[:8]

    def folder(self, name: str) -> str:
        return f"{name}-{self.key(name)}"

    def outdated(self, name: str) -> Path | None:
        """A finished `name` run in the kit folder made with other runs.py or preset settings than today's (a kit
        prepared by an older version of the package), for this Kit's overrides; None when there is none."""
        pattern = re.compile(rf"{re.escape(name)}-[0-9a-f]{{8}}")
        wanted = json.loads(json.dumps(self.overrides, default=str))      # as config.json spells the values
        for run in sorted(self.kit_dir.glob(f"{name}-*")):
            if pattern.fullmatch(run.name) and run.name != self.folder(name) and run_is_complete(run):
                config = read_json(run / "config.json")
                if all(config.get(k) == v for k, v in wanted.items()):   # runs for other overrides don't count
                    return run
        return None

    def _places(self) -> list[Path]:
        return [self.kit_dir] if self.kit_dir == self.work_dir else [self.kit_dir, self.work_dir]

    def find(self, name: str) -> Path | None:
        """The finished run, prepared (kit_dir) or trained earlier by a notebook (work_dir, the live copy of
        train_live included: the same settings), or None."""
        folder = self.folder(name)
        for run in [place / folder for place in self._places()] + [self.work_dir / f"{folder}-live"]:
            if run_is_complete(run):
                return run
        return None

    def _target(self) -> Path:
        return self.kit_dir if writable(self.kit_dir) else self.work_dir

    def estimate(self, name: str) -> str:
        return describe(name, self.overrides)

    # ----------------------------------------------------------------- runs
    def _overrides(self, name: str) -> dict[str, Any]:
        spec = self._spec(name)
        extra = {"vae": str(self.e2e_vae(spec.vae_from))} if spec.vae_from else {}
        return {**self.settings(name), **extra}

    def run(self, name: str) -> Path:
        """The finished kit run `name`: found, or trained now (interrupted ones resume)."""
        found = self.find(name)
        if found is not None:
            return found
        # a kit prepared with older settings: retraining here would cost minutes of the session, silently
        old = None if self.rebuild_outdated else self.outdated(name)
        if old is not None:
            where = "" if self.kit_dir == default_kit_dir() else f" --out {self.kit_dir}"
            sets = " --set (the notebook's overrides)" if self.overrides else ""
            raise RunError(f"the kit run '{old}' was made with older settings; run `repae-lab workshop prepare"
                           f"{where}{sets}` to rebuild it.")
        overrides = self._overrides(name)
        out = self._target() / self.folder(name)
        self.log(f"training {self.estimate(name)} (once; later calls reuse {out})")
        return ensure_run(PRESET, self._spec(name).recipe, out, overrides, progress=self.progress)

    def runs(self, *names: str) -> list[Path]:
        return [self.run(n) for n in names]

    def train_live(self, name: str, view: Callable[[Path], Any] | None = None, *, every: int = 1) -> Path:
        """A copy of kit run `name` trained now in work_dir (reused when done), with `view(run)` shown and
        refreshed at every log interval (see live.LiveView); set view=None to train without one."""
        out = self.work_dir / f"{self.folder(name)}-live"
        live = LiveView(view, out, every=every) if view is not None else None
        if not run_is_complete(out):
            overrides = self._overrides(name)
            cfg = resolve_config(PRESET, recipe=self._spec(name).recipe, overrides=overrides)
            self.log(f"training {self.estimate(name)}")
            if not (out / "config.json").is_file():
                train(cfg, out, progress=self.progress, on_metrics=live)
            elif config_from_dict(read_json(out / "config.json")) == cfg:
                train(resume=out, progress=self.progress, on_metrics=live)
            else:
                ensure_run(PRESET, cfg.recipe, out, overrides, progress=self.progress)   # names the difference
        if live is not None:
            live.refresh()
        return out

    def e2e_vae(self, source: str = "repa-e") -> Path:
        """The E2E-VAE exported from kit run `source` (`repae-lab export-vae`), exported once."""
        name = f"e2e-vae-{self.folder(source)}"
        for place in self._places():
            if (place / name / EXPORT_MARK).is_file():
                return place / name
        run = self.run(source)
        out = self._target() / name
        export_vae(run, out)
        return out

    def probes(self, run_or_name: str | Path):
        """The probe results (RunProbes) of a run: read as they are when every snapshot has them (a prepared,
        possibly read-only run), else computed with the kit's settings and cached in the run."""
        run = self.run(run_or_name) if str(run_or_name) in KIT_RUNS else Path(run_or_name)
        probes = load_probes(run)
        if set(probes.steps) == {s for s, _ in list_snapshots(run)} and (run / "probes" / "pca.safetensors").is_file():
            return probes
        try:
            return probe_run(run, PROBES)
        except OSError as err:     # a read-only shared folder whose runs were copied without their probes
            raise RunError(f"cannot write the probes of '{run}' ({err.strerror}); run `repae-lab workshop prepare` "
                           f"on that folder (it probes every run), or copy the run somewhere writable.") from None

    def warm_up(self) -> float:
        """Train once what every run shares (the workshop target encoder, the pretrained VAE, the evaluator and
        its reference statistics) into their cache; returns the seconds it took (about a minute the first time,
        nothing later)."""
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="repae-warm-up-") as tmp:
            cfg = resolve_config(PRESET, recipe="repa-e", overrides={
                **self.settings("repa-e"), "steps": 1, "eval_every": 1, "snapshot_every": 0, "checkpoint_every": 0,
                "log_every": 1})
            train(cfg, Path(tmp) / "run", progress=self.progress)
        return time.perf_counter() - t0


def prepare(out: str | Path | None = None, overrides: dict[str, Any] | None = None, *,
            names: list[str] | None = None, progress: bool = True, log: Callable = print) -> dict[str, Path]:
    """Train (or reuse) every kit run into `out` (default: $REPAE_LAB_CACHE/workshop), probe it and export the
    E2E-VAE: what `repae-lab workshop prepare` does before a workshop. Returns {name: run directory}."""
    kit = Kit(out, work_dir=out or default_kit_dir(), overrides=overrides, progress=progress, log=log,
              rebuild_outdated=True)
    if not writable(kit.kit_dir):
        raise RunError(f"cannot write to '{kit.kit_dir}'; prepare the kit into a folder you can write to (--out), "
                       f"then share that folder read-only.")
    names = list(names or KIT_RUNS)
    unknown = [n for n in names if n not in KIT_RUNS]
    if unknown:
        raise RunError(f"unknown kit run(s) {', '.join(unknown)}; the kit's runs are: {', '.join(KIT_RUNS)}.")
    log(f"preparing {len(names)} runs in {kit.kit_dir} (first time: about "
        f"{(SETUP_SECONDS + sum(_seconds(kit, n) for n in names)) / 60:.0f} min on a 2-core CPU)")
    done = {}
    for name in names:
        t0 = time.perf_counter()
        was_there, old = kit.find(name) is not None, kit.outdated(name)
        if not was_there and old is not None:
            log(f"  {name}: '{old}' was made with older settings; training it again (the old folder can go)")
        done[name] = kit.run(name)
        kit.probes(done[name])
        log(f"  {name}: {done[name]} ({'reused' if was_there else f'{time.perf_counter() - t0:.0f} s'})")
    if "repa-e" in names:
        log(f"  E2E-VAE: {kit.e2e_vae('repa-e')}")
    return done


def _seconds(kit: Kit, name: str) -> float:
    return 0.0 if kit.find(name) is not None else estimate_seconds(name, kit.overrides)
