"""What a user hands the configuration: a YAML file of key: value lines and `key=value` strings from the command
line. Both are read strictly: a folder, a binary file, a repeated key or a malformed override is an error that
names the problem and the fix."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    """A configuration key or value a user supplied is wrong; the message says which and how to fix it."""


class _StrictLoader(yaml.SafeLoader):
    """yaml.safe_load, except that a key given twice is an error (YAML keeps the last one silently)."""


def _strict_mapping(loader, node, deep=False):
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise ConfigError(f"key '{key}' appears twice (line {key_node.start_mark.line + 1}); keep one of them.")
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _strict_mapping)


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"config file '{path}' is a folder; pass the path of a YAML file of key: value lines.")
    if not path.is_file():
        raise ConfigError(f"config file '{path}' does not exist; pass the path of a YAML file of key: value lines.")
    try:
        text = path.read_text()
    except UnicodeDecodeError:
        raise ConfigError(f"config file '{path}' is not a text file; pass a YAML file of key: value lines.") from None
    try:
        data = yaml.load(text, Loader=_StrictLoader) or {}
    except ConfigError as err:
        raise ConfigError(f"config file '{path}': {err}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"config file '{path}' is not valid YAML: {str(err).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file '{path}' must hold a mapping of key: value lines, not a {type(data).__name__}.")
    return data


def parse_overrides(items: list[str] | None) -> dict[str, str]:
    """`key=value` strings from the command line (`--set a=1 --set b=2` and `--set a=1 b=2` alike); a key given
    twice is an error, since only one of the two values could win."""
    out: dict[str, str] = {}
    for item in items or []:
        if "=" not in item:
            raise ConfigError(f"override '{item}' must look like key=value, e.g. steps=1000.")
        key, value = (part.strip() for part in item.split("=", 1))
        if key in out:
            raise ConfigError(f"--set {key} is given twice ({out[key]!r} and {value!r}); give it once.")
        out[key] = value
    return out
