"""An actor's config: its type's JSON Schema defaults filled in, then validated.

The topology loader does this before anything starts, with file positions for every problem;
the runtime does it again for configs that arrive any other way (hand-built child specs, tests).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import jsonschema

from charger.behaviour import Behaviour

__all__ = ["InvalidConfig", "checked_config", "fill_defaults"]


class InvalidConfig(ValueError):
    """A config does not match its actor type's schema."""


def fill_defaults(schema: Any, value: Any) -> None:
    """Fill in the ``default`` of every absent property, descending into nested objects."""
    if not isinstance(schema, Mapping) or not isinstance(value, dict):
        return
    properties = schema.get("properties")
    for key, sub in properties.items() if isinstance(properties, Mapping) else ():
        if isinstance(sub, Mapping) and key not in value and "default" in sub:
            value[key] = copy.deepcopy(sub["default"])
        if key in value:
            fill_defaults(sub, value[key])


def checked_config(actor_type: type[Behaviour], config: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of `config` with defaults filled in; raises `InvalidConfig` listing every mismatch."""
    filled = copy.deepcopy(dict(config))
    fill_defaults(actor_type.config_schema, filled)
    errors = [
        f"{'.'.join(map(str, e.absolute_path)) or '(config)'}: {e.message}"
        for e in jsonschema.Draft202012Validator(actor_type.config_schema).iter_errors(filled)
    ]
    if errors:
        raise InvalidConfig(f"bad config for {actor_type.__name__}: " + "; ".join(errors))
    return filled
