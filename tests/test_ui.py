"""The UI layer over run directories: figure builders, the notebook helpers (workbench), the widgets."""
from __future__ import annotations

import numpy as np
import pytest

from repae_lab import rundir
from repae_lab.config import resolve_config
from repae_lab.probes import ProbeSettings
from repae_lab.app.launch import train
from repae_lab.rundir import RunError

NO_UMAP = ProbeSettings(umap=False, aligned_umap=False)


def _overrides(encoder_cache, **extra):
    from conftest import TINY
    return {**TINY, "cache_dir": encoder_cache, "steps": 6, "snapshot_every": 3, "checkpoint_every": 3,
            "eval_every": 3, "eval_n": 16, **extra}


@pytest.fixture(scope="module")
def ui_runs(tmp_path_factory, encoder_cache):
    """Two finished tiny runs (repa-e and e2e-diffusion) with snapshots at steps 0, 3, 6 and evaluations."""
    root = tmp_path_factory.mktemp("ui")
    runs = []
    for recipe in ("repa-e", "e2e-diffusion"):
        out = root / recipe
        train(resolve_config("workshop", recipe=recipe, overrides=_overrides(encoder_cache)), out, progress=False)
        runs.append(out)
    return runs


# ---------------------------------------------------------------------------------------------------------
# figures

def test_training_curves_have_a_panel_per_logged_metric_and_a_line_per_run(ui_runs):
    from repae_lab.app.figures import metric_series, training_curves

    fig = training_curves(ui_runs)
    keys = {t.meta for t in fig.data}
    assert {"loss/diffusion", "loss/repa", "latent/spatial_var", "eval/fd_workshop"} <= keys
    assert "loss/repa" in keys            # only repa-e logs it: its panel has one line, not two
    assert sum(t.meta == "loss/repa" for t in fig.data) == 1
    assert sum(t.meta == "loss/diffusion" for t in fig.data) == 2
    steps, values = metric_series(ui_runs[0], "loss/diffusion")
    line = next(t for t in fig.data if t.meta == "loss/diffusion" and t.legendgroup == str(ui_runs[0]))
    assert list(line.x) == steps == [1, 2, 3, 4, 5, 6] and list(line.y) == values


def test_metric_series_skips_events_and_torn_lines(tmp_path):
    from repae_lab.app.figures import metric_series

    rundir.append_jsonl(tmp_path / "metrics.jsonl", {"step": 1, "loss/diffusion": 1.0})
    rundir.append_jsonl(tmp_path / "metrics.jsonl", {"step": 1, "event": "rollback", "loss/diffusion": 9.0})
    rundir.append_jsonl(tmp_path / "metrics.jsonl", {"step": 2, "loss/diffusion": float("nan")})
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write('{"step": 3, "loss/diff')                    # a record still being written
    assert metric_series(tmp_path, "loss/diffusion") == ([1], [1.0])


def test_tile_and_image_conversion():
    from repae_lab.data.images import tile, to_uint8_images

    images = to_uint8_images(np.stack([np.full((1, 4, 4), -1.0), np.full((1, 4, 4), 1.0), np.zeros((1, 4, 4))]))
    assert images.shape == (3, 4, 4, 3) and images.dtype == np.uint8
    assert images[0].max() == 0 and images[1].min() == 255 and images[2].flat[0] in (127, 128)
    mosaic = tile(images, cols=2, pad=1)
    assert mosaic.shape == (2 * 5 + 1, 2 * 5 + 1, 3)
    assert (mosaic[1:5, 6:10] == 255).all() and (mosaic[6:10, 1:5] == images[2]).all()


# ---------------------------------------------------------------------------------------------------------
# workbench (what the notebooks call)

def test_ensure_run_trains_once_then_reuses_resumes_or_refuses(tmp_path, encoder_cache):
    from repae_lab.app.workbench import ensure_run, run_is_complete

    overrides = _overrides(encoder_cache, steps=3, eval_every=0)
    run = ensure_run("workshop", "repa", tmp_path / "run", overrides, progress=False)
    assert run_is_complete(run)
    stamp = (run / "summary.json").stat().st_mtime_ns
    ensure_run("workshop", "repa", run, overrides, progress=False)          # finished: left alone
    assert (run / "summary.json").stat().st_mtime_ns == stamp
    (run / "summary.json").unlink()                                         # as if killed before the end
    assert not run_is_complete(run)
    ensure_run("workshop", "repa", run, overrides, progress=False)
    assert run_is_complete(run)
    with pytest.raises(RunError, match=r"different run \(batch_size: 8 there, 16 asked.*another output folder"):
        ensure_run("workshop", "repa", run, {**overrides, "batch_size": 16}, progress=False)
    with pytest.raises(RunError, match="recipe: 'repa' there, 'repa-e' asked"):
        ensure_run("workshop", "repa-e", run, overrides, progress=False)


def test_summary_rows_and_table(ui_runs):
    from repae_lab.app.workbench import summary_rows, table_html

    rows = summary_rows(ui_runs)
    assert [r["recipe"] for r in rows] == ["repa-e", "e2e-diffusion"]
    assert all(r["steps"] == 6 and "loss/diffusion" in r and "eval/fd_workshop" in r for r in rows), rows
    html = table_html(rows)
    assert html.count("<tr>") == 3 and "loss/repa" in html


def test_snapshot_images_pair_probe_images_with_reconstructions(ui_runs):
    from repae_lab.app.workbench import latest_samples_image, snapshot_images

    images = snapshot_images(ui_runs[0])
    assert images["originals"].shape == images["reconstructions"].shape == (4, 16, 16, 3)
    assert images["originals"].dtype == np.uint8
    assert latest_samples_image(ui_runs[0]).name.startswith("step-00000006")
    with pytest.raises(RunError, match=r"no snapshot at step 5; it has \[0, 3, 6\]"):
        snapshot_images(ui_runs[0], step=5)


# ---------------------------------------------------------------------------------------------------------
# widgets

def test_latent_explorer_scrubs_loaded_steps(ui_runs):
    from repae_lab.probes import image_pca_embeddings, load_probes
    from widgets import LatentExplorer

    explorer = LatentExplorer(ui_runs, settings=NO_UMAP)
    assert list(explorer.step.options) == [0, 3, 6] and explorer.step.value == 6
    assert explorer.view.value.startswith("PCA")          # no UMAP computed: the PCA frame is the view
    assert len(explorer.scatter.data) == 2 and len(explorer.maps.data) == 2

    latents = [rundir.load_snapshot(p)[0]["latents"] for _, p in rundir.list_snapshots(ui_runs[1])]
    expected = image_pca_embeddings(latents)
    explorer.show(step=3)
    assert explorer.step.value == 3
    assert np.allclose(explorer.scatter.data[1].x, expected[1][:, 0])
    assert np.allclose(explorer.scatter.data[1].y, expected[1][:, 1])
    accuracy = load_probes(ui_runs[0]).scalars[3]["linear/latents"]
    assert f"{accuracy:.1%}" in explorer.stats.value and "@ 3" in explorer.stats.value

    explorer.step.value = 0                                # the slider itself, as a user drags it
    assert np.allclose(explorer.scatter.data[1].x, expected[0][:, 0])
    assert explorer.scatter.layout.title.text.endswith("step 0")


def test_latent_explorer_says_what_is_wrong(tmp_path):
    from widgets import LatentExplorer

    with pytest.raises(Exception, match="config.json|run directory"):
        LatentExplorer([tmp_path], settings=NO_UMAP)
    with pytest.raises(ValueError, match="at least one run"):
        LatentExplorer([], settings=NO_UMAP)


def test_training_monitor_follows_a_growing_log(ui_runs, tmp_path):
    import shutil

    from widgets import TrainingMonitor

    run = tmp_path / "live"
    shutil.copytree(ui_runs[0], run)
    monitor = TrainingMonitor(run)
    line = next(t for t in monitor.figure.data if t.meta == "loss/diffusion")
    assert len(line.x) == 6 and "step 6 / 6" in monitor.status.value
    rundir.append_jsonl(run / "metrics.jsonl", {"step": 7, "loss/diffusion": 0.5})
    monitor.refresh()
    line = next(t for t in monitor.figure.data if t.meta == "loss/diffusion")
    assert list(line.x)[-1] == 7 and list(line.y)[-1] == 0.5
    rundir.append_jsonl(run / "metrics.jsonl", {"step": 8, "loss/l1": 0.1, "loss/diffusion": 0.4})
    monitor.refresh()                                      # a metric appears: the panels are rebuilt
    assert any(t.meta == "loss/l1" and list(t.x) == [1, 2, 3, 4, 5, 6, 8] for t in monitor.figure.data)
    with pytest.raises(ValueError, match="not a run directory"):
        TrainingMonitor(tmp_path / "nothing")


def test_latent_explorer_shows_runs_that_lack_a_view(ui_runs, monkeypatch):
    """One run with an AlignedUMAP and one without: the view is offered, and the run without it is empty."""
    from repae_lab.probes import load_probes
    from widgets import explorer as ex

    original = ex.RunData.__init__

    def with_aligned_for_the_first_run(self, run, **kwargs):
        original(self, run, **kwargs)
        if run == ui_runs[0]:
            n = len(next(iter(self.embeddings.values()))["labels"])
            self.aligned = {s: np.full((n, 2), float(s)) for s in self.steps}

    monkeypatch.setattr(ex.RunData, "__init__", with_aligned_for_the_first_run)
    explorer = ex.LatentExplorer(ui_runs, settings=NO_UMAP)
    assert explorer.view.value.startswith("AlignedUMAP")
    n = len(load_probes(ui_runs[1]).embeddings(6)["labels"])
    assert list(explorer.scatter.data[0].x) == [6.0] * n
    assert len(explorer.scatter.data[1].x) == 0
    explorer.show(view="PCA of the latents (one frame for all steps)")
    assert len(explorer.scatter.data[1].x) == n
