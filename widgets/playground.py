"""SamplerPlayground: sample from a run's checkpoint with chosen settings and watch one sample being denoised.

The draw runs in the Draw button's callback on the kernel's thread; the sampler reports every step, and the
progress bar and label move with it, so a long draw (the SDE sampler's 250 steps, a large grid) is never a
frozen kernel without a sign of life. Weights are loaded once per checkpoint (repae_lab.views.playground).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Sequence

import ipywidgets as W
import plotly.graph_objects as go

from repae_lab.views.playground import (DrawSettings, ModelCache, checkpoint_choices, class_names, draw_samples,
                                        grid_figure, settings_html, trajectory_figure)
from repae_lab.views.figures import run_label
from repae_lab.sampling import SAMPLERS

from ._base import View, replace_figure

BALANCED = "all classes (balanced)"


class SamplerPlayground(View):
    """Sample from one of `runs`:
    - run and checkpoint (newest first), EMA or raw SiT, class (or class-balanced), CFG scale, guidance interval,
      sampler, steps, seed, number of images;
    - the sample grid, and the trajectory of the first sample: x_t and the predicted clean image at a few t.

        SamplerPlayground("runs/workshop-repa-e")

    `draw()` (the Draw button) samples with the current settings; `settings()` returns them.
    """

    title = "Sampler playground"

    def __init__(self, runs: Sequence[str | Path] | str | Path, *, n: int = 16, steps: int = 25,
                 sampler: str = "euler", draw: bool = False):
        super().__init__()
        runs = [runs] if isinstance(runs, (str, Path)) else list(runs)
        if not runs:
            raise ValueError("SamplerPlayground needs at least one run directory.")
        self.runs = [Path(r) for r in runs]
        self.models = ModelCache()
        self.last_draw = None
        self.draws = 0
        style = {"description_width": "110px"}
        wide = W.Layout(width="370px")
        self.run = W.Dropdown(options=[(run_label(r), str(r)) for r in self.runs], description="run", style=style,
                              layout=wide)
        self.checkpoint = W.Dropdown(description="checkpoint", style=style, layout=wide)
        self.model = W.ToggleButtons(options=[("EMA", True), ("raw", False)], value=True, description="weights",
                                     style={**style, "button_width": "70px"})
        self.label = W.Dropdown(description="class", style=style, layout=wide)
        self.cfg_scale = W.FloatSlider(value=1.0, min=1.0, max=10.0, step=0.25, description="CFG scale", style=style,
                                       continuous_update=False)
        self.interval = W.FloatRangeSlider(value=(0.0, 1.0), min=0.0, max=1.0, step=0.05,
                                           description="guidance on t in", style=style, continuous_update=False)
        self.sampler = W.Dropdown(options=list(SAMPLERS), value=sampler, description="sampler", style=style)
        self.steps = W.IntSlider(value=steps, min=2, max=250, description="steps", style=style,
                                 continuous_update=False)
        self.seed = W.IntText(value=0, description="seed", style=style, layout=W.Layout(width="220px"))
        self.n = W.IntSlider(value=n, min=1, max=64, description="images", style=style, continuous_update=False)
        self.draw_button = W.Button(description="Draw", icon="paint-brush", button_style="primary")
        self.progress = W.IntProgress(value=0, min=0, max=1, layout=W.Layout(width="240px"))
        self.progress_label = W.HTML("")
        self.grid = go.FigureWidget(grid_figure(None))
        self.trajectory = go.FigureWidget(trajectory_figure(None))
        self.run.observe(self.guarded(lambda change: self._run_changed()), names="value")
        self.draw_button.on_click(self.guarded(lambda _: self.draw()))
        self._run_changed()
        controls = W.VBox([self.run, self.checkpoint, self.model, self.label, self.sampler, self.steps,
                           self.cfg_scale, self.interval, self.seed, self.n,
                           W.HBox([self.draw_button, self.progress]), self.progress_label],
                          layout=W.Layout(min_width="390px", flex="0 0 auto"))
        self.widget = W.VBox([W.HBox([controls, self.grid]), self.trajectory, self.output])
        if draw:
            self.draw()

    def _run_changed(self) -> None:
        run = Path(self.run.value)
        choices = checkpoint_choices(run)
        self.checkpoint.options = choices or [("no checkpoint yet", "")]
        self.checkpoint.value = choices[0][1] if choices else ""
        names = class_names(run)
        current = self.label.value
        self.label.options = [(BALANCED, -1)] + [(f"{c}: {name}" if name != str(c) else name, c)
                                                 for c, name in enumerate(names)]
        self.label.value = current if current in [v for _, v in self.label.options] else -1

    def settings(self) -> DrawSettings:
        """The controls' values as DrawSettings (what draw() samples with)."""
        return DrawSettings(ema=self.model.value, label=None if self.label.value in (-1, None) else int(self.label.value),
                            cfg_scale=float(self.cfg_scale.value), interval=tuple(self.interval.value),
                            steps=int(self.steps.value), sampler=self.sampler.value, seed=int(self.seed.value),
                            n=int(self.n.value))

    def draw(self):
        """Sample with the current settings and show the grid and the trajectory; returns the Draw."""
        settings = self.settings()
        settings.spec()                                    # bad settings fail here, before any loading
        run = Path(self.run.value)
        if not self.checkpoint.value:
            raise ValueError(f"'{run}' has no checkpoint yet: it writes one every checkpoint_every steps and at the "
                             f"end; train on, or choose another run.")
        self.clear_errors()
        self.draw_button.disabled = True
        self.progress.value, self.progress.bar_style = 0, "info"
        self.progress_label.value = f"loading {Path(self.checkpoint.value).name} ..."
        started = time.perf_counter()
        last = [0.0]

        def progress(done: int, total: int) -> None:
            now = time.perf_counter()
            if done == total or now - last[0] > 0.1:       # at most ten updates a second
                self.progress.max, self.progress.value = total, done
                self.progress_label.value = f"sampling: step {done} / {total} ({now - started:.1f} s)"
                last[0] = now

        try:
            loaded = self.models.get(run, self.checkpoint.value)
            result = draw_samples(loaded, settings, progress=progress)
        except Exception:
            self.progress.bar_style = "danger"
            self.progress_label.value = "failed: see below"
            raise
        finally:
            self.draw_button.disabled = False
        self.last_draw = result
        self.draws += 1
        with self.grid.batch_update():
            fresh = grid_figure(result)
            self.grid.data[0].z = fresh.data[0].z
            self.grid.layout.title.text = fresh.layout.title.text
        replace_figure(self.trajectory, trajectory_figure(result))
        self.progress.bar_style = "success"
        self.progress_label.value = (f"drawn {len(result.images)} images in {result.seconds:.2f} s "
                                     f"({time.perf_counter() - started:.2f} s with loading)")
        return result

    # -- static export ------------------------------------------------------------------------------------------
    def figures(self) -> list[go.Figure]:
        return [grid_figure(self.last_draw), trajectory_figure(self.last_draw)]

    def html_blocks(self) -> list[str]:
        return [settings_html(self.last_draw)]
