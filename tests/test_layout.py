"""The library's structure (DESIGN.md layers): no import circle, no arrow up a layer, no UI in the library, folders
that list their modules, a command line that starts without the optional packages, and run directories written
before the restructure still load."""
from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
LIB = ROOT / "repae_lab"
FIXTURES = Path(__file__).parent / "fixtures"

# the layers, bottom first; a module may import from its own layer or below, never above
LAYERS = {
    "config": 0, "data": 0, "rundir": 0,
    "models": 1, "losses": 1,
    "training": 2,
    "sampling": 3, "metrics": 3, "probes": 3,
    "evaluation": 4, "tracking": 4,
    "jobs": 5,
    "views": 6,
    "notebooks": 7,
    "experiments": 8,
    "workshop": 9,
    "commands": 10,
    "__main__": 11,
}
UI_MODULES = ("ipywidgets", "widgets", "anywidget")
# folders whose __init__.py docstring names each of their modules at the start of a line of its own
LISTED_FOLDERS = ("models/released", "jobs", "views", "notebooks", "experiments", "commands")
# what the command line must start without: the notebook extra and heavy optional packages (imported where used)
OPTIONAL_PACKAGES = ("plotly", "papermill", "nbformat", "nbconvert", "IPython", "matplotlib", "umap", "numba",
                     "lpips", "timm", "torch_fidelity")


def _modules() -> dict[str, Path]:
    out = {}
    for path in LIB.rglob("*.py"):
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        out[name.removesuffix(".__init__")] = path
    return out


def _imports(name: str, path: Path, modules) -> set[str]:
    """The repae_lab modules `name` imports (any import statement, at any depth of the file)."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            candidates = [base] + [f"{base}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            candidates = [a.name for a in node.names]
        else:
            continue
        found.update(c for c in candidates if c in modules and c != name)
    return found


def _layer(module: str) -> int | None:
    parts = module.split(".")
    return LAYERS.get(parts[1]) if len(parts) > 1 else None


def test_every_library_module_belongs_to_a_layer():
    unplaced = sorted(m for m in _modules() if m != "repae_lab" and _layer(m) is None)
    assert not unplaced, f"modules outside the layer table (add their folder to LAYERS and DESIGN.md): {unplaced}"


def test_no_import_circle_inside_the_library():
    modules = _modules()
    graph = {m: _imports(m, p, modules) for m, p in modules.items()}
    related = lambda a, b: b.startswith(a + ".") or a.startswith(b + ".")   # a package and its own children
    circles, state = [], {}

    def visit(node, stack):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph[node]):
            if related(node, nxt):
                continue
            if state.get(nxt) == "open":
                circles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, stack)
        stack.pop()
        state[node] = "done"

    for m in sorted(graph):
        if m not in state:
            visit(m, [])
    assert not circles, "import circles:\n" + "\n".join(" -> ".join(c) for c in circles)


def test_no_module_imports_from_a_layer_above_its_own():
    modules = _modules()
    upward = []
    for m, p in modules.items():
        own = _layer(m)
        for target in _imports(m, p, modules):
            theirs = _layer(target)
            if own is not None and theirs is not None and theirs > own:
                upward.append(f"{m} (layer {own}) imports {target} (layer {theirs})")
    assert not upward, "arrows up a layer:\n" + "\n".join(sorted(upward))


def test_released_model_loaders_import_only_config_models_and_rundir():
    """models/released sits in layer 1 because it fills the models and reads files, nothing more."""
    modules = _modules()
    allowed = ("repae_lab.config", "repae_lab.models", "repae_lab.rundir")
    wrong = [f"{m} imports {t}" for m in modules if m.startswith("repae_lab.models.released")
             for t in _imports(m, modules[m], modules) if t != "repae_lab" and not t.startswith(allowed)]
    assert not wrong, wrong


@pytest.mark.parametrize("folder", LISTED_FOLDERS)
def test_a_folders_init_lists_its_modules_one_line_each(folder):
    package = LIB / folder
    doc = ast.get_docstring(ast.parse((package / "__init__.py").read_text())) or ""
    first_words = [line.split()[0] for line in doc.splitlines() if line.split()]
    modules = sorted(p.name for p in package.glob("*.py") if p.name != "__init__.py")
    unlisted = [m for m in modules if first_words.count(m) != 1]
    assert not unlisted, (f"repae_lab/{folder}/__init__.py's docstring must name each module once, at the start of "
                          f"a line that says what it does; missing or repeated: {unlisted}")


def test_the_command_line_starts_without_the_optional_packages():
    """`repae-lab --help`, `presets` and the training commands need none of the notebook extra (a GPU host that
    only trains may not have it): the modules that need it import it where it is used."""
    code = ("import sys, repae_lab.commands\n"
            f"print(sorted(k for k in sys.modules if k.split('.')[0] in {OPTIONAL_PACKAGES!r}))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]", out.stdout


def test_the_training_loop_does_not_import_evaluation():
    modules = _modules()
    training = [m for m in modules if m.startswith("repae_lab.training")]
    hits = [(m, t) for m in training for t in _imports(m, modules[m], modules) if t.startswith("repae_lab.evaluation")]
    assert not hits, hits


def test_the_library_never_imports_the_ui():
    static = []
    for path in LIB.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
            static += [f"{path.relative_to(ROOT)}: {n}" for n in names if n.split(".")[0] in UI_MODULES]
            if isinstance(node, ast.Attribute) and node.attr == "FigureWidget":
                static.append(f"{path.relative_to(ROOT)}: FigureWidget")
    assert not static, static
    # and at run time: importing every library module loads no widget package
    code = ("import importlib, pkgutil, sys, repae_lab\n"
            "for m in pkgutil.walk_packages(repae_lab.__path__, 'repae_lab.'):\n"
            "    if not m.name.endswith('__main__'):\n"
            "        importlib.import_module(m.name)\n"
            f"print(sorted(k for k in sys.modules if k.split('.')[0] in {UI_MODULES!r}))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]", out.stdout


def test_a_config_json_written_before_the_restructure_still_loads():
    from repae_lab.config import config_from_dict

    old = json.loads((FIXTURES / "run_format_v1.json").read_text())["config"]
    cfg = config_from_dict(old)
    assert cfg.recipe == "repa-e" and cfg.alignment_depth == old["alignment_depth"] == 2


def test_checkpoints_keep_their_file_and_tensor_names(tiny_config, tmp_path):
    """A run written now has the checkpoint files, tensor names and shapes of one written before the
    restructure (tests/fixtures/run_format_v1.json, the same tiny repa-e run), so old runs resume and sample."""
    from repae_lab.rundir import latest_good_checkpoint
    from repae_lab.training.loop import train
    from safetensors import safe_open

    old = json.loads((FIXTURES / "run_format_v1.json").read_text())
    train(tiny_config("repa-e", steps=2), tmp_path / "run", progress=False)
    ckpt = latest_good_checkpoint(tmp_path / "run")
    now = {}
    for f in sorted(ckpt.glob("*.safetensors")):
        with safe_open(str(f), framework="pt") as h:
            now[f.name] = {k: list(h.get_slice(k).get_shape()) for k in sorted(h.keys())}
    assert now == old["checkpoint_files"]
    state = json.loads((ckpt / "state.json").read_text())
    assert sorted(state) == old["state_json_top_keys"] and sorted(state["optimizers"]) == old["optimizer_names"]


def test_a_run_without_sit_config_json_still_samples_and_resumes(tiny_config, tmp_path):
    """Runs written before sit_config.json existed get their SiT architecture from config.json and the
    checkpoint's shapes."""
    from repae_lab.models.from_run import load_for_sampling
    from repae_lab.sampling import SamplingSpec, generate_images
    from repae_lab.training.loop import train

    run = tmp_path / "run"
    train(tiny_config("repa", steps=2), run, progress=False)
    written = json.loads((run / "sit_config.json").read_text())
    (run / "sit_config.json").unlink()
    loaded = load_for_sampling(run)
    assert loaded.ema.cfg.to_dict() == written
    images = generate_images(loaded.ema, loaded.vae, torch.arange(3), SamplingSpec(sampler="euler", steps=2),
                             progress=False)
    assert images.shape == (3, 1, 16, 16)
    cfg = json.loads((run / "config.json").read_text())
    cfg["steps"] = 3
    (run / "config.json").write_text(json.dumps(cfg))
    assert train(resume=run, progress=False)["steps"] == 3


def test_preset_keys_are_checked_like_user_keys(monkeypatch):
    from repae_lab.config import ConfigError, presets, resolve_config

    monkeypatch.setitem(presets.PRESETS, "broken", dict(presets.PRESETS["workshop"], alignment_dpeth=2))
    with pytest.raises(ConfigError, match=r"unknown config key 'alignment_dpeth' \(from preset broken\).*alignment_depth"):
        resolve_config("broken")


def test_one_recipe_table_drives_validation_step_optimizers_and_flops(tiny_config):
    """Every place that needs to know the recipes reads config/recipes.py."""
    from repae_lab.config import RECIPES, routing
    from repae_lab.training.flops import STEP_KINDS

    assert set(RECIPES) <= set(STEP_KINDS)
    for name, recipe in RECIPES.items():
        route = routing(tiny_config(name))
        assert route.trains_vae == recipe.trains_vae and route.uses_repa == recipe.uses_repa
