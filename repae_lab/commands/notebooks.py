"""The `repae-lab run-notebook` and `repae-lab sweep` subcommands (the package's build_parser adds them).

    repae-lab run-notebook NOTEBOOK --out DIR [-p KEY VALUE ...] [-y YAML] [--kernel NAME] [--no-html] [--quiet]
    repae-lab sweep NOTEBOOK --out DIR --grid KEY=V1,V2 [--grid ...] [-p KEY VALUE ...] [--jobs N] [--force]
"""
from __future__ import annotations

import sys
from pathlib import Path

from ..notebooks.params import ParameterError, describe_parameters, notebook_parameters
from ..notebooks.runner import failure_line, parse_parameter_args, run_notebook
from ..notebooks.sweeps import parse_grid, run_sweep

HELP_P = "a notebook parameter; VALUE is read as YAML unless the parameter is a string (40, 1.5, true, [a, b])"


def _error(message: str) -> int:
    print(f"repae-lab: error: {message}", file=sys.stderr)
    return 2


def _needs_papermill():
    # papermill and nbconvert are the optional notebook extra: looked for only when a notebook command runs
    try:
        import nbconvert  # noqa: F401
        import papermill  # noqa: F401
    except ImportError as err:
        raise ParameterError(f"{err.name} is not installed; run-notebook and sweep need the notebook extra: "
                             f"pip install 'repae_lab[notebooks]'.") from None


def _parameters(args, declared):
    return parse_parameter_args(args.parameter, args.yaml, declared)


def _run_notebook(args) -> int:
    try:
        _needs_papermill()
        declared = notebook_parameters(args.notebook)
        if args.list_parameters:
            print(describe_parameters(declared))
            return 0
        if not args.out:
            return _error("--out DIR is required: the folder for the executed notebook, its HTML and summary.json.")
        summary = run_notebook(args.notebook, args.out, _parameters(args, declared), kernel=args.kernel,
                               cwd=args.cwd, html=not args.no_html, echo=not args.quiet)
    except ParameterError as err:
        return _error(str(err))
    out = Path(args.out)
    if summary["status"] == "ok":
        runs = ", ".join(r["path"] for r in summary.get("runs", [])) or "none"
        print(f"ok in {summary['wall_seconds']} s: {out / summary['executed']}"
              f"{', ' + str(out / summary['html']) if summary.get('html') else ''}, {out / 'summary.json'}; "
              f"run directories: {runs}")
        return 0
    error = summary.get("error") or {}
    if error.get("ename") in ("ParameterError", "NotebookError"):
        return _error(f"{error.get('evalue')} (executed notebook: {out / summary['executed']})")
    print(f"repae-lab: notebook failed: {failure_line(summary)}; see {out / summary['executed']}", file=sys.stderr)
    return 1


def _sweep(args) -> int:
    try:
        _needs_papermill()
        declared = notebook_parameters(args.notebook)
        grid = parse_grid(args.grid, declared, Path(args.notebook).name)
        fixed = _parameters(args, declared)
        index = run_sweep(args.notebook, args.out, grid, fixed, jobs=args.jobs, kernel=args.kernel,
                          force=args.force, html=not args.no_html)
    except ParameterError as err:
        return _error(str(err))
    entries = index["combinations"]
    failed = [e for e in entries if e["status"] != "ok"]
    out = Path(args.out)
    print(f"{len(entries) - len(failed)} of {len(entries)} combinations ok "
          f"({sum(e['skipped'] for e in entries)} from earlier runs); index: {out / 'index.html'}, "
          f"{out / 'index.json'}")
    for e in failed:
        print(f"  failed: {e['name']}: {e['error']} ({out / (e['notebook'] or e['summary'])})", file=sys.stderr)
    return 1 if failed else 0


def _add_common(p) -> None:
    p.add_argument("notebook", help="an .ipynb with a cell tagged 'parameters' (e.g. notebooks/01_train_a_run.ipynb)")
    p.add_argument("-p", "--parameter", nargs=2, action="append", metavar=("KEY", "VALUE"), default=[], help=HELP_P)
    p.add_argument("-y", "--yaml", default=None, help='parameters as a YAML mapping, e.g. "overrides: {steps: 40}"')
    p.add_argument("--kernel", default=None, help="Jupyter kernel name (default: the notebook's)")
    p.add_argument("--no-html", action="store_true", help="skip the HTML export")


def add_subcommands(subparsers) -> None:
    """Add run-notebook and sweep to the repae-lab parser's subparsers."""
    p = subparsers.add_parser("run-notebook", help="run a notebook with papermill: executed copy, offline HTML, "
                                                   "summary.json")
    _add_common(p)
    p.add_argument("--out", default=None, help="folder for NAME.ipynb, NAME.html, summary.json, log.txt (and the "
                                               "notebook's run directories, unless -p out is given)")
    p.add_argument("--cwd", default=None, help="working directory of the kernel (default: this one)")
    p.add_argument("--quiet", action="store_true", help="do not echo the cells' output")
    p.add_argument("--list-parameters", action="store_true", help="print the notebook's parameters and exit")
    p.set_defaults(func=_run_notebook)

    p = subparsers.add_parser("sweep", help="run a notebook for every combination of a parameter grid, with an index")
    _add_common(p)
    p.add_argument("--out", required=True, help="folder for index.html / index.json and one folder per combination")
    p.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2",
                   help="a parameter and its values (commas inside [ ] do not split); repeat for more")
    p.add_argument("--jobs", type=int, default=1, help="combinations run at once (each in its own kernel)")
    p.add_argument("--force", action="store_true", help="run again what finished in an earlier sweep")
    p.set_defaults(func=_sweep)

