"""The widgets (widgets/) and the library functions behind them (repae_lab/views/dashboard_data, explorer_data,
playground, gallery, html_export), driven from Python on tiny runs: every control changes what the figures show,
the dashboard follows a run from its own callback and by polling, and each static export is a plain figure or an
offline page. tests/test_browser.py drives the same widgets in JupyterLab."""
from __future__ import annotations

import asyncio
import json
import math
import shutil
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import pytest

from repae_lab import rundir
from repae_lab.jobs.launch import train
from repae_lab.config import resolve_config
from repae_lab.probes import ProbeSettings

NO_UMAP = ProbeSettings(umap=False, aligned_umap=False)


def _overrides(encoder_cache, **extra):
    from conftest import TINY
    return {**TINY, "cache_dir": encoder_cache, "steps": 6, "snapshot_every": 3, "checkpoint_every": 3,
            "eval_every": 3, "eval_n": 16, **extra}


@pytest.fixture(scope="module")
def runs(tmp_path_factory, encoder_cache):
    """Two finished tiny runs (repa-e, e2e-diffusion): snapshots, checkpoints and evaluations at 0/3/6, probed."""
    from repae_lab.probes import probe_run

    root = tmp_path_factory.mktemp("widgets")
    out = []
    for recipe in ("repa-e", "e2e-diffusion"):
        run = root / recipe
        train(resolve_config("workshop", recipe=recipe, overrides=_overrides(encoder_cache)), run, progress=False)
        probe_run(run, NO_UMAP)
        out.append(run)
    return out


def _copy(run: Path, to: Path, *, keep_steps: int | None = None) -> Path:
    """A copy of a run directory; keep_steps: as if it were still training (log cut there, no summary)."""
    shutil.copytree(run, to)
    if keep_steps is not None:
        records = [r for r in rundir.read_jsonl(to / "metrics.jsonl") if r.get("step", 0) <= keep_steps]
        (to / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
        (to / "summary.json").unlink()
    return to


def _line(fig, key):
    return next(t for t in fig.data if t.meta == key)


def _assert_offline_page(path: Path):
    text = path.read_text(encoding="utf-8")
    assert path.stat().st_size > 1_000_000                    # plotly.js is in the page ...
    assert "<script src=" not in text and "cdn.plot.ly/plotly" not in text   # ... and nothing is fetched


# ---------------------------------------------------------------------------------------------------------
# library: data behind the dashboard

def test_downsample_caps_points_and_keeps_spikes_and_the_last_point():
    from repae_lab.views.dashboard_data import downsample

    steps = np.arange(10_000)
    values = np.sin(steps / 300.0)
    values[4321] = 50.0                                       # a spike
    values[7000] = math.nan                                   # a NaN gap
    xs, ys = downsample(steps, values, cap=200)
    assert len(xs) <= 200 and xs[-1] == 9999 and np.all(np.diff(xs) > 0)
    assert 4321 in xs and np.nanmax(ys) == 50.0 and np.isnan(ys).any()
    short_x, short_y = downsample(steps[:50], values[:50], cap=200)
    assert list(short_x) == list(range(50))


def test_metrics_tail_reads_only_new_complete_lines_and_notices_a_rewrite(tmp_path):
    from repae_lab.views.dashboard_data import MetricsTail

    path = tmp_path / "metrics.jsonl"
    tail = MetricsTail(path)
    assert tail.read() == ([], False)                         # no file yet
    rundir.append_jsonl(path, {"step": 1, "loss/diffusion": 1.0})
    with open(path, "a") as f:
        f.write('{"step": 2, "loss/dif')                      # still being written
    assert tail.read() == ([{"step": 1, "loss/diffusion": 1.0}], False)
    with open(path, "a") as f:
        f.write('fusion": 0.5}\n')
    assert tail.read() == ([{"step": 2, "loss/diffusion": 0.5}], False)
    rundir.atomic_write_text(path, json.dumps({"step": 1, "loss/diffusion": 2.0}) + "\n")   # a resume rewrites it
    assert tail.read() == ([{"step": 1, "loss/diffusion": 2.0}], True)


def test_progress_gives_speed_and_time_left_from_the_log(tmp_path):
    from repae_lab.views.dashboard_data import DashboardState, status_line

    state = DashboardState(tmp_path / "run")
    assert state.progress().state == "waiting" and "waiting for config.json" in status_line(state)
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.json").write_text(json.dumps({"steps": 100, "recipe": "repa-e"}))
    for step in range(1, 11):                                 # 2 steps per second
        rundir.append_jsonl(tmp_path / "run" / "metrics.jsonl", {"step": step, "time": 10 + step / 2,
                                                                 "loss/diffusion": 1.0})
    rundir.append_jsonl(tmp_path / "run" / "metrics.jsonl", {"step": 10, "kind": "eval", "eval/fd_workshop": 40.0})
    assert state.poll()
    p = state.progress()
    assert p.state == "training" and p.step == 10 and p.total == 100
    assert p.steps_per_s == pytest.approx(2.0) and p.eta_s == pytest.approx(45.0)
    assert "2.00 steps/s" in status_line(state) and "45 s left" in status_line(state)
    assert state.series["eval/fd_workshop"] == ([10], [40.0])
    assert not state.poll()                                   # nothing new


# ---------------------------------------------------------------------------------------------------------
# TrainingDashboard

def test_dashboard_waits_for_a_run_then_polls_new_metrics_and_alarms(runs, tmp_path):
    from widgets import TrainingDashboard, TrainingMonitor

    assert TrainingMonitor is TrainingDashboard
    live = tmp_path / "live"
    dash = TrainingDashboard(live)                            # nothing there yet: it waits, it does not raise
    assert "waiting for config.json" in dash.status.value and not dash.polling
    _copy(runs[0], live, keep_steps=3)
    assert dash.poll()
    assert "step 3 / 6" in dash.status.value and "steps/s" in dash.status.value and "left" in dash.status.value
    assert list(_line(dash.fig, "loss/diffusion").x) == [1, 2, 3]
    assert "no alarms" in dash.alarm_box.value
    rundir.append_jsonl(live / "metrics.jsonl", {"step": 4, "time": 99.0, "loss/diffusion": 0.5})
    rundir.append_jsonl(live / "metrics.jsonl", {"step": 4, "event": "alarm", "alarm": "grad_collapse",
                                                 "message": "grad_norm/sit below 1e-08 for 3 steps", "policy": "warn"})
    assert dash.poll()
    line = _line(dash.fig, "loss/diffusion")
    assert list(line.x)[-1] == 4 and list(line.y)[-1] == 0.5
    assert "grad_collapse" in dash.alarm_box.value and "warn" in dash.alarm_box.value
    assert list(_line(dash.fig, "alarms").x) == [4]
    assert not dash.poll()
    rundir.append_jsonl(live / "metrics.jsonl", {"step": 5, "time": 100.0, "loss/newthing": 0.1})
    dash.poll()                                               # a new metric: the panels are rebuilt in place
    assert list(_line(dash.fig, "loss/newthing").x) == [5]


def test_dashboard_polls_from_a_timer_on_the_event_loop(runs, tmp_path):
    from widgets import TrainingDashboard

    live = _copy(runs[0], tmp_path / "live", keep_steps=3)
    loop = asyncio.new_event_loop()
    try:
        async def opened_in_a_kernel():
            return TrainingDashboard(live, poll_every=0.05)   # a running loop (as in a kernel): it polls by itself

        dash = loop.run_until_complete(opened_in_a_kernel())
        assert dash.polling and isinstance(dash._timer, asyncio.TimerHandle) and dash._loop is loop
        rundir.append_jsonl(live / "metrics.jsonl", {"step": 4, "time": 99.0, "loss/diffusion": 0.25})
        loop.run_until_complete(asyncio.sleep(0.3))           # nobody calls poll(): the timer does
        assert list(_line(dash.fig, "loss/diffusion").x)[-1] == 4
        shutil.copy(runs[0] / "summary.json", live / "summary.json")
        loop.run_until_complete(asyncio.sleep(0.3))
        assert "finished" in dash.status.value and not dash.polling   # a finished run is no longer polled
        dash.start(0.05, loop=loop)
        dash.stop()
        assert not dash.polling
    finally:
        loop.close()
    with pytest.raises(RuntimeError, match="no running event loop"):
        dash.start(1.0)


def test_dashboard_redraws_are_throttled_and_points_capped(runs, tmp_path):
    from widgets import TrainingDashboard

    live = _copy(runs[0], tmp_path / "live", keep_steps=3)
    for step in range(4, 3000):
        rundir.append_jsonl(live / "metrics.jsonl", {"step": step, "time": float(step), "loss/diffusion": 1.0 / step})
    dash = TrainingDashboard(live, max_points=100, max_redraws_per_s=2)
    assert len(_line(dash.fig, "loss/diffusion").x) <= 100
    before = dash.redraws
    for step in range(50):                                     # the loop's callback, far faster than 2 a second
        dash.on_metrics(step, {})
    assert dash.redraws - before <= 1


def test_dashboard_trains_in_the_kernel_shows_an_injected_nan_and_stops(tmp_path, encoder_cache, monkeypatch):
    from repae_lab.training import loop as train_mod
    from widgets import StopTraining, TrainingDashboard

    real = train_mod.train_step

    def nan_at_step_3(state, *args):
        metrics = real(state, *args)
        if state.step + 1 == 3:
            metrics["loss/diffusion"] = math.nan
        return metrics

    monkeypatch.setattr(train_mod, "train_step", nan_at_step_3)
    run = tmp_path / "run"
    dash = TrainingDashboard(run, max_redraws_per_s=1000)
    seen = []
    draw = dash.on_metrics

    def watch(step, means):                                    # what the training loop calls, on this thread
        draw(step, means)
        seen.append((step, len(_line(dash.fig, "loss/repa").x), dash.alarm_box.value))

    dash.on_metrics = watch
    cfg = resolve_config("workshop", recipe="repa-e", overrides=_overrides(encoder_cache, eval_every=0, snapshot_every=0))
    summary = dash.train(cfg)
    assert summary["steps"] == 6
    assert [s for s, _, _ in seen] == [1, 2, 3, 4, 5, 6]
    assert [n for _, n, _ in seen] == [1, 2, 3, 4, 5, 6]      # each interval was drawn as it came
    assert "no alarms" in seen[1][2] and "nonfinite" in seen[2][2]
    assert "nonfinite" in dash.alarm_box.value and "loss/diffusion" in dash.alarm_box.value
    assert list(_line(dash.fig, "alarms").x) == [3] and "finished" in dash.status.value

    # Stop, pressed while the run trains: the next callback stops it, the last checkpoint stays, resume goes on
    monkeypatch.setattr(train_mod, "train_step", real)
    stopper = TrainingDashboard(tmp_path / "stopped")
    press = stopper.on_metrics

    def press_at_3(step, means):
        if step == 3:
            stopper.stop_button.click()
        press(step, means)

    stopper.on_metrics = press_at_3
    cfg = resolve_config("workshop", recipe="repa", overrides=_overrides(encoder_cache, steps=12, checkpoint_every=2,
                                                                           eval_every=0, snapshot_every=0))
    result = stopper.train(cfg)
    assert result["stopped"] is True and result["step"] == 3
    assert Path(result["checkpoint"]).name == "step-00000002" and not (tmp_path / "stopped" / "summary.json").exists()
    assert "stopped from the dashboard at step 3" in stopper.status.value and stopper.stop_button.disabled
    assert issubclass(StopTraining, Exception)
    stopper.on_metrics = press
    assert stopper.train(resume=True)["steps"] == 12


@pytest.mark.slow
def test_stop_button_works_while_a_kernel_trains(tmp_path, encoder_cache, runs):
    """A real kernel trains in a cell; the frontend's click (a comm message) reaches the Stop button mid-run,
    and a cell queued behind the training still runs afterwards."""
    import queue

    from jupyter_client.manager import start_new_kernel

    out = tmp_path / "run"
    overrides = _overrides(encoder_cache, steps=400, checkpoint_every=4, eval_every=0, snapshot_every=0)
    km, kc = start_new_kernel(kernel_name="python3")
    try:
        def execute(code, timeout=120):
            msg_id = kc.execute(code)
            text, deadline = [], __import__("time").time() + timeout
            while __import__("time").time() < deadline:
                try:
                    msg = kc.get_iopub_msg(timeout=1)
                except queue.Empty:
                    continue
                if msg["parent_header"].get("msg_id") != msg_id:
                    continue
                if msg["msg_type"] == "stream":
                    text.append(msg["content"]["text"])
                elif msg["msg_type"] == "error":
                    text.append("ERROR " + msg["content"]["evalue"])
                elif msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                    return "".join(text)
            raise TimeoutError(code)

        comm_id = execute(f"from widgets import TrainingDashboard\nfrom repae_lab.config import resolve_config\n"
                          f"d = TrainingDashboard({str(out)!r})\nprint(d.stop_button.comm.comm_id)").strip()
        assert len(comm_id) == 32, comm_id
        training = kc.execute(f"r = d.train(resolve_config('workshop', recipe='repa', overrides={overrides!r}))\n"
                              f"print('RESULT', r)")
        import time
        deadline = time.time() + 120
        while time.time() < deadline and not any(r.get("step", 0) >= 6 for r in rundir.read_jsonl(out / "metrics.jsonl")):
            time.sleep(0.2)
        later = kc.execute("print('QUEUED', d.state.last_step)")          # a cell waiting behind the training
        kc.shell_channel.send(kc.session.msg("comm_msg", {"comm_id": comm_id,
                                                          "data": {"method": "custom", "content": {"event": "click"}}}))
        text = []
        deadline = time.time() + 120
        pending = {training, later}
        while pending and time.time() < deadline:
            try:
                msg = kc.get_iopub_msg(timeout=1)
            except queue.Empty:
                continue
            parent = msg["parent_header"].get("msg_id")
            if parent in pending and msg["msg_type"] == "stream":
                text.append(msg["content"]["text"])
            if parent in pending and msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                pending.discard(parent)
        text = "".join(text)
        assert "RESULT {'stopped': True" in text, text
        logged = [r["step"] for r in rundir.read_jsonl(out / "metrics.jsonl") if "event" not in r]
        assert 6 <= max(logged) < 100                          # stopped early, not at the end
        assert f"QUEUED {max(logged)}" in text                 # the queued cell ran after it, with the final state
        assert rundir.latest_good_checkpoint(out) is not None and not (out / "summary.json").exists()
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def test_dashboard_static_export(runs, tmp_path):
    from widgets import TrainingDashboard

    dash = TrainingDashboard(runs[1])
    fig = dash.figure()
    assert type(fig) is go.Figure and {"loss/diffusion", "eval/fd_workshop", "latent/spatial_var"} <= {t.meta for t in fig.data}
    _assert_offline_page(dash.to_html(tmp_path / "dashboard.html"))
    assert "finished" in (tmp_path / "dashboard.html").read_text(encoding="utf-8")
    with pytest.raises(ValueError, match="one run"):
        TrainingDashboard(runs)


# ---------------------------------------------------------------------------------------------------------
# LatentExplorer

def _run_points(explorer, run_index):
    """(x, y) of one run's points, in probe-image order, reassembled from its per-class traces."""
    from repae_lab.views.explorer_data import scatter_traces

    run = explorer.runs[run_index]
    n = len(run.labels)
    x, y = np.full(n, np.nan), np.full(n, np.nan)
    for trace, (i, c) in zip(explorer.scatter.data, scatter_traces(explorer.runs)):
        if i == run_index and len(trace.x):           # a run without the view has empty traces
            index = run.class_index(c)
            x[index], y[index] = trace.x, trace.y
    return x, y


def test_latent_explorer_scrubs_plays_and_moves_every_view(runs):
    from repae_lab.probes import image_pca_embeddings, load_probes
    from widgets import LatentExplorer

    explorer = LatentExplorer(runs, settings=NO_UMAP, compute_missing=False)
    assert list(explorer.step.options) == [0, 3, 6] and explorer.step.value == 6
    assert explorer.view.value.startswith("PCA")
    latents = [rundir.load_snapshot(p)[0]["latents"] for _, p in rundir.list_snapshots(runs[1])]
    expected = image_pca_embeddings(latents)

    explorer.step.value = 3                                   # the slider, as a user drags it
    x, y = _run_points(explorer, 1)
    assert np.allclose(x, expected[1][:, 0]) and np.allclose(y, expected[1][:, 1])
    assert explorer.scatter.layout.title.text.endswith("step 3")
    assert explorer.maps.layout.title.text.endswith("step 3")
    assert explorer.curves.layout.title.text.endswith("step 3")
    assert all(s.x0 == s.x1 == 3 for s in explorer.curves.layout.shapes) and len(explorer.curves.layout.shapes) == 3
    accuracy = load_probes(runs[0]).scalars[3]["linear/latents"]
    assert f"{accuracy:.1%}" in explorer.stats.value and "@ 3" in explorer.stats.value

    explorer.play.value = 0                                   # the play button's counter drives the slider
    assert explorer.step.value == 0 and np.allclose(_run_points(explorer, 1)[0], expected[0][:, 0])
    explorer.play.value = 2
    assert explorer.step.value == 6
    assert explorer.play.max == 2

    curve = next(t for t in explorer.curves.data if t.meta == "cknna/sit_t50")
    assert list(curve.x) == [0, 3, 6]


def test_latent_explorer_has_a_class_legend_and_shows_the_hovered_image(runs):
    from repae_lab.views.explorer_data import scatter_traces
    from widgets import LatentExplorer

    explorer = LatentExplorer(runs, settings=NO_UMAP, compute_missing=False)
    run = explorer.runs[0]
    classes = run.classes
    legend = [t for t in explorer.scatter.data if t.showlegend]
    assert [t.name for t in legend] == [run.class_names[c] for c in classes] == [str(c) for c in classes]
    assert {t.legendgroup for t in explorer.scatter.data} == {f"class-{c}" for c in classes}   # one toggle per class

    k = next(j for j, (i, c) in enumerate(scatter_traces(explorer.runs)) if i == 1 and c == 3)
    explorer.scatter._js2py_pointsCallback = {          # what the browser sends when the pointer is over a point
        "event_type": "plotly_hover",
        "points": {"xs": [0.0], "ys": [0.0], "point_indexes": [1], "trace_indexes": [k]}}
    image = int(explorer.runs[1].class_index(3)[1])
    assert f"image {image}</b>, class <b>3" in explorer.hover_label.value
    png = explorer.hover_image.value
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    from PIL import Image
    import io
    shown = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))[::6, ::6]   # enlarged x6 from 16 px
    assert np.array_equal(shown, explorer.runs[1].images[image])


def test_latent_explorer_adds_and_removes_runs_without_rebuilding(runs, tmp_path):
    from widgets import LatentExplorer

    explorer = LatentExplorer(runs[:1], settings=NO_UMAP, compute_missing=False)
    scatter, widget = explorer.scatter, explorer.widget
    n_one = len(explorer.scatter.data)
    explorer.step.value = 3
    explorer.add_run(runs[1])
    assert explorer.scatter is scatter and explorer.widget is widget and len(explorer.scatter.data) == 2 * n_one
    assert explorer.step.value == 3 and len(explorer.maps.data) == 2
    assert len(explorer.curves.data) == 6 and len(explorer.remove_choice.options) == 2
    explorer.remove_choice.value = str(runs[0])
    explorer.remove_button.click()
    assert [r.run for r in explorer.runs] == [runs[1]] and len(explorer.scatter.data) == n_one
    assert explorer.scatter.layout.title.text.endswith("step 3")

    unprobed = _copy(runs[0], tmp_path / "unprobed")
    shutil.rmtree(unprobed / "probes")
    explorer.run_path.value = str(unprobed)
    explorer.add_button.click()                              # a callback never computes probes: it says so
    assert "no cached probes" in explorer.last_error and "repae-lab probe" in explorer.last_error
    assert any("no cached probes" in o.get("text", "") for o in explorer.output.outputs)
    assert not (unprobed / "probes").exists() and len(explorer.runs) == 1
    explorer.remove_button.click()
    assert "at least one run" in explorer.last_error


def test_latent_explorer_static_export(runs, tmp_path):
    from widgets import LatentExplorer

    explorer = LatentExplorer(runs, settings=NO_UMAP, compute_missing=False)
    explorer.step.value = 3
    fig = explorer.figure()
    assert type(fig) is go.Figure
    assert len(fig.data) == len(explorer.scatter.data) + len(explorer.maps.data) + len(explorer.curves.data)
    assert {a.text for a in fig.layout.annotations} >= {"<b>probe curves, cursor at step 3</b>"}
    animation = explorer.animation()
    assert [f.name for f in animation.frames] == ["0", "3", "6"] and animation.layout.sliders[0].active == 2
    _assert_offline_page(explorer.to_html(tmp_path / "explorer.html"))


def test_latent_explorer_says_what_is_wrong(tmp_path):
    from widgets import LatentExplorer

    with pytest.raises(Exception, match="config.json|run directory"):
        LatentExplorer([tmp_path], settings=NO_UMAP)
    with pytest.raises(ValueError, match="at least one run"):
        LatentExplorer([], settings=NO_UMAP)


def test_latent_explorer_shows_runs_that_lack_a_view(runs, monkeypatch):
    """One run with an AlignedUMAP and one without: the view is offered, and the run without it is empty."""
    from widgets import explorer as ex

    original = ex.RunData.__init__

    def with_aligned_for_the_first_run(self, run, **kwargs):
        original(self, run, **kwargs)
        if run == runs[0]:
            self.aligned = {s: np.full((len(self.labels), 2), float(s)) for s in self.steps}

    monkeypatch.setattr(ex.RunData, "__init__", with_aligned_for_the_first_run)
    explorer = ex.LatentExplorer(runs, settings=NO_UMAP, compute_missing=False)
    assert explorer.view.value.startswith("AlignedUMAP")
    x0, _ = _run_points(explorer, 0)
    x1, _ = _run_points(explorer, 1)
    assert np.all(x0 == 6.0) and np.isnan(x1).all()
    explorer.show(view="PCA of the latents (one frame for all steps)")
    assert not np.isnan(_run_points(explorer, 1)[0]).any()


@pytest.fixture(scope="module")
def vae_comparison(tmp_path_factory):
    """A compare-vaes folder: a 4-channel and an 8-channel VAE (random weights) on 30 labelled digits."""
    from repae_lab.probes.vae_comparison import compare_vaes

    out = tmp_path_factory.mktemp("compare") / "cmp"
    compare_vaes(["workshop-16", "workshop-16-c8"], "digits", out, n=30, rfd="none", dataset_resolution=16)
    return out


def test_latent_explorer_shows_a_vae_comparison_side_by_side_and_beside_runs(vae_comparison, runs):
    import io

    from PIL import Image
    from repae_lab.probes import image_pca_embeddings
    from safetensors.torch import load_file
    from widgets import LatentExplorer

    explorer = LatentExplorer(vae_comparison)
    assert [r.label for r in explorer.runs] == ["workshop-16 (4x8x8)", "workshop-16-c8 (8x8x8)"]
    assert list(explorer.step.options) == [0] and explorer.view.value.startswith("PCA")
    arrays = load_file(str(vae_comparison / "vae_arrays.safetensors"))
    x, y = _run_points(explorer, 1)                                   # the 8-channel VAE's own PCA frame
    expected = image_pca_embeddings([arrays["latents.1"]])[0]
    assert np.allclose(x, expected[:, 0]) and np.allclose(y, expected[:, 1])
    rows = json.loads((vae_comparison / "vae_comparison.json").read_text())["rows"]
    assert f"{rows[1]['linear_probe']:.1%}" in explorer.stats.value
    assert f"{rows[0]['rpsnr']:.2f} dB" in explorer.stats.value and "CKNNA" not in explorer.stats.value
    assert len(explorer.maps.data) == 2                               # one PCA-RGB mosaic per VAE
    assert [t.name for t in explorer.scatter.data if t.showlegend] == [str(c) for c in range(10)]

    explorer.show_image(1, 4)                                         # hover: the image beside its reconstruction
    shown = np.asarray(Image.open(io.BytesIO(explorer.hover_image.value)).convert("RGB"))
    scale = shown.shape[0] // 16
    assert shown.shape == (16 * scale, 32 * scale, 3) and "reconstruction" in explorer.hover_label.value
    assert np.array_equal(shown[::scale, ::scale][:, 16:], arrays["recons.1"][4].numpy())

    explorer.add_run(runs[0])                                         # a trained run beside the VAEs
    assert len(explorer.runs) == 3 and list(explorer.step.options) == [0, 3, 6]
    with pytest.raises(ValueError, match="shown already"):
        explorer.add_run(vae_comparison)
    (vae_comparison / "vae_arrays.safetensors").rename(vae_comparison / "moved")
    try:
        with pytest.raises(rundir.RunError, match="compare-vaes .* again"):
            LatentExplorer(vae_comparison)
    finally:
        (vae_comparison / "moved").rename(vae_comparison / "vae_arrays.safetensors")


# ---------------------------------------------------------------------------------------------------------
# SamplerPlayground

def test_draw_samples_reports_every_step_and_keeps_a_trajectory(runs):
    from repae_lab.views.playground import DrawSettings, ModelCache, draw_samples, trajectory_indices

    loaded = ModelCache().get(runs[0])
    calls = []
    draw = draw_samples(loaded, DrawSettings(n=4, steps=10, sampler="euler", trajectory_points=4),
                        progress=lambda done, total: calls.append((done, total)))
    assert calls == [(i, 10) for i in range(1, 11)]
    assert trajectory_indices(10, 4) == [0, 3, 6, 9]
    assert draw.times[0] == 1.0 and draw.times[-1] == 0.0 and len(draw.times) == 5
    assert draw.noisy.shape == draw.denoised.shape == (5, 16, 16, 3)
    assert np.array_equal(draw.noisy[-1], draw.images[0])     # the trajectory ends at the sample itself
    assert draw.images.shape == (4, 16, 16, 3) and draw.images.dtype == np.uint8


def test_sampler_playground_controls_change_the_draw(runs, tmp_path):
    from widgets import SamplerPlayground

    play = SamplerPlayground(runs)
    assert [label for label, _ in play.checkpoint.options] == ["step 6", "step 3"]
    assert play.label.options[0][1] == -1 and len(play.label.options) == 11
    play.draw()
    first = np.array(play.grid.data[0].z)
    assert "16 samples (class-balanced)" in play.grid.layout.title.text and "@ step 6" in play.grid.layout.title.text
    assert play.progress.value == play.progress.max == 25 and "drawn 16 images" in play.progress_label.value
    assert len(play.trajectory.data) == 2 * len(play.last_draw.times)

    play.n.value, play.steps.value = 4, 8                          # smaller draws from here on
    play.draw()
    first = np.array(play.grid.data[0].z)
    play.draw()
    assert np.array_equal(first, np.array(play.grid.data[0].z))   # the same settings draw the same images
    play.seed.value = 1
    play.draw()
    assert not np.array_equal(first, np.array(play.grid.data[0].z))
    play.seed.value = 0
    play.model.value = False                                      # raw weights instead of the EMA
    play.draw()
    assert "raw SiT" in play.grid.layout.title.text and not np.array_equal(first, np.array(play.grid.data[0].z))
    play.model.value = True
    play.checkpoint.value = play.checkpoint.options[1][1]
    play.draw()
    assert "@ step 3" in play.grid.layout.title.text
    play.label.value = 7
    play.cfg_scale.value, play.interval.value = 4.0, (0.0, 0.7)
    draw = play.draw()
    assert set(draw.labels.tolist()) == {7} and draw.settings.cfg_scale == 4.0 and draw.settings.interval == (0.0, 0.7)
    assert "class 7" in play.grid.layout.title.text and "CFG 4" in play.grid.layout.title.text
    play.sampler.value, play.steps.value = "heun", 4
    draw = play.draw()
    assert draw.times == [1.0, 0.75, 0.5, 0.25, 0.0] and "heun 4 steps" in play.grid.layout.title.text
    play.run.value = str(runs[1])                                 # another run: its checkpoints
    assert play.checkpoint.value.startswith(str(runs[1]))
    play.draw()
    assert "e2e-diffusion" in play.grid.layout.title.text

    fig = play.figure()
    assert type(fig) is go.Figure and len(fig.data) == 1 + len(play.trajectory.data)
    _assert_offline_page(play.to_html(tmp_path / "playground.html"))


def test_sampler_playground_errors_show_in_its_output(runs, tmp_path):
    from widgets import SamplerPlayground

    bare = _copy(runs[0], tmp_path / "bare")
    shutil.rmtree(bare / "checkpoints")
    play = SamplerPlayground([bare])
    play.draw_button.click()
    assert "no checkpoint yet" in play.last_error
    assert any("no checkpoint yet" in o.get("text", "") for o in play.output.outputs)
    assert play.draws == 0


# ---------------------------------------------------------------------------------------------------------
# ReconstructionGallery

def test_reconstruction_gallery_shows_per_image_errors_across_steps_and_runs(runs, tmp_path):
    from repae_lab.views.gallery import image_errors
    from repae_lab.views.run_summary import snapshot_images
    from repae_lab.data.images import to_uint8_images
    from widgets import ReconstructionGallery

    gallery = ReconstructionGallery(runs)
    run = gallery.runs[1]
    assert run.steps == [0, 3, 6] and run.n_images == 4
    recons = rundir.load_snapshot(dict(rundir.list_snapshots(runs[1]))[3], keys=("recons",))[0]["recons"].float().numpy()
    psnr = image_errors(run.originals, recons)["psnr"]
    mse = ((recons - run.originals) ** 2).reshape(4, -1).mean(1)
    assert np.allclose(psnr, 10 * np.log10(4 / mse)) and np.allclose(run.errors(3), psnr)
    # the originals are the probe images the notebooks show beside their reconstructions
    assert np.array_equal(snapshot_images(runs[1], step=3)["originals"], to_uint8_images(run.originals))

    texts = lambda: [a.text for a in gallery.fig.layout.annotations]
    assert f"{psnr[0]:.1f}" in texts() and texts().count("step 3") == 2   # a row label in each run's panel
    assert list(gallery.fig.data[-1].x) == [0, 3, 6]                       # the error curve, every snapshot
    gallery.steps.value = (6,)
    assert "step 3" not in texts() and texts().count("step 6") == 2
    gallery.metric.value = "mse"
    errors6 = run.errors(6, "mse")
    assert f"{errors6[0]:.3f}" in texts()
    assert np.allclose(gallery.fig.data[-1].y, [run.errors(s, "mse").mean() for s in (0, 3, 6)])
    gallery.images.value = 2
    n_numbers = sum(t.replace(".", "").isdigit() for t in texts())
    assert n_numbers == 2 * 2                                             # 2 images x 1 step x 2 runs
    gallery.error_maps.value = True
    assert "|error| 6" in texts()
    gallery.steps.value = ()
    assert "at least one step" in gallery.last_error

    gallery.steps.value = (0, 6)
    fig = gallery.figure()
    assert type(fig) is go.Figure
    _assert_offline_page(gallery.to_html(tmp_path / "gallery.html"))
    assert "mean MSE" in (tmp_path / "gallery.html").read_text(encoding="utf-8")


# ---------------------------------------------------------------------------------------------------------
# static export helpers

def test_stack_figures_keeps_every_trace_on_its_own_axes():
    from plotly.subplots import make_subplots

    from repae_lab.views.html_export import stack_figures, write_html

    a = make_subplots(rows=1, cols=2, subplot_titles=["a1", "a2"])
    a.add_trace(go.Scatter(x=[1, 2], y=[3, 4]), row=1, col=1)
    a.add_trace(go.Scatter(x=[5], y=[6]), row=1, col=2)
    a.update_layout(height=300, title="first")
    b = go.Figure(go.Scatter(x=[7], y=[8]), layout=dict(height=200, title="second"))
    fig = stack_figures([a, b], title="both")
    assert [(t.xaxis, t.yaxis) for t in fig.data] == [("x", "y"), ("x2", "y2"), ("x3", "y3")]
    assert fig.layout.yaxis.domain[0] > fig.layout.yaxis3.domain[1]          # a above b
    assert fig.layout.yaxis.domain == fig.layout.yaxis2.domain
    assert {"a1", "a2", "<b>first</b>", "<b>second</b>"} <= {x.text for x in fig.layout.annotations}
    with pytest.raises(ValueError, match="html"):
        write_html("page.png", [fig])
