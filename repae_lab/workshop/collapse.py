"""Checker of exercise 4: reading a latent collapse off the probe numbers.

The learner writes `collapsed(first, last) -> bool` over two readings of a run (its first and last snapshot),
each a dict with the keys of READING_KEYS. The cases are built so that each tempting but wrong reading fails
one of them: the diffusion loss (it falls fastest when the latent collapses), the latent's overall scale or its
linear-probe accuracy (both survive a collapse), an absolute threshold (latent scales differ by VAE), and "any
decrease" (REPA-E smooths latents without collapsing them).
"""
from __future__ import annotations

import html
from pathlib import Path
from typing import Callable

from .. import rundir
from .verdict import Verdict, Wrong, call, run_checks

READING_KEYS = ("step", "spatial_var", "total_variation", "latent_std", "linear/latents", "loss/diffusion")


def _r(step, spatial_var, total_variation, latent_std, linear, diffusion):
    return dict(zip(READING_KEYS, (step, spatial_var, total_variation, latent_std, linear, diffusion)))


# (name, first, last, collapsed?, why: the sentence shown when the learner's function gets this case wrong,
#  the typical wrong readings (MISTAKES) this case is there to catch)
# The two digits runs were measured with the kit's earlier settings (SiT lr 1e-4, unguided, 200 / 300 steps),
# whose collapse was deeper (200x) than today's runs' (about 20x); they still teach the same reading, so the
# cases keep them.
CASES = [
    ("e2e-diffusion on the digits (measured, kit run)",
     _r(0, 2.04, 434.0, 2.08, 0.93, 1.99), _r(200, 0.0096, 35.2, 1.65, 0.925, 1.07), True,
     "the latent's overall std and its linear-probe accuracy barely moved, yet the spatial variance fell about "
     "200x: every position of each channel now holds nearly the same value. A latent can keep its scale and "
     "its class information and still lose everything an image is made of.", {"latent_std", "linear_probe"}),
    ("repa-e on the digits (measured, kit run)",
     _r(0, 2.04, 434.0, 2.08, 0.93, 1.99), _r(300, 2.9, 463.0, 2.48, 0.95, 0.965), False,
     "the diffusion loss fell a lot here too, and the latent is healthy: its spatial variance and total "
     "variation stayed where they started. A falling diffusion loss says nothing about the latent on its own.", {"diffusion_loss"}),
    # the next two: spatial variance and total variation from REPA-E's Table 1 (SD-VAE latents, SiT-XL/2,
    # 400K steps); the std, probe accuracy and loss values are illustrative
    ("an SD-VAE latent tuned by the diffusion loss (Table 1's numbers)",
     _r(0, 17.06, 6627.35, 5.0, 0.60, 0.40), _r(400_000, 0.02, 89.80, 4.5, 0.55, 0.05), True,
     "this latent started with a spatial variance of 17 and ended at 0.02 (850x less): judge a collapse by how "
     "far the numbers fell from where the run started, not by a fixed threshold.", {"absolute_threshold"}),
    ("an SD-VAE latent tuned by REPA (Table 1's numbers)",
     _r(0, 17.06, 6627.35, 5.0, 0.60, 0.40), _r(400_000, 18.02, 5516.14, 5.1, 0.70, 0.30), False,
     "the total variation fell by a sixth while the spatial variance rose: a slightly smoother latent, as "
     "REPA-E makes SD-VAE's noisy latents, is not a collapsed one.", {"total_variation"}),
    ("a VAE whose latents are small from the start",
     _r(0, 0.05, 11.0, 0.25, 0.90, 1.20), _r(300, 0.06, 12.0, 0.26, 0.92, 0.80), False,
     "this latent was small at step 0 and stayed as it was: small values are not a collapse, a drop by orders "
     "of magnitude from the starting values is.", {"absolute_threshold"}),
    ("smoothed, not collapsed",
     _r(0, 2.0, 430.0, 2.0, 0.93, 1.90), _r(300, 1.3, 300.0, 1.9, 0.94, 1.20), False,
     "the spatial variance fell by a third: the latent got smoother, but it still varies across positions as "
     "much as a healthy latent does. A collapse is a fall by one or more orders of magnitude.", {"any_decrease"}),
    ("the channels' offsets shrink, the latent is fine",
     _r(0, 2.04, 434.0, 2.08, 0.93, 1.99), _r(300, 1.95, 425.0, 0.95, 0.93, 0.95), False,
     "the overall std halved because each channel's mean moved towards zero, while the variation within each "
     "image, which carries the picture, stayed as it was.", {"latent_std"}),
    ("the diffusion loss rises, the latent is fine",
     _r(0, 2.0, 430.0, 2.0, 0.93, 1.00), _r(300, 2.1, 440.0, 2.0, 0.93, 1.30), False,
     "a diffusion loss that rises is a training problem (learning rate, too few steps), but the latent itself "
     "kept all its detail.", {"diffusion_loss"}),
]

# typical wrong readings, named for the tests and the instructor's guide
MISTAKES = {
    "diffusion_loss": lambda f, l: l["loss/diffusion"] < 0.5 * f["loss/diffusion"],
    "latent_std": lambda f, l: l["latent_std"] < 0.5 * f["latent_std"],
    "linear_probe": lambda f, l: l["linear/latents"] < f["linear/latents"] - 0.2,
    "absolute_threshold": lambda f, l: l["spatial_var"] < 0.1,
    "any_decrease": lambda f, l: l["spatial_var"] < f["spatial_var"],
}


def check_collapse_reading(collapsed: Callable) -> Verdict:
    """Run `collapsed(first, last)` on readings with known answers (CASES) and say which it reads wrongly and
    why."""
    def body(right):
        if not callable(collapsed):
            raise Wrong("pass your function itself: check_collapse_reading(collapsed).", "not_callable")
        wrong = []
        for name, first, last, expected, why, tags in CASES:
            answer = call(collapsed, dict(first), dict(last), what="collapsed", case=name)
            if answer is None:
                raise Wrong(f"collapsed returned None on the case '{name}': return True or False.", "returns_none")
            try:
                answer = bool(answer)
            except Exception:
                raise Wrong(f"collapsed returned a {type(answer).__name__} that is neither True nor False.",
                            "wrong_type") from None
            if answer == expected:
                right.append(name)
            else:
                wrong.append((name, expected, why, tags))
        if wrong:
            mistake = _mistake(collapsed)
            # the case that teaches the diagnosed mistake, else the first one read wrongly
            name, expected, why, _ = next((w for w in wrong if mistake in w[3]), wrong[0])
            said = "not collapsed" if expected else "collapsed"
            more = f" ({len(wrong) - 1} more case{'s' if len(wrong) > 2 else ''} read wrongly.)" if len(wrong) > 1 else ""
            raise Wrong(f"'{name}': you read it as {said}, but {why}{more}", mistake)
        return ("every case read right: a collapse shows in the latent's spatial variance (and total variation) "
                "falling by orders of magnitude from where the run started, whatever the loss and the scale do.")
    return run_checks("collapse_reading", body)


def _mistake(collapsed) -> str:
    """The typical wrong reading the learner's answers agree with on every case, if any."""
    for key, rule in MISTAKES.items():
        try:
            if all(bool(collapsed(dict(f), dict(l))) == rule(f, l) for _, f, l, _, _, _ in CASES):
                return key
        except Exception:
            return "wrong_reading"
    return "wrong_reading"


# ---------------------------------------------------------------------------------------------------------
# readings of real runs, to apply the learner's function to

def reading(probes, step: int) -> dict:
    """A run's reading at one snapshot step: its probe numbers and the diffusion loss logged nearest to it."""
    scalars = probes.scalars[step]
    logged = [r for r in rundir.read_jsonl(Path(probes.run) / "metrics.jsonl")
              if "event" not in r and isinstance(r.get("loss/diffusion"), (int, float))]
    nearest = min(logged, key=lambda r: abs(r["step"] - step))["loss/diffusion"] if logged else float("nan")
    return {"step": step, "spatial_var": scalars["spatial_var"], "total_variation": scalars["total_variation"],
            "latent_std": scalars["latent_std"], "linear/latents": scalars.get("linear/latents", float("nan")),
            "loss/diffusion": nearest}


def collapse_table(collapsed: Callable | None, probes_list) -> str:
    """An HTML table: each run's first and last readings and what `collapsed` says of it (None: no verdict
    column; a function that fails says so in its cell)."""
    rows = []
    for probes in probes_list:
        first, last = reading(probes, probes.steps[0]), reading(probes, probes.steps[-1])
        verdict = ""
        if collapsed is not None:
            try:
                verdict = "collapsed" if bool(collapsed(dict(first), dict(last))) else "healthy"
            except Exception as err:     # the learner's function: reported in the table, never raised
                verdict = f"error: {type(err).__name__}"
        cells = [probes.name, probes.recipe or ""] + [f"{first[k]:.3g} → {last[k]:.3g}" for k in READING_KEYS[1:]]
        rows.append(cells + ([verdict] if collapsed is not None else []))
    head = ["run", "recipe"] + [f"{k} (first → last)" for k in READING_KEYS[1:]] + (["your reading"] if collapsed else [])
    th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"
