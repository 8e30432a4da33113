"""One comparison table across runs (CSV + JSON), a shared PCA basis across runs, and a text summary.

`repae-lab probe RUN [RUN ...]` ends here: every run is probed (or read from its cache), then one row per
(run, snapshot step) goes into probe_table.csv (scalar columns) and probe_table.json (everything,
per-channel lists included). Without --out the table lands in the runs' shared parent folder (runs/ for
the usual runs/NAME layout), so comparing the same runs again overwrites the same file; runs under
different parents put it in the first run's folder.
"""
from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Callable

from .. import rundir
from . import pca
from .features import ProbeError
from .results import RunProbes, read_tensors
from .runner import check_run, probe_run
from .settings import ProbeSettings

TABLE_NAME = "probe_table"       # probe_table.csv / probe_table.json


def default_table_dir(runs) -> Path:
    """Where the comparison table goes without --out: the runs' shared parent folder (runs/ for runs/NAME),
    or, when they live under different parents, the first run's own folder."""
    parents = {Path(r).resolve().parent for r in runs}
    return parents.pop() if len(parents) == 1 else Path(runs[0])


def _csv_value(v):
    if isinstance(v, float) and math.isnan(v):
        return ""
    return v


def _json_value(v):
    return None if isinstance(v, float) and math.isnan(v) else v


_COLUMN_GROUPS = ("run", "recipe", "step", "n_images", "linear/", "knn/", "cknna/", "mknn/", "spatial_var",
                  "total_variation", "high_freq_share", "effective_rank")


def _column_rank(name: str) -> int:
    """Headline columns first (identity, probes, Table 1 statistics), everything else after, in order seen."""
    for rank, prefix in enumerate(_COLUMN_GROUPS):
        if name == prefix or (prefix.endswith(("/", "rank")) and name.startswith(prefix)):
            return rank
    return len(_COLUMN_GROUPS)


def write_table(rows: list[dict], out_dir) -> tuple[Path, Path]:
    """probe_table.csv (scalar columns only) and probe_table.json (everything, lists included) in out_dir."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    columns: list[str] = []
    for row in rows:
        for k, v in row.items():
            if k not in columns and not isinstance(v, (list, dict)):
                columns.append(k)
    columns.sort(key=_column_rank)          # stable: within a group, first-seen order
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _csv_value(row.get(k, "")) for k in columns})
    csv_path, json_path = out_dir / f"{TABLE_NAME}.csv", out_dir / f"{TABLE_NAME}.json"
    rundir.atomic_write_text(csv_path, buf.getvalue())
    # NaN is not JSON; null keeps the file readable by any JSON parser (pandas, JavaScript, jq)
    clean = [{k: _json_value(v) for k, v in row.items()} for row in rows]
    rundir.atomic_write_text(json_path, json.dumps({"columns": columns, "rows": clean}, indent=1, allow_nan=False))
    return csv_path, json_path


def compare_runs(runs, out_dir=None, settings: ProbeSettings | None = None, *, recompute: bool = False,
                 log: Callable[[str], None] | None = None) -> tuple[list[RunProbes], Path, Path]:
    """probe_run on every run, then one table of every (run, step) row; returns the results and the two paths."""
    runs = [Path(r) for r in runs]
    for r in runs:              # fail on a bad folder before spending minutes on the good ones
        check_run(r)
    results = [probe_run(r, settings, recompute=recompute, log=log) for r in runs]
    names = [r.name for r in results]
    rows = []
    for res in results:
        for row in res.rows():
            if names.count(res.name) > 1:          # two runs called the same in different folders
                row["run"] = str(res.run)
            rows.append(row)
    csv_path, json_path = write_table(rows, out_dir if out_dir is not None else default_table_dir(runs))
    return results, csv_path, json_path


def comparison_pca_basis(runs, step: str | int = "last", percentiles=pca.DEFAULT_PERCENTILES) -> pca.PCABasis:
    """One PCA basis over several runs' latents (REPA-E Fig. 6: VAEs side by side in the same colours).

    step: 'last' (each run's final snapshot), 'all', or a step number every run has.
    """
    sets, fitted_on = [], []
    for run in runs:
        snaps = rundir.list_snapshots(check_run(run))
        if step == "last":
            chosen = snaps[-1:]
        elif step == "all":
            chosen = snaps
        else:
            chosen = [(s, p) for s, p in snaps if s == int(step)]
            if not chosen:
                raise ProbeError(f"'{run}' has no snapshot at step {step}; it has {[s for s, _ in snaps]}")
        for s, p in chosen:
            sets.append(read_tensors(p, keys=("latents",))[0]["latents"])
            fitted_on.append(f"{Path(run).name}@{s}")
    channels = {z.shape[1] for z in sets}
    if len(channels) > 1:
        raise ProbeError(f"these runs' latents have different channel counts {sorted(channels)}; a shared PCA "
                         f"basis needs the same latent shape. Compare runs of one VAE family.")
    return pca.fit_pca_basis(sets, percentiles=percentiles, fitted_on=fitted_on)


SUMMARY_COLUMNS = ("linear/latents", "linear/{sit}", "knn/latents", "cknna/{sit}", "mknn/{sit}", "cknna/latents",
                   "spatial_var", "total_variation", "high_freq_share", "effective_rank_images")


def _middle_sit(rows: list[dict]) -> str:
    """The SiT feature name nearest t = 0.5 among those present (sit_t50 for the default snapshot_t)."""
    names = sorted({k.split("/", 1)[1] for r in rows for k in r if k.startswith("linear/sit_t")})
    if not names:
        return "sit_t50"
    return min(names, key=lambda n: abs(int(n[len("sit_t"):]) - 50))


def summary_table(results: list[RunProbes], all_steps: bool = False) -> str:
    """A plain-text table of the headline probes: each run's last step (or every step), one row each."""
    rows = [row for res in results for row in (res.rows() if all_steps else res.rows()[-1:])]
    sit = _middle_sit(rows)
    columns = ["run", "recipe", "step"] + [c.format(sit=sit) for c in SUMMARY_COLUMNS]

    def fmt(v):
        if isinstance(v, float):
            return "nan" if math.isnan(v) else (f"{v:.3f}" if abs(v) < 1000 else f"{v:.1f}")
        return "-" if v is None else str(v)

    cells = [columns] + [[fmt(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    return "\n".join("  ".join(cell.rjust(w) if j > 1 else cell.ljust(w) for j, (cell, w) in enumerate(zip(row, widths)))
                     for row in cells)
