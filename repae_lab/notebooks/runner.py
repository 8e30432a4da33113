"""`repae-lab run-notebook`: one notebook executed with papermill, as a lab schedules it on a GPU host.

    OUT/NAME.ipynb       the executed notebook (a failed one shows where it stopped)
    OUT/NAME.html        its HTML export, which renders offline: plotly.js is embedded once, and the export
                         loads nothing from a CDN (no require.js, MathJax or widget renderer)
    OUT/summary.json     parameters, status, wall time, the run directories the notebook made or used, and
                         the headline numbers it recorded (output.py)
    OUT/log.txt          what the notebook's cells printed (training progress lines included)

Names and types of the parameters are checked against the notebook's parameters cell before a kernel starts
(papermill itself only warns about a name the notebook lacks, and runs the defaults).
"""
from __future__ import annotations

import json
import logging
import re
import sys
import time
from pathlib import Path
from typing import Any, Mapping

import yaml

from .output import read_records
from .params import ParameterError, check_types, notebook_parameters, parse_value

SUMMARY = "summary.json"
LOG = "log.txt"
# parameters run-notebook sets when the caller does not: runs go into the output folder, and no widgets (their
# state would fill the executed notebook, and the HTML export could not draw them)
OUTPUT_PARAMETERS = {"out": "run", "out_root": "run", "comparison_out": "vae-comparison"}


def default_parameters(parameters: Mapping[str, dict[str, Any]], given: Mapping[str, Any], out: Path) -> dict[str, Any]:
    """The values run-notebook fills in for parameters the caller did not give."""
    extra: dict[str, Any] = {}
    for name, leaf in OUTPUT_PARAMETERS.items():
        if name in parameters and name not in given:
            extra[name] = str(out / leaf)
    if "widgets" in parameters and "widgets" not in given:
        extra["widgets"] = False
    return extra


def export_html(executed: str | Path, html: str | Path) -> Path:
    """An HTML page of an executed notebook that renders offline: JupyterLab's look, without the template's
    CDN scripts (require.js, MathJax, the widget renderer); plotly figures come with the notebook."""
    # papermill, nbformat, nbconvert and its jinja2 are the optional notebook extra: imported where a notebook is
    # run or exported, so `repae-lab --help` and the other commands start without them
    import jinja2
    import nbformat
    from nbconvert import HTMLExporter

    template = ("{%- extends 'lab/index.html.j2' -%}\n"
                "{%- block html_head_js -%}{%- endblock html_head_js -%}\n"
                "{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}\n"
                "{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}\n"
                "{% block jupyter_widgets %}{% endblock jupyter_widgets %}\n")
    exporter = HTMLExporter(extra_loaders=[jinja2.DictLoader({"repae_lab_offline.html.j2": template})],
                            template_file="repae_lab_offline.html.j2")
    nb = nbformat.read(str(executed), as_version=4)
    body, _ = exporter.from_notebook_node(nb)
    html = Path(html)
    html.write_text(body, encoding="utf-8")
    return html


def _error_of(nb) -> dict[str, Any] | None:
    """The first error output of an executed notebook: the cell (index among all cells), its name and value."""
    for i, cell in enumerate(nb.cells):
        for output in cell.get("outputs", []) if cell.cell_type == "code" else []:
            if output.output_type == "error":
                return {"cell": i, "execution_count": cell.get("execution_count"), "ename": output.ename,
                        "evalue": output.evalue, "source": cell.source[:300]}
    return None


def _strip_widget_state(path: Path) -> None:
    import nbformat

    nb = nbformat.read(str(path), as_version=4)
    if "widgets" in nb.metadata:
        del nb.metadata["widgets"]
        nbformat.write(nb, str(path))


class _Echo(logging.Handler):
    """Papermill's log of cell outputs, printed as it comes (run-notebook with --log-output)."""

    def emit(self, record):
        message = record.getMessage()
        if message.startswith(("Executing Cell", "Ending Cell")) or re.fullmatch(r"<[\w.]+ object>\s*", message):
            return                              # cell markers, and the text stand-ins of figures and HTML
        print(message.rstrip("\n"), file=sys.stderr, flush=True)


def run_notebook(notebook: str | Path, out: str | Path, parameters: Mapping[str, Any] | None = None, *,
                 kernel: str | None = None, cwd: str | Path | None = None, html: bool = True,
                 echo: bool = False, name: str | None = None) -> dict[str, Any]:
    """Execute `notebook` with `parameters` into folder `out`; returns (and writes) the summary.

    Raises ParameterError, before any kernel starts, for a parameter the notebook lacks or a value of the wrong
    type. A failing cell does not raise: the summary's status is "failed" and its error names the cell; the
    executed notebook and its HTML show where it stopped."""
    import nbformat
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    notebook, out = Path(notebook), Path(out)
    given = dict(parameters or {})
    declared = notebook_parameters(notebook)
    check_types(declared, given, notebook.name)
    values = {**default_parameters(declared, given, out), **given}
    out.mkdir(parents=True, exist_ok=True)
    stem = name or notebook.stem
    executed, page, log_path = out / f"{stem}.ipynb", out / f"{stem}.html", out / LOG
    summary: dict[str, Any] = {"notebook": str(notebook.resolve()), "executed": executed.name,
                               "html": page.name if html else None, "parameters": values, "given": given,
                               "defaults": {k: v["default"] for k, v in declared.items()},
                               "started": time.strftime("%Y-%m-%dT%H:%M:%S"), "status": "running"}
    (out / SUMMARY).write_text(json.dumps(summary, indent=1, default=str))
    logger = logging.getLogger("papermill")
    handler = _Echo() if echo else None
    if handler is not None:
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    t0 = time.time()
    error = None
    try:
        with open(log_path, "w") as log:
            pm.execute_notebook(str(notebook), str(executed), parameters=values, kernel_name=kernel,
                                cwd=str(cwd) if cwd else None, progress_bar=False, log_output=echo,
                                stdout_file=log, stderr_file=log, store_widget_state=bool(values.get("widgets", True)))
    except PapermillExecutionError:
        pass                                   # the executed notebook holds the error; read it back below
    except Exception as err:                   # the kernel died or could not start
        error = {"cell": None, "ename": type(err).__name__, "evalue": str(err)}
    finally:
        if handler is not None:
            logger.removeHandler(handler)
    summary["wall_seconds"] = round(time.time() - t0, 1)
    if executed.is_file():
        if values.get("widgets") is False:
            _strip_widget_state(executed)
        nb = nbformat.read(str(executed), as_version=4)
        error = error or _error_of(nb)
        summary.update(read_records(nb))
        if html:
            export_html(executed, page)
    summary["status"] = "failed" if error else "ok"
    summary["error"] = error
    (out / SUMMARY).write_text(json.dumps(summary, indent=1, default=str))
    return summary


def failure_line(summary: Mapping[str, Any]) -> str:
    """One line that says where and why a notebook stopped."""
    e = summary.get("error") or {}
    if e.get("cell") is not None:
        line = next((l for l in str(e.get("source", "")).splitlines() if l.strip()), "")
        where = f"cell In [{e.get('execution_count')}] ({line[:60]!r})"
    else:
        where = "the kernel"
    first = str(e.get("evalue", "")).strip().splitlines()
    return f"{where} failed: {e.get('ename')}: {first[0] if first else ''}"


def parse_parameter_args(pairs: list[list[str]] | None, yaml_text: str | None,
                         declared: Mapping[str, dict[str, Any]]) -> dict[str, Any]:
    """-p KEY VALUE pairs (read by the type the notebook declares, params.parse_value) and a -y YAML
    mapping (later -p win)."""
    values: dict[str, Any] = {}
    if yaml_text:
        try:
            loaded = yaml.safe_load(yaml_text)
        except yaml.YAMLError as err:
            raise ParameterError(f"-y is not valid YAML: {err}") from None
        if not isinstance(loaded, dict):
            raise ParameterError("-y must be a YAML mapping, e.g. -y \"overrides: {steps: 40}\".")
        values.update(loaded)
    for key, text in pairs or []:
        values[key] = parse_value(text, declared.get(key, {}).get("type"))
    return values
