"""The configuration layer: what a run is (schema), its named starting points (presets), the recipe table,
the SiT sizes, and how a Config is resolved and checked. Nothing here imports the rest of the library."""
from .presets import PRESETS
from .recipes import RECIPES, Recipe, Routing, routing
from .inputs import ConfigError, load_yaml, parse_overrides
from .resolve import apply_overrides, config_from_dict, resolve_config
from .resume import RESUME_SAFE_KEYS, resume_config
from .schema import FIELD_NAMES, FIELD_TYPES, Config
from .sizes import SIT_SIZES

__all__ = ["Config", "ConfigError", "FIELD_NAMES", "FIELD_TYPES", "PRESETS", "RECIPES", "Recipe", "Routing",
           "RESUME_SAFE_KEYS", "SIT_SIZES", "apply_overrides", "config_from_dict", "load_yaml", "parse_overrides", "resolve_config", "resume_config", "routing"]
