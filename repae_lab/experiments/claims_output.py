"""What a claims benchmark wrote to its output folder, read back for notebook 08: the tables and verdicts as
markdown, the numbers behind them, the plots, and an interactive FD figure of every run."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any


BENCHMARKS = {"paper_claims": "benchmarks/paper_claims.py", "workshop_claims": "benchmarks/workshop_claims.py",
              "repa_followups": "benchmarks/paper_claims.py --only followups"}


@dataclass
class ClaimsOutput:
    folder: Path
    name: str                        # paper_claims | workshop_claims | repa_followups
    markdown: str                    # the tables and verdicts, as the benchmark wrote them
    data: dict[str, Any]             # the numbers behind them
    plots: list[Path]


def load_claims(folder: str | Path) -> ClaimsOutput:
    """What a claims benchmark wrote to `folder` (the paper's claims first, the follow-ups alone when only they
    ran); a ValueError that names the command when it wrote nothing."""
    folder = Path(folder)
    for name in BENCHMARKS:
        if (output := _load(folder, name)) is not None:
            return output
    raise ValueError(f"'{folder}' holds no benchmark results; run `python {BENCHMARKS['paper_claims']} --out "
                     f"{folder}` (or --quick, or {BENCHMARKS['workshop_claims']}) first.")


def load_followups(folder: str | Path) -> ClaimsOutput | None:
    """What `paper_claims.py --only followups` (or a whole run of it) wrote to `folder`; None before it ran."""
    return _load(Path(folder), "repa_followups")


def _load(folder: Path, name: str) -> ClaimsOutput | None:
    md, js = folder / f"{name}.md", folder / f"{name}.json"
    if not (md.is_file() and js.is_file()):
        return None
    plots = sorted(p for p in folder.glob("*.png") if p.name.startswith("followups_") == (name == "repa_followups"))
    return ClaimsOutput(folder, name, md.read_text(), json.loads(js.read_text()), plots)


def fd_figure_from_output(output: ClaimsOutput):
    """FD against steps of every run of a benchmark, one colour per arm, as an interactive plotly figure."""
    import plotly.graph_objects as go

    from ..views.figures import RUN_COLOURS

    fig = go.Figure()
    arms = list(dict.fromkeys(r["arm"] for r in output.data["runs"]))
    for r in output.data["runs"]:
        if r["fd"]:
            colour = RUN_COLOURS[arms.index(r["arm"]) % len(RUN_COLOURS)]
            fig.add_trace(go.Scatter(x=[s for s, _ in r["fd"]], y=[v for _, v in r["fd"]], mode="lines+markers",
                                     name=f"{r['arm']} (seed {r['seed']})", legendgroup=r["arm"],
                                     line=dict(color=colour)))
    fig.update_layout(title="FD against steps, every run (click a legend entry to hide it)", xaxis_title="step",
                      yaxis_title="FD (workshop evaluator)", yaxis_type="log", height=460,
                      margin=dict(t=60, l=60, r=20, b=40))
    return fig
