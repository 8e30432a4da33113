"""Notebook parameters: the check a notebook runs on them in its first cell, and what `repae-lab run-notebook` /
`repae-lab sweep` read from a notebook's parameters cell before they start a kernel.

A notebook's `parameters` cell holds literals only, one per line, each with a trailing comment (papermill
--help-notebook lists them). The next cell calls

    check(globals(), steps=at_least(1), recipe=one_of(*RECIPES), runs=list_of(run_dir), overrides=dict)

which stops with one line that names the parameter and what it accepts: a wrong type (`-p steps abc`), an
unknown value (`-p recipe repae`), a string where a list is meant (`-p runs runs/x`), or a parameter the notebook
does not have (`-p step 50`, which papermill itself only warns about).
"""
from __future__ import annotations

import ast
import difflib
import json
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import yaml

# the first line of the cell papermill injects with the values it was given
INJECTED_HEADER = "# Parameters"


class ParameterError(ValueError):
    """A notebook parameter is wrong; the message names it and what it accepts."""

    def _render_traceback_(self) -> list[str]:
        # IPython shows this instead of a traceback: the problem is the input, not the code
        return [f"{type(self).__name__}: {self}"]


def _suggest(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.5)
    return f" Did you mean '{close[0]}'?" if close else ""


def _show(value: Any) -> str:
    return f"{value!r} (a {type(value).__name__})"


class NotebookError(RuntimeError):
    """A notebook step cannot go on (a wrong config key, a run folder that holds another run, a failed launch);
    shown as one line in the notebook, like ParameterError."""

    def _render_traceback_(self) -> list[str]:
        return [f"{type(self).__name__}: {self}"]


class Spec:
    """What a parameter accepts: `describe` for messages, `test(name, value)` raising ParameterError."""

    def __init__(self, describe: str, test: Callable[[str, Any], None], example: str = "VALUE"):
        self.describe, self.test, self.example = describe, test, example

    def __call__(self, name: str, value: Any) -> None:
        self.test(name, value)


def _type_spec(kind: type) -> Spec:
    names = {int: "an int", float: "a number", bool: "True or False", str: "a string", dict: "a dict",
             list: "a list"}
    examples = {int: "40", float: "1.5", bool: "True", str: "text", dict: '"{key: value}"', list: '"[a, b]"'}

    def test(name, value):
        ok = isinstance(value, kind) and not (kind in (int, float) and isinstance(value, bool))
        if kind is float:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not ok:
            raise ParameterError(f"parameter '{name}' must be {names.get(kind, kind.__name__)} "
                                 f"(e.g. -p {name} {examples.get(kind, 'VALUE')}), got {_show(value)}.")
    return Spec(names.get(kind, kind.__name__), test, examples.get(kind, "VALUE"))


def spec_of(spec: Spec | type) -> Spec:
    return spec if isinstance(spec, Spec) else _type_spec(spec)


def one_of(*choices: Any) -> Spec:
    """A value from a fixed set (a recipe, a preset, a sampler)."""
    listed = ", ".join(map(str, choices))

    def test(name, value):
        if value not in choices:
            raise ParameterError(f"parameter '{name}' must be one of {listed}; got {value!r}."
                                 f"{_suggest(value, choices) if isinstance(value, str) else ''}")
    return Spec(f"one of {listed}", test, str(choices[0]) if choices else "VALUE")


def at_least(low: int | float, kind: type = int) -> Spec:
    """An int (or number, kind=float) of at least `low`."""
    base = _type_spec(kind)

    def test(name, value):
        base(name, value)
        if value < low:
            raise ParameterError(f"parameter '{name}' must be at least {low}, got {value!r}.")
    return Spec(f"{base.describe} >= {low}", test, str(max(low, 1) if kind is int else low))


def between(low: float, high: float) -> Spec:
    """A number in [low, high]."""
    base = _type_spec(float)

    def test(name, value):
        base(name, value)
        if not low <= value <= high:
            raise ParameterError(f"parameter '{name}' must lie between {low} and {high}, got {value!r}.")
    return Spec(f"a number in [{low}, {high}]", test, str(high))


def optional(spec: Spec | type) -> Spec:
    """None, or what `spec` accepts."""
    inner = spec_of(spec)

    def test(name, value):
        if value is not None:
            inner(name, value)
    return Spec(f"None or {inner.describe}", test, inner.example)


def _run_dir_test(name: str, value: Any) -> None:
    if not isinstance(value, (str, Path)):
        raise ParameterError(f"parameter '{name}' must be the path of a run directory, got {_show(value)}.")
    path = Path(value)
    if not (path / "config.json").is_file():
        what = "does not exist" if not path.exists() else "is not a run directory (no config.json)"
        raise ParameterError(f"parameter '{name}': '{value}' {what}; pass a folder written by `repae-lab train "
                             f"--out` (or notebook 01).")


run_dir = Spec("a run directory", _run_dir_test, "runs/NAME")


def list_of(item: Spec | type, *, min_len: int = 1, max_len: int | None = None) -> Spec:
    """A list of items (a bare string is refused: it would be looped over letter by letter)."""
    inner = spec_of(item)
    what = f"a list, each item {inner.describe}"

    def test(name, value):
        if isinstance(value, str):
            raise ParameterError(
                f"parameter '{name}' must be {what}; got the string {value!r}. Pass a list: papermill "
                f"-y \"{name}: [{value}]\", or repae-lab run-notebook -p {name} \"[{value}]\".")
        if not isinstance(value, (list, tuple)):
            raise ParameterError(f"parameter '{name}' must be {what} (e.g. -p {name} \"[{inner.example}]\"), "
                                 f"got {_show(value)}.")
        if len(value) < min_len or (max_len is not None and len(value) > max_len):
            size = f"{min_len} to {max_len}" if max_len is not None else f"at least {min_len}"
            raise ParameterError(f"parameter '{name}' needs {size} items, got {len(value)}.")
        for i, v in enumerate(value):
            inner(f"{name}[{i}]", v)
    return Spec(what, test, f"[{inner.example}]")


def injected_names(history: list[str] | None) -> list[str]:
    """The names assigned in the newest cell papermill injected (IPython's input history `_ih`)."""
    for source in reversed(history or []):
        if source.lstrip().startswith(INJECTED_HEADER):
            try:
                tree = ast.parse(source)
            except SyntaxError:
                return []
            names = []
            for node in tree.body:
                targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
                names += [t.id for t in targets if isinstance(t, ast.Name)]
            return names
    return []


def check(namespace: Mapping[str, Any], **specs: Spec | type) -> None:
    """Check every parameter in `namespace` (a notebook's globals()) against its spec, and that papermill was
    given no parameter the notebook lacks. Raises ParameterError (shown as one line) on the first problem."""
    unknown = [n for n in injected_names(namespace.get("_ih")) if n not in specs]
    if unknown:
        raise ParameterError(f"this notebook has no parameter '{unknown[0]}'.{_suggest(unknown[0], specs)} "
                             f"Its parameters: {', '.join(specs)}.")
    for name, spec in specs.items():
        if name not in namespace:
            raise ParameterError(f"parameter '{name}' is not set; the parameters cell must define it.")
        spec_of(spec)(name, namespace[name])


# ---------------------------------------------------------------------------------------------------------
# reading a notebook's parameters without running it (run-notebook and sweep)

TYPE_NAMES = {"int": int, "float": float, "bool": bool, "str": str, "list": list, "dict": dict}


def notebook_parameters(notebook: str | Path) -> dict[str, dict[str, Any]]:
    """{name: {"type": type or None, "default": value, "help": text}} from the notebook's parameters cell
    (papermill's inspection; the type from the annotation, else from the literal default)."""
    import papermill as pm    # the optional notebook extra; a notebook's own check() runs without it

    path = Path(notebook)
    if not path.is_file():
        raise ParameterError(f"notebook '{notebook}' does not exist; pass the path of an .ipynb file, e.g. "
                             f"notebooks/01_train_a_run.ipynb.")
    try:
        inspected = pm.inspect_notebook(str(path))
    except Exception as err:          # an unreadable file: say so without papermill's traceback
        raise ParameterError(f"could not read the parameters of '{notebook}': {err}") from None
    out = {}
    for name, info in inspected.items():
        try:
            default = ast.literal_eval(info["default"])
        except (ValueError, SyntaxError):
            default = info["default"]
        kind = TYPE_NAMES.get(info.get("inferred_type_name"))
        if kind is None and default is not None:
            kind = type(default) if type(default) in TYPE_NAMES.values() else None
        if kind is tuple:
            kind = list
        out[name] = {"type": kind, "default": default, "help": info.get("help", "")}
    return out


def parse_value(text: str, expected: type | None) -> Any:
    """A command-line value for a parameter: kept as text where a string is expected, else read as YAML
    (40 -> int, 1.5 -> float, true -> bool, [a, b] -> list, {k: v} -> dict)."""
    if expected is str:
        return text

    try:
        return yaml.safe_load(text) if text.strip() else text
    except yaml.YAMLError:
        return text


def check_types(parameters: Mapping[str, dict[str, Any]], given: Mapping[str, Any], notebook: str = "") -> None:
    """Refuse names the notebook lacks and values of the wrong type, before any kernel starts."""
    where = f"notebook '{notebook}'" if notebook else "the notebook"
    for name, value in given.items():
        if name not in parameters:
            raise ParameterError(f"{where} has no parameter '{name}'.{_suggest(name, parameters)} "
                                 f"Its parameters: {', '.join(parameters) or 'none'}.")
        kind = parameters[name]["type"]
        if kind is None:
            continue
        if kind is list and isinstance(value, str):
            raise ParameterError(f"parameter '{name}' of {where} must be a list (default "
                                 f"{json.dumps(parameters[name]['default'])}), got the string {value!r}; pass "
                                 f"-p {name} \"[{value}]\".")
        ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
        if kind is float:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if kind is list:
            ok = isinstance(value, (list, tuple))
        if not ok:
            default = json.dumps(parameters[name]["default"])
            raise ParameterError(f"parameter '{name}' of {where} must be {kind.__name__} (default {default}), "
                                 f"got {_show(value)}.")


def describe_parameters(parameters: Mapping[str, dict[str, Any]]) -> str:
    """One line per parameter: name, type, default, help (what --help-notebook shows)."""
    lines = []
    for name, info in parameters.items():
        kind = info["type"].__name__ if info["type"] else "any"
        lines.append(f"  {name}: {kind} = {json.dumps(info['default'])}  {info['help']}".rstrip())
    return "\n".join(lines)
