"""The configuration layer: what a run is (schema), its named starting points (presets), the recipe table,
the SiT sizes, and how a Config is resolved and checked. Nothing here imports the rest of the library."""
from .presets import PRESETS
from .recipes import RECIPES, Recipe, Routing, routing
from .resolve import ConfigError, config_from_dict, load_yaml, parse_overrides, resolve_config
from .schema import FIELD_NAMES, FIELD_TYPES, Config
from .sizes import SIT_SIZES

__all__ = ["Config", "ConfigError", "FIELD_NAMES", "FIELD_TYPES", "PRESETS", "RECIPES", "Recipe", "Routing",
           "SIT_SIZES", "config_from_dict", "load_yaml", "parse_overrides", "resolve_config", "routing"]
