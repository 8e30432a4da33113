"""The notebooks as a lab schedules them: parameters cells, their checks, papermill runs of every notebook,
`repae-lab run-notebook` and `repae-lab sweep`, offline HTML exports (in headless chromium), and the library
pieces they stand on (cadence, progress lines, torchrun command lines)."""
from __future__ import annotations

import argparse
import ast
import json
import os
import re
import shutil
from pathlib import Path

import nbformat
import pytest

from conftest import ROOT, TINY

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
PLOTLY = "application/vnd.plotly.v1+json"
WIDGET = "application/vnd.jupyter.widget-view+json"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _cli(argv: list[str]) -> int:
    from repae_lab.commands.notebooks import add_subcommands

    parser = argparse.ArgumentParser(prog="repae-lab")
    add_subcommands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def _parameters_cell(nb):
    return next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))


def _outputs(nb) -> list:
    return [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]


def _stdout(nb) -> str:
    return "".join(o.text for o in _outputs(nb) if o.output_type == "stream" and o.name == "stdout")


# ---------------------------------------------------------------------------------------------------------
# parameters cells and their checks (no kernel)

@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_parameters_cells_hold_documented_literals_checked_by_the_next_cell(path):
    from repae_lab.notebooks.params import notebook_parameters

    nb = nbformat.read(str(path), as_version=4)
    assert all(not c.outputs and c.execution_count is None for c in nb.cells if c.cell_type == "code"), \
        "commit notebooks with outputs cleared"
    cell = _parameters_cell(nb)
    body = ast.parse(cell.source).body
    names = []
    for node in body:
        assert isinstance(node, ast.AnnAssign), f"{path.name}: one `name: type = literal` per line"
        ast.literal_eval(node.value)                       # literals only: derived values go in a later cell
        names.append(node.target.id)
    declared = notebook_parameters(path)                   # what papermill --help-notebook lists
    assert list(declared) == names
    assert all(info["help"] and info["type"] is not None for info in declared.values()), declared
    check_cell = nb.cells[nb.cells.index(cell) + 1]
    call = next(n for n in ast.walk(ast.parse(check_cell.source)) if isinstance(n, ast.Call)
                and getattr(n.func, "id", "") == "check")
    assert [k.arg for k in call.keywords] == names, "the cell after the parameters checks every one of them"


def test_check_names_the_parameter_and_what_it_accepts(tmp_path):
    from repae_lab.notebooks.params import ParameterError, at_least, check, list_of, one_of, run_dir

    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.json").write_text("{}")
    specs = dict(steps=at_least(1), recipe=one_of("vanilla", "repa", "repa-e"), runs=list_of(run_dir), flag=bool)
    good = {"steps": 40, "recipe": "repa-e", "runs": [str(tmp_path / "run")], "flag": True}
    check(good, **specs)
    cases = [({"steps": "abc"}, r"parameter 'steps' must be an int \(e.g. -p steps 40\), got 'abc' \(a str\)"),
             ({"steps": 0}, "parameter 'steps' must be at least 1, got 0"),
             ({"steps": True}, "parameter 'steps' must be an int"),
             ({"recipe": "repae"}, "parameter 'recipe' must be one of vanilla, repa, repa-e; got 'repae'. "
                                   "Did you mean 'repa-e'"),
             ({"runs": "runs/x"}, r"parameter 'runs' must be a list, each item a run directory; got the string "
                                  r"'runs/x'. Pass a list: papermill -y \"runs: \[runs/x\]\""),
             ({"runs": [str(tmp_path / "nothing")]}, r"parameter 'runs\[0\]': '.*nothing' does not exist"),
             ({"flag": "yes"}, "parameter 'flag' must be True or False")]
    for change, message in cases:
        with pytest.raises(ParameterError, match=message):
            check({**good, **change}, **specs)
    # a misspelt name that papermill injected (it only warns): found in IPython's input history
    history = ["", "steps: int = 40", "# Parameters\nstep = 50\n"]
    with pytest.raises(ParameterError, match=r"no parameter 'step'. Did you mean 'steps'\? Its parameters: steps, "
                                             r"recipe, runs, flag"):
        check({**good, "_ih": history}, **specs)
    check({**good, "_ih": ["", "# Parameters\nsteps = 50\n"]}, **specs)
    # shown by IPython as one line, not a traceback from inside the library
    err = ParameterError("parameter 'steps' must be an int")
    assert err._render_traceback_() == ["ParameterError: parameter 'steps' must be an int"]


def test_run_notebook_refuses_names_and_types_before_any_kernel_starts(tmp_path, capsys):
    nb01, nb02 = ROOT / "notebooks" / "01_train_a_run.ipynb", ROOT / "notebooks" / "02_latent_space.ipynb"
    assert _cli(["run-notebook", str(nb01), "--out", str(tmp_path / "a"), "-p", "step", "50"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("repae-lab: error: notebook '01_train_a_run.ipynb' has no parameter 'step'. Did you mean "
                          "'steps'? Its parameters: preset, recipe, out, steps,")
    assert _cli(["run-notebook", str(nb01), "--out", str(tmp_path / "a"), "-p", "steps", "abc"]) == 2
    assert "parameter 'steps' of notebook '01_train_a_run.ipynb' must be int (default 0), got 'abc'" in \
        capsys.readouterr().err
    assert _cli(["run-notebook", str(nb02), "--out", str(tmp_path / "a"), "-p", "runs", "runs/x"]) == 2
    assert "must be a list (default [\"runs/workshop-repa-e\"]), got the string 'runs/x'; pass -p runs \"[runs/x]\"" \
        in capsys.readouterr().err
    assert _cli(["sweep", str(nb01), "--out", str(tmp_path / "s"), "--grid", "stepz=4,8"]) == 2
    assert "has no parameter 'stepz'. Did you mean 'steps'?" in capsys.readouterr().err
    assert not (tmp_path / "a").exists() and not (tmp_path / "s").exists()
    assert _cli(["run-notebook", str(nb01), "--list-parameters"]) == 0
    assert "processes: int = 1  processes on this machine" in capsys.readouterr().out


def test_command_line_values_are_read_by_the_declared_type():
    from repae_lab.notebooks.params import parse_value
    from repae_lab.notebooks.sweeps import combination_name, split_values

    assert parse_value("40", int) == 40 and parse_value("2024", str) == "2024"
    assert parse_value("[runs/a, runs/b]", list) == ["runs/a", "runs/b"]
    assert parse_value("{steps: 40}", dict) == {"steps": 40} and parse_value("true", bool) is True
    assert split_values("repa,repa-e") == ["repa", "repa-e"]
    assert split_values("[a,b],[c], 'x,y'") == ["[a,b]", "[c]", "'x,y'"]
    assert combination_name({"recipes": ["repa", "repa-e"], "out": "a/b c"}) == "recipes=repa,repa-e_out=a-b-c"


def test_cadence_follows_the_number_of_steps_unless_set():
    from repae_lab.jobs.cadence import with_cadence
    from repae_lab.config import resolve_config

    short = with_cadence("workshop", {}, 40)
    assert short["snapshot_every"] == 4 and short["eval_every"] == 10 and short["log_every"] == 2
    assert len(range(0, 41, short["snapshot_every"])) == 11            # a slider with 11 positions, not 2
    assert with_cadence("workshop", {"snapshot_every": 7}, 40)["snapshot_every"] == 7
    assert with_cadence("workshop", {"eval_every": 0}, 40)["eval_every"] == 0
    assert with_cadence("workshop", {}, 0)["snapshot_every"] == 50      # the preset's 500 steps
    long = with_cadence("imagenet256-sit-xl2-sdvae", {}, 0)            # the paper preset keeps its own cadence
    assert long["snapshot_every"] == 10_000 and long["eval_every"] == 0 and long["log_every"] == 100
    for steps in (1, 6, 13, 40, 77, 100, 300, 2000):
        cfg = resolve_config("workshop", overrides=with_cadence("workshop", {}, steps))
        assert cfg.steps == steps and cfg.snapshot_every <= max(1, steps // 10) and cfg.eval_every >= 1
        assert cfg.checkpoint_every % cfg.log_every == 0
    given = with_cadence("workshop", {"checkpoint_every": 6}, 100)      # the log interval gives way
    assert resolve_config("workshop", overrides=given).log_every == 3


# ---------------------------------------------------------------------------------------------------------
# progress lines and torchrun command lines (no kernel)

def test_progress_prints_a_line_every_few_steps_and_every_evaluation(tmp_path):
    from repae_lab import rundir
    from repae_lab.notebooks.kernel_training import ProgressPrinter

    lines: list[str] = []
    printer = ProgressPrinter(tmp_path, 100, out=lines.append)
    printer.poll()                                                     # no log yet: nothing, no error
    rundir.append_jsonl(tmp_path / "metrics.jsonl", {"step": 0, "kind": "eval", "eval/fd_workshop": 50.0,
                                                      "eval/accuracy_workshop": 0.25, "protocol": {}})
    for step in range(1, 61):
        rundir.append_jsonl(tmp_path / "metrics.jsonl", {"step": step, "time": step * 0.1, "loss/diffusion": 1.0})
    rundir.append_jsonl(tmp_path / "metrics.jsonl", {"step": 60, "event": "alarm", "alarm": "grad", "message": "m"})
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write('{"step": 61, "loss/diff')                           # a line still being written
    printer.poll()
    assert lines[0] == "step   0/100  evaluation: accuracy_workshop 25.0%  fd_workshop 50"
    steps = [int(line.split()[1].split("/")[0]) for line in lines[1:-1]]
    assert steps == [1, 5, 10, 15, 20, 25, 30, 35, 40, 45, 50, 55, 60]   # 100 // 20 = every 5 steps
    assert lines[1].startswith("step   1/100 (  1%)  diffusion 1") and lines[-1] == "step  60/100  alarm: m"
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write('usion": 1.0}\n')
    printer.poll()
    assert len(lines) == 15 and all("\r" not in line for line in lines)
    printer.poll()
    assert len(lines) == 15                                            # nothing printed twice


def test_torchrun_command_lines_and_their_overrides():
    from repae_lab.jobs.cadence import with_cadence
    from repae_lab.notebooks.kernel_training import torchrun_command
    from repae_lab.config import parse_overrides, resolve_config

    overrides = with_cadence("workshop", {"batch_size": 8, "lr": 3e-4, "stop_grad": False, "data_root": None,
                                          "snapshot_t": [0.5, 0.75]}, 12)
    cmd = torchrun_command("workshop", "repa-e", "runs/x", overrides, processes=2)
    assert cmd[1:6] == ["-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone"]
    sets = cmd[cmd.index("--set") + 1:]
    # what the subprocess resolves is the run the notebook asked for (so a second execution reuses it)
    assert resolve_config("workshop", recipe="repa-e", overrides=parse_overrides(sets)) == \
        resolve_config("workshop", recipe="repa-e", overrides=overrides)
    multi = torchrun_command("workshop", "repa-e", "runs/x", {}, processes=8, nnodes=2, node_rank=1,
                             rdzv_endpoint="node0:29500", resume=True)
    assert multi[5:13] == ["--nnodes", "2", "--node_rank", "1", "--rdzv_backend", "c10d", "--rdzv_endpoint",
                           "node0:29500"]
    assert multi[-5:] == ["repae_lab", "train", "--quiet", "--resume", "runs/x"]


# ---------------------------------------------------------------------------------------------------------
# every notebook under papermill, through run-notebook, with its smallest parameters

def _tiny(cache: str, **extra) -> dict:
    """The conftest TINY settings without their cadence (the notebooks derive it from the steps), and three
    small evaluations per run."""
    cadence = ("steps", "log_every", "snapshot_every", "checkpoint_every", "eval_every")
    return {**{k: v for k, v in TINY.items() if k not in cadence}, "cache_dir": cache, "eval_every": 3,
            "eval_n": 16, **extra}


@pytest.fixture(scope="module")
def executed(tmp_path_factory, encoder_cache):
    """Every notebook run once by run_notebook, two at a time; {stem: (summary, executed notebook, folder)}.
    Notebook 01 trains the run (two processes, torchrun) that 02, 04, 06 and 07 read; 05 reuses a run of 03."""
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    from repae_lab.jobs.cadence import with_cadence
    from repae_lab.jobs.launch import train
    from repae_lab.notebooks.runner import run_notebook
    from repae_lab.notebooks.sweeps import share_the_cores
    from repae_lab.config import resolve_config

    root = tmp_path_factory.mktemp("notebooks")
    ov = _tiny(encoder_cache)
    # the cached pretrained VAE, target encoder and evaluator, made once here rather than by two kernels at once
    train(resolve_config("workshop", recipe="repa-e", overrides=with_cadence("workshop", ov, 1)), root / "warm",
          progress=False)
    trained = str(root / "01_train_a_run" / "run")          # run-notebook's default for `out`
    ws_root = str(root / "03_workshop_why_repa_e" / "run")
    params = {
        "01_train_a_run": dict(steps=6, processes=2, overrides=ov),
        "03_workshop_why_repa_e": dict(recipes=["e2e-diffusion", "repa-e"], steps=6, overrides=ov, umap=False),
        # after 01, the longest first
        "07_e2e_vae": dict(source=trained, steps=4, losses=["repa"], overrides=ov),
        "06_sample_and_evaluate": dict(run=trained, n=16, show=4, sampler="heun", sampler_steps=3, samplers=["euler"],
                                       steps_grid=[2], cfg_scales=[2.0], intervals=[[0.0, 0.7]]),
        "02_latent_space": dict(runs=[trained], umap=False),
        # after 03 (and 01)
        "05_compare_recipes": dict(recipes=["vanilla", "repa-e"], steps=6, out_root=ws_root, overrides=ov),
        "04_explore": dict(runs=[trained, f"{ws_root}-e2e-diffusion-6"], umap=False),
    }
    needs = {"07_e2e_vae": {"01_train_a_run"}, "06_sample_and_evaluate": {"01_train_a_run"},
             "02_latent_space": {"01_train_a_run"}, "05_compare_recipes": {"03_workshop_why_repa_e"},
             "04_explore": {"01_train_a_run", "03_workshop_why_repa_e"}}
    done, running = {}, {}
    # two worker processes (papermill changes the working directory of the process it runs in); a notebook
    # starts as soon as the runs it reads exist
    with ProcessPoolExecutor(max_workers=2, mp_context=multiprocessing.get_context("spawn"),
                             initializer=share_the_cores, initargs=(2,)) as pool:
        while len(done) < len(params):
            for stem in params:
                if stem not in done and stem not in running and needs.get(stem, set()) <= set(done) \
                        and len(running) < 2:
                    running[stem] = pool.submit(run_notebook, ROOT / "notebooks" / f"{stem}.ipynb", root / stem,
                                                params[stem], kernel="python3")
            finished, _ = wait(running.values(), return_when=FIRST_COMPLETED)
            for stem in [s for s, f in running.items() if f in finished]:
                summary = running.pop(stem).result()
                done[stem] = (summary, nbformat.read(str(root / stem / summary["executed"]), as_version=4),
                              root / stem)
    return done


def _ok(executed, stem):
    summary, nb, out = executed[stem]
    assert summary["status"] == "ok", summary["error"]
    assert (out / summary["html"]).is_file() and (out / "summary.json").is_file()
    assert "widgets" not in nb.metadata                     # no widget state the HTML could not show
    assert not [o for o in _outputs(nb) if WIDGET in o.get("data", {})]
    return summary, nb, out


@pytest.mark.slow
def test_train_notebook_with_two_processes_runs_torchrun_and_follows_it(executed):
    summary, nb, out = _ok(executed, "01_train_a_run")
    run = Path(summary["runs"][0]["path"])
    assert summary["runs"] == [{"path": str(run), "action": "trained"}] and run == out / "run"
    assert json.loads((run / "summary.json").read_text())["steps"] == 6
    assert "torch.distributed.run --nproc_per_node 2 --standalone" in (run / "torchrun.log").read_text()
    text = _stdout(nb)
    assert "in torchrun, 2 process(es) x 1 machine(s)" in text
    assert "step 6/6 (100%)  diffusion" in text and "step 3/6  evaluation: accuracy_workshop" in text
    assert "\r" not in text                                 # lines, not a progress bar's carriage returns
    assert "step 6/6 (100%)" in (out / "log.txt").read_text()  # what papermill's log shows
    config = json.loads((run / "config.json").read_text())
    assert config["snapshot_every"] == 1 and config["eval_every"] == 3   # cadence from the steps
    assert sum(PLOTLY in o.get("data", {}) for o in _outputs(nb)) == 2
    assert summary["headline"]["steps"] == 6 and "loss/diffusion" in summary["headline"]


@pytest.mark.slow
def test_explore_notebook_compares_vaes_side_by_side_without_any_run(tmp_path):
    """04_explore with VAEs only: compare-vaes runs in the notebook, its table, the VAEs' latent PCA and PCA-RGB
    maps show as figures, and a wrong `comparison` folder is refused in one line before anything runs."""
    from repae_lab.notebooks.runner import run_notebook

    summary = run_notebook(ROOT / "notebooks" / "04_explore.ipynb", tmp_path / "cmp",
                           dict(runs=[], vaes=["workshop-16", "workshop-16-c8"], vae_images="digits", vae_n=30),
                           kernel="python3")
    assert summary["status"] == "ok", summary["error"]
    nb = nbformat.read(str(tmp_path / "cmp" / summary["executed"]), as_version=4)
    html = "".join(o["data"].get("text/html", "") for o in _outputs(nb) if "data" in o)
    assert "spatial_var" in html and "workshop-16-c8" in html and "8x8x8" in html
    figures = [o["data"][PLOTLY] for o in _outputs(nb) if PLOTLY in o.get("data", {})]
    assert len(figures) == 2 and "latent space" in figures[0]["layout"]["title"]["text"]
    assert {t["name"] for t in figures[0]["data"]} == {str(c) for c in range(10)}   # coloured by digit class
    assert summary["headline"]["workshop-16-c8 spatial variance"] > 0
    assert (tmp_path / "cmp" / "vae-comparison" / "vae_arrays.safetensors").is_file()

    refused = run_notebook(ROOT / "notebooks" / "04_explore.ipynb", tmp_path / "bad",
                           dict(runs=[], comparison=str(tmp_path)), kernel="python3")
    assert refused["status"] == "failed" and "not a folder written by `repae-lab compare-vaes" in refused["error"]["evalue"]


@pytest.mark.slow
def test_latent_space_and_explore_notebooks_show_the_explorer_as_a_static_figure(executed):
    for stem in ("02_latent_space", "04_explore"):
        summary, nb, _ = _ok(executed, stem)
        figures = [o["data"][PLOTLY] for o in _outputs(nb) if PLOTLY in o.get("data", {})]
        sliders = [f for f in figures if f["layout"].get("sliders")]
        assert len(sliders) == 1, stem
        assert [s["label"] for s in sliders[0]["layout"]["sliders"][0]["steps"]] == [str(s) for s in range(7)]
        assert any(k.startswith("spatial variance/") for k in summary["headline"]), summary["headline"]


@pytest.mark.slow
def test_workshop_and_compare_notebooks_share_runs_and_compute_table_1(executed):
    summary, nb, _ = _ok(executed, "03_workshop_why_repa_e")
    assert [r["action"] for r in summary["runs"]] == ["trained", "trained"]
    summary, nb, _ = _ok(executed, "05_compare_recipes")
    actions = {Path(r["path"]).name: r["action"] for r in summary["runs"]}
    assert actions == {"run-vanilla-6": "trained", "run-repa-e-6": "reused"}
    headline = summary["headline"]
    assert {"FD (workshop)/vanilla", "FD (workshop)/repa-e", "latent spatial variance/repa-e"} <= set(headline)
    assert any("FD (workshop)" in o.get("data", {}).get("text/html", "") for o in _outputs(nb))


@pytest.mark.slow
def test_sample_notebook_compares_sampler_settings(executed):
    summary, nb, _ = _ok(executed, "06_sample_and_evaluate")
    assert summary["headline"]["step"] == 6 and "fd_workshop" in summary["headline"]
    tables = [o["data"]["text/html"] for o in _outputs(nb) if "<table>" in o.get("data", {}).get("text/html", "")]
    assert tables[0].count("<tr>") == 1 + 5            # base, sampler, steps, cfg scale, interval
    assert "cfg 2 on [0, 0.7]" in tables[0]
    assert sum(PLOTLY in o.get("data", {}) for o in _outputs(nb)) == 1 + 4 + 1


@pytest.mark.slow
def test_e2e_vae_notebook_exports_and_trains_two_fresh_sits(executed):
    summary, nb, _ = _ok(executed, "07_e2e_vae")
    actions = [(Path(r["path"]).name, r["action"]) for r in summary["runs"]]
    assert actions == [("run-e2e-vae", "exported"), ("run-repa-e2e-vae-4", "trained"),
                       ("run-repa-original-vae-4", "trained")]
    e2e = json.loads((Path(summary["runs"][1]["path"]) / "config.json").read_text())
    original = json.loads((Path(summary["runs"][2]["path"]) / "config.json").read_text())
    assert e2e["recipe"] == "on-frozen-e2e-vae" and e2e["vae"] == summary["runs"][0]["path"]
    assert original["recipe"] == "repa" and original["vae"] == "workshop-16"
    differs = {k for k in e2e if e2e[k] != original[k]}
    assert differs == {"recipe", "vae"}                    # only the VAE (and the recipe naming it) differ
    assert {"FD (workshop)/repa on E2E-VAE", "FD (workshop)/repa on original VAE"} <= set(summary["headline"])


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="needs chromium (apt-get install chromium)")
def test_html_export_renders_its_figures_offline_in_chromium(executed):
    """The exported page of notebook 02 draws every plotly figure with no network at all (every request other
    than the file itself is refused), and the static explorer's step slider works."""
    pytest.importorskip("playwright")
    from playwright.sync_api import sync_playwright

    summary, nb, out = _ok(executed, "02_latent_space")
    page_file = out / summary["html"]
    text = page_file.read_text()
    assert not re.search(r"<script[^>]+src=[\"']?https?:", text)          # plotly.js is inside the page
    expected = sum(PLOTLY in o.get("data", {}) for o in _outputs(nb))
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run"])
        try:
            page = browser.new_page(viewport={"width": 1300, "height": 1000})
            refused, errors = [], []
            page.route("**/*", lambda route: route.continue_() if route.request.url.startswith("file:")
                       else (refused.append(route.request.url), route.abort()))
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(page_file.as_uri())
            page.wait_for_function(f"document.querySelectorAll('.js-plotly-plot .main-svg').length >= {expected}",
                                   timeout=60_000)
            drawn = page.evaluate("document.querySelectorAll('.js-plotly-plot').length")
            explorer = page.locator(".js-plotly-plot").filter(has=page.locator(".slider-container"))
            sliders = explorer.count()
            before = explorer.locator(".gtitle").first.text_content()
            # click the slider's rail under its label "3": the static explorer moves to step 3, with no kernel
            label = explorer.locator(".slider-label", has_text="3").first
            label.scroll_into_view_if_needed()
            x, rail = label.bounding_box(), explorer.locator(".slider-rail-touch-rect").first.bounding_box()
            page.mouse.click(x["x"] + x["width"] / 2, rail["y"] + rail["height"] / 2)
            page.wait_for_function("[...document.querySelectorAll('.js-plotly-plot .gtitle')]"
                                   ".some(t => t.textContent.startsWith('step 3:'))", timeout=10_000)
        finally:
            browser.close()
    assert drawn == expected >= 3 and sliders == 1 and before.startswith("step 6:")
    assert not refused and not errors, (refused, errors)


@pytest.mark.slow
@pytest.mark.parametrize("parameters, message", [
    ({"steps": "abc", "recipe": "repa-e"}, "parameter 'steps' must be an int (e.g. -p steps 40), got 'abc' (a str)."),
    ({"step": 50}, "this notebook has no parameter 'step'. Did you mean 'steps'? Its parameters: preset, recipe, out, "
                   "steps, overrides, processes, nnodes, node_rank, rdzv_endpoint, progress."),
], ids=["wrong-type", "misspelt-name"])
def test_a_wrong_parameter_under_plain_papermill_stops_with_one_line(tmp_path, parameters, message):
    """papermill itself, not run-notebook: the first cell after the parameters stops with the message (papermill
    only warns about a name the notebook lacks)."""
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    out = tmp_path / "01.ipynb"
    with pytest.raises(PapermillExecutionError) as caught:
        pm.execute_notebook(str(ROOT / "notebooks" / "01_train_a_run.ipynb"), str(out), parameters=parameters,
                            kernel_name="python3", progress_bar=False)
    assert caught.value.ename == "ParameterError" and caught.value.evalue == message
    nb = nbformat.read(str(out), as_version=4)
    errors = [o for o in _outputs(nb) if o.output_type == "error"]
    assert len(errors) == 1 and errors[0].traceback == [f"ParameterError: {message}"]
    code = [c for c in nb.cells if c.cell_type == "code"]
    failed = next(i for i, c in enumerate(code) if any(o.output_type == "error" for o in c.outputs))
    assert code[failed - 2] is _parameters_cell(nb)         # the check right after papermill's injected cell
    assert all(c.execution_count is None for c in code[failed + 1:])     # and nothing after it ran


# ---------------------------------------------------------------------------------------------------------
# sweeps (a small notebook of its own: the machinery does not depend on what a notebook computes)

SWEEP_PARAMETERS = 'a: int = 1  # a number; 3 fails\nb: str = "x"  # a letter\nwidgets: bool = True  # widgets'


@pytest.fixture(scope="module")
def sweep_notebook(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("sweep") / "toy.ipynb"
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell(SWEEP_PARAMETERS)
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params,
                nbformat.v4.new_code_cell("from repae_lab.notebooks.params import check, one_of\n"
                                          "check(globals(), a=int, b=one_of('x', 'y'), widgets=bool)"),
                nbformat.v4.new_code_cell("from repae_lab.notebooks import output as notebook_output\nprint(a, b)"),
                nbformat.v4.new_code_cell("print('about to check a')\nassert a != 3, 'a is three'"),
                nbformat.v4.new_code_cell("import os\nnotebook_output.record_headline({'score': a * 10 + len(b), "
                                          "'threads': os.environ.get('OMP_NUM_THREADS')})")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, str(path))
    return path


@pytest.mark.slow
def test_sweep_runs_a_grid_writes_an_index_and_skips_what_finished(sweep_notebook, tmp_path):
    from repae_lab.notebooks.sweeps import run_sweep

    out = tmp_path / "sweep"
    index = run_sweep(sweep_notebook, out, {"a": [1, 2], "b": ["x", "y"]}, jobs=2, kernel="python3", log=None)
    names = [e["name"] for e in index["combinations"]]
    assert names == ["a=1_b=x", "a=1_b=y", "a=2_b=x", "a=2_b=y"]
    assert all(e["status"] == "ok" and not e["skipped"] for e in index["combinations"])
    for e in index["combinations"]:
        assert (out / e["notebook"]).is_file() and (out / e["html"]).is_file()
    assert [e["headline"]["score"] for e in index["combinations"]] == [11, 11, 21, 21]
    # two kernels at a time, each with its share of the cores (more threads than cores spin-wait)
    cores = len(os.sched_getaffinity(0))
    share = os.environ.get("OMP_NUM_THREADS", str(max(1, cores // 2)))
    assert {e["headline"]["threads"] for e in index["combinations"]} == {share}
    page = (out / "index.html").read_text()
    assert all(f"href='{e['html']}'" in page for e in index["combinations"]) and "<td>21</td>" in page
    assert json.loads((out / "index.json").read_text())["combinations"] == index["combinations"]
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*.ipynb")}

    again = run_sweep(sweep_notebook, out, {"a": [1, 2], "b": ["x", "y"]}, jobs=2, kernel="python3", log=None)
    assert [e["skipped"] for e in again["combinations"]] == [True] * 4
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.ipynb")} == stamps      # nothing ran again
    assert "ok (earlier run)" in (out / "index.html").read_text()


@pytest.mark.slow
def test_sweep_lists_a_failing_combination_and_finishes_the_others(sweep_notebook, tmp_path, capsys):
    """The failing combination runs first; the next one still runs. The failed notebook keeps its outputs up
    to the failing cell, which shows the error, and nothing after it ran."""
    out = tmp_path / "sweep"
    code = _cli(["sweep", str(sweep_notebook), "--out", str(out), "--grid", "a=3,4", "-p", "b", "y",
                 "--kernel", "python3"])
    captured = capsys.readouterr()
    assert code == 1
    assert "1 of 2 combinations ok" in captured.out
    assert "failed: a=3: cell In [5] (\"print('about to check a')\") failed: AssertionError: a is three" in captured.err
    index = json.loads((out / "index.json").read_text())
    status = {e["name"]: e["status"] for e in index["combinations"]}
    assert status == {"a=3": "failed", "a=4": "ok"}
    failed = next(e for e in index["combinations"] if e["name"] == "a=3")
    assert "AssertionError: a is three" in failed["error"] and "a=3" in (out / "index.html").read_text()
    nb = nbformat.read(str(out / failed["notebook"]), as_version=4)
    code_cells = [c for c in nb.cells if c.cell_type == "code"]
    failing = next(c for c in code_cells if "assert a != 3" in c.source)
    assert [o.output_type for o in failing.outputs] == ["stream", "error"]
    assert code_cells[-1].execution_count is None                          # stopped there
    assert any("papermill-error-cell-tag" in c.metadata.get("tags", []) for c in nb.cells)
    assert (out / failed["html"]).is_file()
    summary = json.loads((out / "a=3" / "summary.json").read_text())
    assert summary["status"] == "failed" and summary["error"]["ename"] == "AssertionError"
    assert summary["parameters"] == {"widgets": False, "b": "y", "a": 3}
