"""Static exports of the widgets' views: several plotly figures stacked into one, and self-contained HTML pages.

A widget's live views are FigureWidgets; its static export is made of the same plain figures, so an executed
papermill notebook, a report and the live widget show the same thing. Pages carry plotly.js inline (once per
page): GPU hosts and workshop laptops are often offline, so nothing is ever loaded from a CDN
(ENVIRONMENT.md).
"""
from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Sequence

import plotly.graph_objects as go
import plotly.io as pio

from .. import rundir

_AXIS_KEY = re.compile(r"([xy])axis(\d*)$")
_AXIS_REFS = ("anchor", "scaleanchor", "matches", "overlaying")


def _ref(key: str) -> str:
    """'xaxis2' -> 'x2', 'yaxis' -> 'y'."""
    m = _AXIS_KEY.match(key)
    return m.group(1) + m.group(2)


def _key(ref: str) -> str:
    """'x2' -> 'xaxis2'."""
    return f"{ref[0]}axis{ref[1:]}"


def _renamed(ref, names: dict[str, str]):
    """An axis reference ('x2', 'x2 domain', 'paper') under the new axis names."""
    if not isinstance(ref, str):
        return ref
    base, _, rest = ref.partition(" ")
    return names.get(base, base) + (f" {rest}" if rest else "")


def stack_figures(figures: Sequence[go.Figure], *, title: str | None = None, gap: int = 70,
                  width: int | None = None) -> go.Figure:
    """One figure holding `figures` top to bottom, each in a band as tall as its own layout.height.

    Axes are renumbered, vertical domains, paper-anchored annotations and shapes are moved into each band, and
    each figure's title becomes a heading above its band; traces keep their data, colours and hover text."""
    figures = [f for f in figures if f is not None]
    heights = [int(f.layout.height or 420) for f in figures]
    total = sum(heights) + gap * max(0, len(figures) - 1)
    out: dict = {"data": [], "layout": {"annotations": [], "shapes": []}}
    counters = {"x": 0, "y": 0}
    top = 1.0
    for fig, height in zip(figures, heights):
        low, high = top - height / total, top
        top = low - gap / total
        band = lambda y: low + float(y) * (high - low)
        spec = fig.to_plotly_json()
        layout = spec.get("layout", {})
        axes = {_ref(k): dict(v) for k, v in layout.items() if _AXIS_KEY.match(k)}
        for trace in spec.get("data", []):
            if "domain" not in trace:
                axes.setdefault(trace.get("xaxis", "x"), {})
                axes.setdefault(trace.get("yaxis", "y"), {})
        names = {}
        for ref in sorted(axes, key=lambda r: (r[0], int(r[1:] or 1))):
            counters[ref[0]] += 1
            names[ref] = ref[0] + (str(counters[ref[0]]) if counters[ref[0]] > 1 else "")
        for ref, axis in axes.items():
            for prop in _AXIS_REFS:
                if prop in axis:
                    axis[prop] = _renamed(axis[prop], names)
            if ref.startswith("y"):
                lo, hi = axis.get("domain", [0.0, 1.0])
                axis["domain"] = [band(lo), band(hi)]
            out["layout"][_key(names[ref])] = axis
        for trace in spec.get("data", []):
            trace = dict(trace)
            if "domain" in trace:
                dom = dict(trace["domain"])
                lo, hi = dom.get("y", [0.0, 1.0])
                dom["y"] = [band(lo), band(hi)]
                trace["domain"] = dom
            else:
                trace["xaxis"] = names[trace.get("xaxis", "x")]
                trace["yaxis"] = names[trace.get("yaxis", "y")]
            out["data"].append(trace)
        for kind in ("annotations", "shapes"):
            for item in layout.get(kind, []):
                item = dict(item)
                for axis in ("x", "y"):
                    ref = item.get(f"{axis}ref", "x" if axis == "x" else "y") if kind == "shapes" else item.get(f"{axis}ref")
                    if ref is not None:
                        item[f"{axis}ref"] = _renamed(ref, names)
                if item.get("yref") == "paper":
                    for prop in ("y", "y0", "y1"):
                        if prop in item:
                            item[prop] = band(item[prop])
                out["layout"][kind].append(item)
        heading = layout.get("title", {}).get("text")
        if heading:
            out["layout"]["annotations"].append(dict(text=f"<b>{heading}</b>", xref="paper", yref="paper", x=0, y=high,
                                                     xanchor="left", yanchor="bottom", yshift=26, showarrow=False,
                                                     font=dict(size=15)))
    out["layout"].update(height=total + 80, margin=dict(t=110 if title else 70, l=40, r=20, b=30),
                         title=dict(text=title or ""), showlegend=True)
    if width:
        out["layout"]["width"] = width
    if figures and "template" in figures[0].to_plotly_json().get("layout", {}):
        out["layout"]["template"] = figures[0].layout.template
    return go.Figure(out)


def page_html(items: Sequence[go.Figure | str], *, title: str = "") -> str:
    """A self-contained HTML page of figures and HTML fragments, in order; plotly.js inline, once."""
    parts, first = [], True
    for item in items:
        if isinstance(item, go.Figure):
            parts.append(pio.to_html(item, include_plotlyjs=first, full_html=False, config={"responsive": True}))
            first = False
        elif item:
            parts.append(f"<div>{item}</div>")
    head = f"<title>{html.escape(title)}</title>" if title else ""
    heading = f"<h2 style='font-family:sans-serif'>{html.escape(title)}</h2>" if title else ""
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'>{head}</head>"
            f"<body style='font-family:sans-serif'>{heading}{''.join(parts)}</body></html>")


def write_html(path: str | Path, items: Sequence[go.Figure | str], *, title: str = "") -> Path:
    """page_html written atomically to `path` (its folder is created); returns the path."""
    path = Path(path)
    if path.suffix.lower() not in (".html", ".htm"):
        raise ValueError(f"'{path}' is not an .html file name; pass a path ending in .html.")
    path.parent.mkdir(parents=True, exist_ok=True)
    text = page_html(items, title=title)
    rundir.write_then_rename(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    return path
