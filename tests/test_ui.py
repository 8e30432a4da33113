"""The UI layer over run directories: figure builders, the notebook helpers (workbench), the widgets."""
from __future__ import annotations

import numpy as np
import pytest

from repae_lab import rundir
from repae_lab.config import resolve_config
from repae_lab.probes import ProbeSettings
from repae_lab.jobs.launch import train
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
    from repae_lab.views.figures import metric_series, training_curves

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
    from repae_lab.views.figures import metric_series

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
    from repae_lab.jobs.runs import ensure_run, run_is_complete

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
    from repae_lab.views.run_summary import summary_rows, table_html

    rows = summary_rows(ui_runs)
    assert [r["recipe"] for r in rows] == ["repa-e", "e2e-diffusion"]
    assert all(r["steps"] == 6 and "loss/diffusion" in r and "eval/fd_workshop" in r for r in rows), rows
    html = table_html(rows)
    assert html.count("<tr>") == 3 and "loss/repa" in html


def test_snapshot_images_pair_probe_images_with_reconstructions(ui_runs):
    from repae_lab.views.run_summary import latest_samples_image, snapshot_images

    images = snapshot_images(ui_runs[0])
    assert images["originals"].shape == images["reconstructions"].shape == (4, 16, 16, 3)
    assert images["originals"].dtype == np.uint8
    assert latest_samples_image(ui_runs[0]).name.startswith("step-00000006")
    with pytest.raises(RunError, match=r"no snapshot at step 5; it has \[0, 3, 6\]"):
        snapshot_images(ui_runs[0], step=5)


# widgets: tests/test_widgets.py
