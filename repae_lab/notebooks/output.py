"""What a notebook leaves in its executed copy for people and for `repae-lab run-notebook` / `sweep` to read.

- `setup()`: plotly figures that render offline: each figure is stored twice, as plotly's JSON (JupyterLab draws
  it) and as HTML that needs only the copy of plotly.js embedded once per notebook (the HTML export draws that).
  Never a CDN: GPU hosts and workshop laptops are often offline.
- `record_runs(...)` / `record_headline(...)`: one small output each, readable as text, that also carries JSON
  under RECORD_MIME; run-notebook collects them into its summary (the run directories a notebook made, its
  headline numbers) and sweep into its index.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterable, Mapping

RECORD_MIME = "application/vnd.repae-lab.record+json"
RENDERER = "repae_lab_offline"


# plotly and IPython (the optional notebook extra) are imported inside the functions that draw: reading records
# back (run-notebook, sweep) works without them
def _offline_renderer():
    """Figures as HTML that draws with the copy of plotly.js setup() embedded (plotly's "notebook" renderer
    without the MathJax script tag it adds to every figure, which points at a CDN)."""
    import plotly.io as pio
    from plotly.io.base_renderers import MimetypeRenderer

    class OfflineHtmlRenderer(MimetypeRenderer):
        def to_mimebundle(self, fig_dict):
            return {"text/html": pio.to_html(fig_dict, include_plotlyjs=False, include_mathjax=False,
                                             full_html=False, default_width="100%", default_height=525,
                                             validate=False)}

    return OfflineHtmlRenderer()


def setup() -> None:
    """Make plotly figures render offline in JupyterLab and in the HTML export: plotly.js is embedded here, in
    this cell's output (about 5 MB, once per notebook), and every figure after it is drawn with it. Call once,
    in the notebook's first code cell after the parameters check."""
    import plotly.io as pio
    from IPython.display import HTML, display
    from plotly.offline import get_plotlyjs

    if RENDERER not in pio.renderers:
        pio.renderers[RENDERER] = _offline_renderer()
    pio.renderers.default = f"plotly_mimetype+{RENDERER}"
    display(HTML(f"<script type=\"text/javascript\">{get_plotlyjs()}</script>"))


def figure_bundle(fig) -> dict:
    """A figure's output bundle for the current renderers (for display handles: handle.update(bundle, raw=True);
    a Figure handed to update() would be shown as a new output instead)."""
    return fig._repr_mimebundle_()


def _display(record: dict[str, Any], text: str) -> None:
    from IPython.display import display

    display({RECORD_MIME: record, "text/plain": text}, raw=True)


def record_runs(runs: Iterable[tuple[str | Path, str]] | Mapping[str | Path, str]) -> None:
    """Note the run directories this notebook used: [(path, action)], action = trained | resumed | reused |
    exported ... (what run-notebook lists as the run directories a notebook made)."""
    items = list(runs.items()) if isinstance(runs, Mapping) else list(runs)
    record = {"runs": [{"path": str(Path(p).resolve()), "action": a} for p, a in items]}
    _display(record, "\n".join(f"run directory {p}: {a}" for p, a in items))


def _number(v: Any) -> float | int | str | None:
    if isinstance(v, bool) or v is None:
        return None if v is None else int(v)
    if isinstance(v, (int, float)):
        return v if math.isfinite(v) else None
    return str(v)


def record_headline(numbers: Mapping[str, Any]) -> None:
    """The notebook's headline numbers (a flat {name: value}), as sweep indexes show them."""
    numbers = {str(k): _number(v) for k, v in numbers.items()}
    text = "  ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in numbers.items())
    _display({"headline": numbers}, f"headline: {text}")


def read_records(nb) -> dict[str, Any]:
    """{"runs": [...], "headline": {...}} collected from an executed notebook (an nbformat node)."""
    runs: dict[str, str] = {}
    headline: dict[str, Any] = {}
    for cell in nb.cells:
        for output in cell.get("outputs", []) if cell.cell_type == "code" else []:
            record = output.get("data", {}).get(RECORD_MIME)
            if not isinstance(record, dict):
                continue
            for r in record.get("runs", []):
                runs[r["path"]] = r["action"]
            headline.update(record.get("headline", {}))
    return {"runs": [{"path": p, "action": a} for p, a in runs.items()], "headline": headline}
