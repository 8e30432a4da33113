"""What every widget of the workbench has: an output area where a callback's errors show, display in a notebook,
and a static export (`figure()`, `to_html(path)`) built from the same plain figures as the live views."""
from __future__ import annotations

import functools
import traceback
from pathlib import Path
from typing import Sequence

import ipywidgets as W
import plotly.graph_objects as go

from repae_lab.views.html_export import stack_figures, write_html

# errors whose message already says what is wrong and how to fix it: shown as one line, without a traceback
try:
    from repae_lab.rundir import RunError
    from repae_lab.sampling import SamplingError
    PLAIN_ERRORS: tuple[type[BaseException], ...] = (RunError, SamplingError, ValueError, FileNotFoundError)
except ImportError:  # pragma: no cover
    PLAIN_ERRORS = (ValueError, FileNotFoundError)


class View:
    """Base of the widgets: subclasses build `self.widget` and define `figures()` (plain go.Figures of what is
    shown now) and optionally `html_blocks()` (tables shown beside them in the HTML export)."""

    title = ""

    def __init__(self):
        self.output = W.Output(layout=W.Layout(max_height="160px", overflow="auto"))
        self.last_error: str | None = None

    # -- callbacks -----------------------------------------------------------------------------------------
    def guarded(self, fn):
        """`fn` as a widget callback: an exception shows in the output area (one line for the project's own
        errors, a traceback for anything else) instead of vanishing into a log nobody sees."""
        @functools.wraps(fn)
        def run(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except Exception as err:  # noqa: BLE001 - every error of a callback belongs in the output area
                self.show_error(err)
                return None
        return run

    def show_error(self, err: BaseException) -> None:
        if isinstance(err, PLAIN_ERRORS):
            text = f"{type(err).__name__}: {err}"
        else:
            text = "".join(traceback.format_exception(type(err), err, err.__traceback__))
        self.last_error = text
        self.output.append_stderr(text.rstrip() + "\n")

    def clear_errors(self) -> None:
        self.last_error = None
        self.output.outputs = ()          # (clear_output() would print escape codes outside a kernel)

    # -- static export -------------------------------------------------------------------------------------
    def figures(self) -> list[go.Figure]:
        raise NotImplementedError

    def html_blocks(self) -> list[str]:
        return []

    def figure(self) -> go.Figure:
        """Everything the widget shows now, as one plain plotly figure (no kernel needed to view it)."""
        figures = self.figures()
        return figures[0] if len(figures) == 1 else stack_figures(figures, title=self.title)

    def to_html(self, path: str | Path) -> Path:
        """A self-contained HTML page of the widget's views and tables (plotly.js inline: works offline)."""
        items: Sequence = [*self.html_blocks(), *self.figures()]
        return write_html(path, items, title=self.title)

    # -- display -------------------------------------------------------------------------------------------
    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)


def replace_figure(widget: go.FigureWidget, fresh: go.Figure) -> None:
    """Give a FigureWidget the traces and layout of `fresh`, keeping the widget (and its place on the page)."""
    with widget.batch_update():
        widget.data = []
        widget.layout = fresh.layout
        widget.add_traces(list(fresh.data))
