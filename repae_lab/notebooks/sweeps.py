"""`repae-lab sweep`: a notebook run once per combination of a parameter grid.

    OUT/index.html, OUT/index.json    every combination: its parameters, status, wall time, headline numbers,
                                      links to its executed notebook and HTML
    OUT/COMBINATION/                  what run-notebook writes for it (NAME.ipynb, NAME.html, summary.json, log.txt,
                                      and its run directories, as the notebook's `out` / `out_root` default there)

A failed combination is kept and listed while the others go on. Run the same sweep again and what finished is
skipped (same parameters, status ok); what failed runs again. Every value of the grid is checked against the
notebook's parameters before anything runs.
"""
from __future__ import annotations

import html as html_lib
import itertools
import json
import multiprocessing
import os
import re
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from .params import ParameterError, check_types, notebook_parameters, parse_value
from .runner import SUMMARY, failure_line, run_notebook

INDEX = "index"


def split_values(text: str) -> list[str]:
    """'a,b,[c,d]' -> ['a', 'b', '[c,d]']: commas inside brackets, braces or quotes do not split."""
    parts, depth, quote, current = [], 0, None, ""
    for ch in text:
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "[{(":
            depth += 1
        elif ch in "]})":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(current.strip())
            current = ""
            continue
        current += ch
    parts.append(current.strip())
    return [p for p in parts if p]


def parse_grid(items: Sequence[str], declared: Mapping[str, dict[str, Any]], notebook: str = "") -> dict[str, list]:
    """['recipe=repa,repa-e', 'steps=40,80'] -> {'recipe': ['repa', 'repa-e'], 'steps': [40, 80]}, each value read
    by the type the notebook declares and checked like a -p value."""
    grid: dict[str, list] = {}
    for item in items:
        if "=" not in item:
            raise ParameterError(f"--grid '{item}' must look like key=value1,value2 (e.g. --grid recipe=repa,repa-e).")
        key, text = (s.strip() for s in item.split("=", 1))
        values = [parse_value(v, declared.get(key, {}).get("type")) for v in split_values(text)]
        if not values:
            raise ParameterError(f"--grid '{item}' lists no values; give one or more, comma-separated.")
        for v in values:
            check_types(declared, {key: v}, notebook)
        grid[key] = values
    return grid


def combinations(grid: Mapping[str, list]) -> list[dict[str, Any]]:
    keys = list(grid)
    return [dict(zip(keys, values)) for values in itertools.product(*(grid[k] for k in keys))]


def _short(v: Any) -> str:
    return ",".join(map(str, v)) if isinstance(v, (list, tuple)) else str(v)


def combination_name(values: Mapping[str, Any]) -> str:
    """A folder name for a combination: key=value pairs joined by '_', other characters replaced."""
    text = "_".join(f"{k}={_short(v)}" for k, v in values.items()) or "default"
    return re.sub(r"[^A-Za-z0-9_.,=+-]+", "-", text)[:150]


def _fill(value: Any, folder: Path) -> Any:
    """'{dir}' in a fixed string parameter becomes the combination's folder."""
    return value.replace("{dir}", str(folder)) if isinstance(value, str) else value


def _finished(folder: Path, given: Mapping[str, Any]) -> dict[str, Any] | None:
    try:
        summary = json.loads((folder / SUMMARY).read_text())
    except (OSError, ValueError):
        return None
    same = json.dumps(summary.get("given"), sort_keys=True, default=str) == json.dumps(given, sort_keys=True, default=str)
    return summary if same and summary.get("status") == "ok" else None


def _entry(name: str, values: Mapping[str, Any], summary: Mapping[str, Any], skipped: bool) -> dict[str, Any]:
    return {"name": name, "grid": dict(values), "status": summary.get("status"), "skipped": skipped,
            "wall_seconds": summary.get("wall_seconds"), "started": summary.get("started"),
            "notebook": f"{name}/{summary.get('executed')}" if summary.get("executed") else None,
            "html": f"{name}/{summary['html']}" if summary.get("html") else None,
            "summary": f"{name}/{SUMMARY}", "headline": summary.get("headline", {}),
            "runs": [r["path"] for r in summary.get("runs", [])],
            "error": failure_line(summary) if summary.get("status") == "failed" else None}


def write_index(out: Path, index: Mapping[str, Any]) -> tuple[Path, Path]:
    """OUT/index.json and OUT/index.html (a table linking every executed notebook)."""
    out.mkdir(parents=True, exist_ok=True)
    json_path, html_path = out / f"{INDEX}.json", out / f"{INDEX}.html"
    json_path.write_text(json.dumps(index, indent=1, default=str))
    entries = index["combinations"]
    grid_keys = list(index["grid"])
    headline = list(dict.fromkeys(k for e in entries for k in (e.get("headline") or {})))
    esc = html_lib.escape

    def cell(v):
        return f"{v:.4g}" if isinstance(v, float) else ("" if v is None else esc(str(v)))

    head = "".join(f"<th>{esc(h)}</th>" for h in ["combination", *grid_keys, "status", "seconds", *headline,
                                                   "notebook", "error"])
    rows = []
    for e in entries:
        colour = {"ok": "#e6f4e6", "failed": "#fbe3e3"}.get(e["status"], "#f3f3f3")
        link = f"<a href='{esc(e['html'])}'>{esc(e['name'])}</a>" if e.get("html") else esc(e["name"])
        status = e["status"] + (" (earlier run)" if e.get("skipped") else "")
        cells = [link, *(cell(_short(e["grid"].get(k))) for k in grid_keys), esc(status), cell(e.get("wall_seconds")),
                 *(cell((e.get("headline") or {}).get(k)) for k in headline),
                 f"<a href='{esc(e['notebook'])}'>.ipynb</a>" if e.get("notebook") else "", cell(e.get("error"))]
        rows.append(f"<tr style='background:{colour}'>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    failed = [e["name"] for e in entries if e["status"] == "failed"]
    page = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>sweep: {esc(index['notebook_name'])}</title>"
            "<style>body{font-family:sans-serif;margin:2em}td,th{padding:4px 10px;text-align:left;"
            "border-bottom:1px solid #ddd}</style></head><body>"
            f"<h1>Sweep of {esc(index['notebook_name'])}</h1>"
            f"<p>{len(entries)} combinations: {sum(e['status'] == 'ok' for e in entries)} ok, {len(failed)} failed"
            f"{', ' + ', '.join(map(esc, failed)) if failed else ''}. Fixed parameters: "
            f"<code>{esc(json.dumps(index['fixed'], default=str))}</code>. Updated {esc(index['updated'])}.</p>"
            f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table></body></html>")
    html_path.write_text(page, encoding="utf-8")
    return json_path, html_path


def share_the_cores(jobs: int) -> None:
    """Give the kernels that this process starts their share of the cores (OMP_NUM_THREADS, unless it is set
    already): `jobs` kernels with a thread per core each spin-wait for one another. Measured on the 2-core machine,
    two notebooks at a time: notebook 03 of the tests took 88 s with two threads per kernel, 27 s with one."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, cores // jobs)))


def run_sweep(notebook: str | Path, out: str | Path, grid: Mapping[str, list], fixed: Mapping[str, Any] | None = None,
              *, jobs: int = 1, kernel: str | None = None, force: bool = False, html: bool = True,
              log: Callable[[str], None] | None = print) -> dict[str, Any]:
    """Run every combination of `grid` (with the `fixed` parameters) into OUT/COMBINATION/, `jobs` at a time;
    writes and returns the index. Names and types are checked before anything runs (ParameterError)."""
    notebook, out = Path(notebook), Path(out)
    declared = notebook_parameters(notebook)
    fixed = dict(fixed or {})
    check_types(declared, fixed, notebook.name)
    for key, values in grid.items():
        for v in values:
            check_types(declared, {key: v}, notebook.name)
        if key in fixed:
            raise ParameterError(f"parameter '{key}' is both in --grid and -p; give it in one place.")
    combos = combinations(grid)
    names = [combination_name(c) for c in combos]
    if len(set(names)) != len(names):
        raise ParameterError("two grid combinations map to the same folder name; use values that differ in "
                             "letters or digits.")
    index: dict[str, Any] = {"notebook": str(notebook.resolve()), "notebook_name": notebook.name,
                             "grid": {k: list(v) for k, v in grid.items()}, "fixed": fixed,
                             "started": time.strftime("%Y-%m-%dT%H:%M:%S"), "combinations": []}
    entries: dict[str, dict[str, Any]] = {}
    todo = []
    for name, values in zip(names, combos):
        folder = out / name
        given = {**{k: _fill(v, folder) for k, v in fixed.items()}, **values}
        done = None if force else _finished(folder, given)
        if done is not None:
            entries[name] = _entry(name, values, done, skipped=True)
            _say(log, f"{name}: finished earlier, skipped")
        else:
            todo.append((name, values, folder, given))

    def publish():
        index["combinations"] = [entries[n] for n in names if n in entries]
        index["updated"] = time.strftime("%Y-%m-%dT%H:%M:%S")
        write_index(out, index)

    def finish(name, values, summary, i):
        entries[name] = _entry(name, values, summary, skipped=False)
        what = "ok" if summary["status"] == "ok" else failure_line(summary)
        _say(log, f"[{i}/{len(todo)}] {name}: {what} ({summary.get('wall_seconds')} s)")
        publish()

    publish()
    if jobs <= 1 or len(todo) <= 1:
        for i, (name, values, folder, given) in enumerate(todo, 1):
            finish(name, values, _run_one(notebook, folder, given, kernel, html), i)
    else:
        # processes, not threads: papermill changes the working directory of the process it runs in
        with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn"),
                                 initializer=share_the_cores, initargs=(jobs,)) as pool:
            futures = {pool.submit(_run_one, notebook, folder, given, kernel, html): (name, values)
                       for name, values, folder, given in todo}
            for i, future in enumerate(as_completed(futures), 1):
                name, values = futures[future]
                finish(name, values, future.result(), i)
    publish()
    return index


def _run_one(notebook: Path, folder: Path, given: dict[str, Any], kernel: str | None, html: bool) -> dict[str, Any]:
    """One combination; anything that goes wrong becomes a failed summary, so the sweep goes on."""
    try:
        return run_notebook(notebook, folder, given, kernel=kernel, html=html, cwd=os.getcwd())
    except Exception as err:
        summary = {"status": "failed", "given": given, "error": {"cell": None, "ename": type(err).__name__,
                                                                  "evalue": str(err)}}
        folder.mkdir(parents=True, exist_ok=True)
        (folder / SUMMARY).write_text(json.dumps(summary, indent=1, default=str))
        return summary


def _say(log, line: str) -> None:
    if log is not None:
        log(line)
