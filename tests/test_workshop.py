"""The workshop kit (repae_lab/workshop, notebooks/workshop): every checker accepts the reference solution and
names the typical wrong answers; the references compute what training computes; the kit's runs are prepared
once and reused; every kit notebook runs under papermill with the solutions filled in (and without them)."""
from __future__ import annotations

import argparse
import json
import re
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from repae_lab.losses import diffusion_loss, interpolate as lib_interpolate, repa_loss as lib_repa_loss
from repae_lab.losses import velocity_target as lib_velocity
from repae_lab.models.modes import frozen_eval
from repae_lab.workshop import (check_collapse_reading, check_gradient_routing, check_interpolation,
                                check_repa_loss, show_solution, solution, vae_forward)
from repae_lab.workshop import collapse

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks" / "workshop"


def raises(*args):
    raise RuntimeError("a bug in the learner's code")


def not_written(*args):
    raise NotImplementedError


def _rejects(verdict, mistake, *words):
    assert not verdict.passed, verdict
    assert verdict.mistake == mistake, verdict
    for word in words:
        assert word in verdict.message, verdict


# ---------------------------------------------------------------------------------------------------------
# exercise 1: interpolant and velocity

def test_interpolation_checker_accepts_the_reference_and_the_library():
    assert check_interpolation(*solution("interpolation")).passed
    assert check_interpolation(lib_interpolate, lib_velocity).passed
    g = torch.Generator().manual_seed(0)
    x, noise, t = torch.randn(5, 4, 8, 8, generator=g), torch.randn(5, 4, 8, 8, generator=g), torch.rand(5, generator=g)
    interpolate, velocity = solution("interpolation")
    assert torch.equal(interpolate(x, noise, t), lib_interpolate(x, noise, t))
    assert torch.equal(velocity(x, noise), lib_velocity(x, noise))


def _tv(t, x):
    return t.view(-1, 1, 1, 1)


@pytest.mark.parametrize("interp, velocity, mistake, word", [
    (lambda x, n, t: _tv(t, x) * x + (1 - _tv(t, x)) * n, lib_velocity, "reversed", "reversed"),
    (lambda x, n, t: (1 - t) * x + t * n, lib_velocity, "t_broadcast", "per sample"),
    (lambda x, n, t: (1 - t.view(1, 1, 1, -1)) * x + t.view(1, 1, 1, -1) * n, lib_velocity, "t_broadcast", "sample"),
    (lambda x, n, t: torch.sqrt(1 - _tv(t, x)) * x + torch.sqrt(_tv(t, x)) * n, lib_velocity, "not_linear", "straight"),
    (lambda x, n, t: x.mul_(1 - _tv(t, x)).add_(_tv(t, x) * n), lib_velocity, "in_place", "in place"),
    (lib_interpolate, lambda x, n: x - n, "velocity_sign", "noise to the data"),
    (lib_interpolate, lambda x, n: n, "epsilon", "noise itself"),
    (lib_interpolate, lambda x, n: 2 * (n - x), "velocity", "rate"),
])
def test_interpolation_checker_names_typical_mistakes(interp, velocity, mistake, word):
    _rejects(check_interpolation(interp, velocity), mistake, word)


def test_interpolation_checker_never_raises():
    _rejects(check_interpolation(raises, lib_velocity), "raises", "RuntimeError")
    _rejects(check_interpolation(not_written, not_written), "not_written", "YOUR CODE HERE")
    _rejects(check_interpolation(lambda x, n, t: None, lib_velocity), "returns_none", "return")
    _rejects(check_interpolation(lambda x, n, t: x * float("nan"), lib_velocity), "not_finite", "NaN")
    _rejects(check_interpolation(lambda x, n, t: x[:, 0], lib_velocity), "shape", "shape")
    _rejects(check_interpolation(None, None), "not_callable")


# ---------------------------------------------------------------------------------------------------------
# exercise 2: the REPA loss

def _cos(p, t):
    return (F.normalize(p, dim=-1) * F.normalize(t, dim=-1)).sum(-1)


def test_repa_checker_accepts_the_reference_and_the_library():
    assert check_repa_loss(solution("repa_loss")).passed
    assert check_repa_loss(lambda p, t: lib_repa_loss([p], [t])).passed
    g = torch.Generator().manual_seed(0)
    p, t = torch.randn(4, 16, 8, generator=g), torch.randn(4, 16, 8, generator=g)
    assert torch.allclose(solution("repa_loss")(p, t), lib_repa_loss([p], [t]))


@pytest.mark.parametrize("fn, mistake, word", [
    (lambda p, t: -(p * t).sum(-1).mean(), "unnormalised", "rescaled"),
    (lambda p, t: _cos(p, t).mean(), "sign", "sign"),
    (lambda p, t: -_cos(p, t).sum(1).mean(), "sum_over_tokens", "reduction"),
    (lambda p, t: -_cos(p, t).sum(), "sum_over_everything", "reduction"),
    (lambda p, t: -(F.normalize(p, dim=-1) * F.normalize(t, dim=-1)).mean(), "mean_over_features", "reduction"),
    (lambda p, t: -_cos(p, t).mean(1), "not_scalar", "one number"),
    (lambda p, t: (1 - _cos(p, t)).mean(), "offset", "constant"),
    (lambda p, t: -_cos(p, t).mean().item(), "no_grad", "gradient"),
    (lambda p, t: -(F.normalize(p, dim=1) * F.normalize(t, dim=1)).sum(-1).mean(), "normalised_over_tokens", "last axis"),
])
def test_repa_checker_names_typical_mistakes(fn, mistake, word):
    _rejects(check_repa_loss(fn), mistake, word)


def test_repa_checker_never_raises():
    _rejects(check_repa_loss(raises), "raises", "RuntimeError")
    _rejects(check_repa_loss(not_written), "not_written", "YOUR CODE HERE")
    _rejects(check_repa_loss(lambda p, t: [1.0]), "wrong_type", "list")
    _rejects(check_repa_loss(lambda p, t: -_cos(p, t).mean() * 0.9), "identical", "-1")


# ---------------------------------------------------------------------------------------------------------
# exercise 3: the gradient routing

def _sit_forward(sit, z, b, full=True):
    z_norm = sit.normalize_latent(z)
    velocity, projected = sit(lib_interpolate(z_norm, b.noise, b.t), b.t, b.y)
    return z_norm, velocity, projected


def vae_with_diffusion(vae, sit, b):
    z, reg = vae_forward(vae, b)
    with frozen_eval(sit):
        z_norm, v, p = _sit_forward(sit, z, b)
        return reg + 1.5 * lib_repa_loss(p, [b.targets]) + diffusion_loss(v, z_norm, b.noise)


def vae_sit_not_frozen(vae, sit, b):
    z, reg = vae_forward(vae, b)
    sit.eval()
    _, _, p = _sit_forward(sit, z, b)
    out = reg + 1.5 * lib_repa_loss(p, [b.targets])
    sit.train()
    return out


def vae_sit_in_train_mode(vae, sit, b):
    z, reg = vae_forward(vae, b)
    learns = {p: p.requires_grad for p in sit.parameters()}
    sit.requires_grad_(False)
    _, _, p = _sit_forward(sit, z, b)
    for q, flag in learns.items():
        q.requires_grad_(flag)
    return reg + 1.5 * lib_repa_loss(p, [b.targets])


def vae_detached(vae, sit, b):
    z, reg = vae_forward(vae, b)
    with frozen_eval(sit):
        _, _, p = _sit_forward(sit, z.detach(), b)
        return reg + 1.5 * lib_repa_loss(p, [b.targets])


def vae_leaves_sit_frozen(vae, sit, b):
    z, reg = vae_forward(vae, b)
    sit.eval()
    sit.requires_grad_(False)
    _, _, p = _sit_forward(sit, z, b)
    return reg + 1.5 * lib_repa_loss(p, [b.targets])


def vae_no_reg(vae, sit, b):
    return solution("gradient_routing")[0](vae, sit, b) - vae_forward(vae, b)[1]


def _sit_loss(sit, z, b, detach=True, mode="train", repa=0.5):
    z = z.detach() if detach else z
    if mode == "train":
        sit.train()
    elif mode == "eval":
        sit.eval()
    z_norm, v, p = _sit_forward(sit, z, b)
    return diffusion_loss(v, z_norm, b.noise) + repa * lib_repa_loss(p, [b.targets])


REFERENCE_VAE, REFERENCE_SIT = solution("gradient_routing")


def test_routing_checker_accepts_the_reference():
    verdict = check_gradient_routing(REFERENCE_VAE, REFERENCE_SIT)
    assert verdict.passed, verdict
    assert len(verdict.right) == 4


@pytest.mark.parametrize("vae_fn, sit_fn, mistake, word", [
    (vae_with_diffusion, REFERENCE_SIT, "diffusion_reaches_vae", "diffusion loss reaches the VAE"),
    (vae_sit_not_frozen, REFERENCE_SIT, "sit_not_frozen", "frozen"),
    (vae_sit_in_train_mode, REFERENCE_SIT, "sit_train_mode", "train mode"),
    (vae_detached, REFERENCE_SIT, "no_repa_in_vae", "REPA loss does not reach the VAE"),
    (vae_no_reg, REFERENCE_SIT, "no_reg", "regularisation"),
    (lambda v, s, b: 2 * REFERENCE_VAE(v, s, b), REFERENCE_SIT, "vae_weights", "weights"),
    (REFERENCE_VAE, lambda s, z, b: _sit_loss(s, z, b, detach=False), "latent_not_detached", "not detached"),
    (REFERENCE_VAE, lambda s, z, b: _sit_loss(s, z, b, mode="eval"), "sit_eval_mode", "eval mode"),
    (REFERENCE_VAE, lambda s, z, b: _sit_loss(s, z, b, repa=0.0), "no_repa_in_sit", "projector"),
    (REFERENCE_VAE, lambda s, z, b: _sit_loss(s, z, b, repa=1.5), "sit_weights", "weights"),
    (vae_leaves_sit_frozen, lambda s, z, b: _sit_loss(s, z, b, mode=None), "sit_still_frozen", "still frozen"),
])
def test_routing_checker_names_typical_mistakes(vae_fn, sit_fn, mistake, word):
    _rejects(check_gradient_routing(vae_fn, sit_fn), mistake, word)


def test_routing_checker_never_raises():
    _rejects(check_gradient_routing(raises, REFERENCE_SIT), "raises", "RuntimeError")
    _rejects(check_gradient_routing(REFERENCE_VAE, not_written), "not_written", "YOUR CODE HERE")
    _rejects(check_gradient_routing(lambda v, s, b: torch.tensor(1.0), REFERENCE_SIT), "vae_no_grad", "no gradient")
    _rejects(check_gradient_routing(REFERENCE_VAE, lambda s, z, b: None), "returns_none", "return")


def test_routing_figure_shows_which_part_learns_where():
    from repae_lab.workshop import routing_gradients

    grads = routing_gradients(REFERENCE_VAE, REFERENCE_SIT)
    vae_update, sit_update = grads["update 1 (VAE)"], grads["update 3 (SiT)"]
    assert vae_update["VAE encoder"] > 0 and vae_update["VAE decoder"] > 0
    assert all(vae_update[k] == 0 for k in vae_update if not k.startswith("VAE"))
    assert sit_update["VAE encoder"] == sit_update["VAE decoder"] == 0
    assert sit_update["REPA projector"] > 0 and sit_update["SiT embeddings + head"] > 0


def test_routing_references_compute_what_the_training_step_computes(tiny_config):
    """The workshop's update-1 and update-3 losses against training/step.py on a real tiny run state."""
    from repae_lab.training.batches import batch_indices, step_generator
    from repae_lab.training.state import build_state
    from repae_lab.training.step import StepDraws, latent_shape, sit_update, target_tokens, vae_loss
    from repae_lab.workshop import StepBatch
    from repae_lab.models.vae import encode, decode

    state = build_state(tiny_config("repa-e", class_dropout_prob=0.0), progress=False)
    state.route = replace(state.route, vae_reg=False)         # the library's regularisation has GAN + perceptual
    cfg, vae, sit = state.cfg, state.nets.vae, state.nets.sit
    x, y = state.dataset.batch(batch_indices(len(state.dataset), cfg.batch_size, cfg.seed, 0))
    draws = StepDraws.draw(latent_shape(vae, x), len(x), step_generator(0, 0), x.device, cfg.class_dropout_prob)
    targets = target_tokens(state, x)
    batch = StepBatch(x=x, y=y, targets=targets[0], eps=draws.eps, t=draws.t, noise=draws.noise)

    _, posterior = encode(vae, x, sample=False)
    z = posterior.mean + posterior.std * draws.eps
    library, parts = vae_loss(state, x, y, z, posterior, decode(vae, z), draws, targets)
    ours = REFERENCE_VAE(vae, sit, batch) - vae_forward(vae, batch)[1]
    assert torch.allclose(ours, library, rtol=1e-5, atol=1e-6)
    assert torch.allclose(ours, cfg.vae_align_proj_coeff * parts["loss/repa_vae"], rtol=1e-5, atol=1e-6)

    expected = REFERENCE_SIT(_copy(sit), z, batch)
    metrics = sit_update(state, z.detach(), y, draws, targets)
    assert torch.allclose(expected, metrics["loss/diffusion"] + cfg.proj_coeff * metrics["loss/repa"], rtol=1e-5)


def _copy(module):
    import copy
    return copy.deepcopy(module)


# ---------------------------------------------------------------------------------------------------------
# exercise 4: reading a collapse

def test_collapse_checker_accepts_the_reference():
    verdict = check_collapse_reading(solution("collapse_reading"))
    assert verdict.passed and len(verdict.right) == len(collapse.CASES)


@pytest.mark.parametrize("mistake, word", [
    ("diffusion_loss", "diffusion loss"), ("latent_std", "std"), ("linear_probe", "class information"),
    ("absolute_threshold", "small"), ("any_decrease", "smoother"),
])
def test_collapse_checker_names_typical_mistakes(mistake, word):
    verdict = check_collapse_reading(collapse.MISTAKES[mistake])
    _rejects(verdict, mistake, word)


def test_collapse_checker_never_raises():
    _rejects(check_collapse_reading(raises), "raises", "RuntimeError")
    _rejects(check_collapse_reading(lambda f, l: None), "returns_none", "True or False")
    _rejects(check_collapse_reading(lambda f, l: l["no such key"]), "raises", "KeyError")


# ---------------------------------------------------------------------------------------------------------
# solutions on request

def test_show_solution_prints_only_the_asked_one(capsys):
    show_solution("repa_loss")
    out = capsys.readouterr().out
    assert "def repa_loss" in out and "normalize" in out and "def interpolate" not in out
    show_solution("no such exercise")
    assert "choose one of: interpolation, repa_loss, gradient_routing, collapse_reading" in capsys.readouterr().out
    with pytest.raises(KeyError, match="no exercise named"):
        solution("nope")


def test_verdict_shows_in_notebooks():
    verdict = check_repa_loss(lambda p, t: _cos(p, t).mean())
    assert str(verdict).startswith("✗ repa_loss: wrong sign")
    assert "#b3261e" in verdict._repr_html_() and not bool(verdict)
    assert "✓" in verdict.__class__("x", True, "fine")._repr_html_()


# ---------------------------------------------------------------------------------------------------------
# the kit's runs, the CLI and the notebooks (tiny settings)

def kit_overrides(cache):
    from conftest import TINY
    return {**TINY, "cache_dir": cache, "steps": 6, "snapshot_every": 3, "checkpoint_every": 3, "eval_every": 3,
            "eval_n": 16}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory, encoder_cache):
    from repae_lab.commands.workshop import add_subcommands

    kit_dir = tmp_path_factory.mktemp("kit")
    parser = argparse.ArgumentParser(prog="repae-lab")
    add_subcommands(parser.add_subparsers(dest="command"))
    sets = [f"{k}={v}" for k, v in kit_overrides(encoder_cache).items()]
    args = parser.parse_args(["workshop", "prepare", "--out", str(kit_dir), "--quiet", "--set", *sets])
    assert args.func(args) == 0
    return kit_dir, kit_overrides(encoder_cache), parser, sets


@pytest.mark.slow
def test_prepare_trains_every_run_once_and_the_kit_reuses_them(prepared, tmp_path, capsys):
    from repae_lab.workshop import KIT_RUNS, Kit

    kit_dir, overrides, parser, sets = prepared
    kit = Kit(kit_dir, tmp_path / "work", overrides, progress=False)
    for name in KIT_RUNS:
        run = kit.find(name)
        assert run is not None and run.parent == kit_dir and run.name.startswith(name + "-")
        assert (run / "probes" / "pca.safetensors").is_file()
    fresh = kit.find("on-frozen-e2e-vae")
    assert json.loads((fresh / "config.json").read_text())["vae"] == str(kit.e2e_vae())
    stamp = (kit.find("repa-e") / "summary.json").stat().st_mtime_ns
    assert kit.run("repa-e") == kit.find("repa-e")                      # reused, not retrained
    assert (kit.find("repa-e") / "summary.json").stat().st_mtime_ns == stamp
    # other settings: other folders, nothing prepared yet
    assert Kit(kit_dir, tmp_path / "work", {**overrides, "seed": 1}).find("repa-e") is None
    args = parser.parse_args(["workshop", "status", "--out", str(kit_dir), "--set", *sets])
    capsys.readouterr()
    assert args.func(args) == 0
    assert capsys.readouterr().out.count("ready") == len(KIT_RUNS)
    args = parser.parse_args(["workshop", "prepare", "--only", "nope", "--out", str(kit_dir)])
    assert args.func(args) == 2
    assert capsys.readouterr().err.startswith("repae-lab: error: unknown kit run(s) nope")


@pytest.mark.slow
def test_a_kit_folder_made_with_older_settings_is_refused_and_prepare_rebuilds_it(prepared, tmp_path, monkeypatch,
                                                                                  capsys):
    from repae_lab.rundir import RunError
    from repae_lab.workshop import Kit, runs

    _, overrides, parser, sets = prepared
    kit_dir = tmp_path / "old-kit"
    prepare = parser.parse_args(["workshop", "prepare", "--out", str(kit_dir), "--only", "vanilla", "--quiet",
                                 "--set", *sets])
    status = parser.parse_args(["workshop", "status", "--out", str(kit_dir), "--set", *sets])
    with monkeypatch.context() as m:            # the kit as the older runs.py made it: unguided evaluation pinned
        m.setitem(runs.COMMON, "eval_cfg_scale", 1.0)
        assert prepare.func(prepare) == 0
    kit = Kit(kit_dir, tmp_path / "work", overrides, progress=False)
    old = kit.outdated("vanilla")
    assert old is not None and old.parent == kit_dir and kit.find("vanilla") is None
    # a notebook refuses it in one line rather than train for minutes during the session
    with pytest.raises(RunError, match=r"^the kit run '.*vanilla-[0-9a-f]{8}' was made with older settings; run "
                                       r"`repae-lab workshop prepare --out .*` to rebuild it\.$"):
        kit.run("vanilla")
    assert sorted(p.name for p in kit_dir.iterdir() if p.name.startswith("vanilla")) == [old.name]
    capsys.readouterr()
    assert status.func(status) == 0
    out = capsys.readouterr().out
    assert re.search(r"^vanilla +outdated ", out, re.M) and re.search(r"^repa +missing ", out, re.M)
    # prepare trains the run again under today's settings; the notebook then finds it
    assert prepare.func(prepare) == 0
    assert "made with older settings; training it again" in capsys.readouterr().out
    assert kit.run("vanilla") == kit.find("vanilla") != old
    assert status.func(status) == 0 and re.search(r"^vanilla +ready ", capsys.readouterr().out, re.M)
    # runs prepared for other overrides are not older versions of these
    assert Kit(kit_dir, tmp_path / "work", {**overrides, "seed": 1}).outdated("repa") is None
    assert Kit(kit_dir, tmp_path / "work", {**overrides, "seed": 1}).outdated("vanilla") is None


@pytest.mark.slow
def test_a_read_only_kit_folder_is_read_and_new_runs_go_to_the_work_folder(prepared, tmp_path, monkeypatch):
    from repae_lab.workshop import Kit, kit as kit_module

    kit_dir, overrides, _, _ = prepared
    monkeypatch.setattr(kit_module, "writable", lambda folder: Path(folder) != kit_dir)
    kit = Kit(kit_dir, tmp_path / "work", overrides, progress=False)
    assert kit.run("vanilla").parent == kit_dir and kit.probes("vanilla").steps == [0, 3, 6]
    other = Kit(kit_dir, tmp_path / "work", {**overrides, "steps": 3, "eval_every": 0}, progress=False)
    assert other.run("vanilla").parent == tmp_path / "work"
    # a shared copy without its probes: a clear error, not a traceback from deep inside
    import shutil

    from repae_lab.rundir import RunError

    copy = tmp_path / "copied-run"
    shutil.copytree(kit.run("vanilla"), copy, ignore=shutil.ignore_patterns("probes"))

    def read_only(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(kit_module, "probe_run", read_only)
    with pytest.raises(RunError, match="workshop prepare"):
        kit.probes(copy)


@pytest.mark.slow
def test_train_live_refreshes_the_view_while_training(prepared, tmp_path):
    from repae_lab.workshop import Kit

    _, overrides, _, _ = prepared
    seen = []

    class View:
        def __init__(self, run):
            assert (Path(run) / "config.json").is_file()
            seen.append("built")

        def refresh(self):
            seen.append("refresh")

    kit = Kit(tmp_path / "kit", tmp_path / "work", {**overrides, "eval_every": 0}, progress=False, log=lambda m: None)
    run = kit.train_live("e2e-diffusion", view=View)
    assert run.parent == tmp_path / "work" and run.name.endswith("-live")
    assert seen[0] == "built" and seen.count("refresh") >= 5            # every logged step, then once at the end
    seen.clear()
    kit.train_live("e2e-diffusion", view=View)                          # done: shown once, not retrained
    assert seen == ["built"]


def _execute(notebook, out, parameters, cwd):
    import papermill as pm

    pm.execute_notebook(str(NOTEBOOKS / notebook), str(out), parameters=parameters, cwd=str(cwd),
                        progress_bar=False, kernel_name="python3")
    return _read_executed(out, notebook)


def _read_executed(path, notebook):
    """The executed notebook and its code cells' outputs, none of them an error."""
    import nbformat

    nb = nbformat.read(str(path), as_version=4)
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"], notebook
    return nb, outputs


def _text(outputs) -> str:
    parts = []
    for o in outputs:
        parts.append(o.get("text", ""))
        parts.extend(str(v) for k, v in o.get("data", {}).items() if k.startswith("text/"))
    return "\n".join(parts)


CHECKED = {"2_interpolant_and_velocity": 1, "3_repa_loss": 1, "4_collapse": 1, "5_gradient_routing": 1}


@pytest.mark.slow
def test_every_kit_notebook_runs_under_papermill_with_the_solutions(prepared, tmp_path):
    """Each notebook on its own work folder (a learner may open any of them first), two at a time: a notebook
    is mostly its kernel's start-up, one process each."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    import papermill as pm

    from repae_lab.notebooks.sweeps import share_the_cores

    kit_dir, overrides, _, _ = prepared
    names = sorted(p.stem for p in NOTEBOOKS.glob("*.ipynb"))
    assert len(names) == 7
    with ProcessPoolExecutor(max_workers=2, mp_context=multiprocessing.get_context("spawn"),
                             initializer=share_the_cores, initargs=(2,)) as pool:
        running = {}
        for name in names:
            params = {"fill_solutions": True, "kit_dir": str(kit_dir), "work_dir": str(tmp_path / "work" / name),
                      "overrides": overrides}
            if name == "4_collapse":
                params["live"] = True                                   # trains its own copy, tiny
            # a process each: papermill changes the working directory of the process it runs in
            running[name] = pool.submit(pm.execute_notebook, str(NOTEBOOKS / f"{name}.ipynb"),
                                        str(tmp_path / f"{name}.ipynb"), parameters=params, cwd=str(tmp_path),
                                        progress_bar=False, kernel_name="python3")
        for name in names:
            running[name].result()
    for name in names:
        nb, outputs = _read_executed(tmp_path / f"{name}.ipynb", name)
        text = _text(outputs)
        assert text.count("✓") >= CHECKED.get(name, 0) and "✗" not in text, (name, text[:2000])
        assert sum("application/vnd.plotly.v1+json" in o.get("data", {}) for o in outputs) >= 1, name
        # the notebook's cells are short (STYLE: 1-5 lines, a few up to 8 for exercise stubs)
        code = [c for c in nb.cells if c.cell_type == "code" and "injected-parameters" not in c.metadata.get("tags", [])]
        assert max(len(c.source.splitlines()) for c in code) <= 12, name


@pytest.mark.slow
@pytest.mark.parametrize("name, says", [        # the two whose later cells use the learner's functions
    ("4_collapse", "✗ collapse_reading: collapsed is not written yet"),
    ("5_gradient_routing", "✗ gradient_routing: vae_update_loss is not written yet"),
])
def test_an_unsolved_notebook_runs_through_and_says_what_is_missing(prepared, tmp_path, name, says):
    kit_dir, overrides, _, _ = prepared
    params = {"kit_dir": str(kit_dir), "work_dir": str(tmp_path / "work"), "overrides": overrides}
    if name == "4_collapse":
        params["live"] = False
    _, outputs = _execute(f"{name}.ipynb", tmp_path / f"{name}.ipynb", params, tmp_path)
    assert says in _text(outputs)
