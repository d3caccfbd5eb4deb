"""The EnergyManager's configuration: its JSON schema and the tree parts built from it."""

from __future__ import annotations

from typing import Any

from charger.protocols.energy_site import NodeCap
from charger.protocols.limit_tree import Evse, LimitNode

__all__ = ["CONFIG_SCHEMA", "caps_from_config", "evse_from_config", "node_from_config"]

_LIMIT = {
    "oneOf": [
        {"type": "number", "minimum": 0},
        {"type": "array", "items": {"type": "number", "minimum": 0}, "minItems": 3, "maxItems": 3},
    ]
}

CONFIG_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["nodes", "evses"],
    "properties": {
        "nodes": {
            "type": "array",
            "minItems": 1,
            "description": "The supply tree, root first: grid connection, transformers, feeders, fuses.",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["name"],
                "properties": {
                    "name": {"type": "string", "minLength": 1},
                    "parent": {"type": "string"},
                    "current_limit_a": {**_LIMIT, "description": "A per phase: one figure or [L1, L2, L3]."},
                    "power_limit_kw": {"type": "number", "minimum": 0},
                },
            },
        },
        "evses": {
            "type": "object",
            "description": "EVSE manager name -> where it hangs in the tree and what it can draw.",
            "additionalProperties": {
                "type": "object",
                "additionalProperties": False,
                "required": ["node"],
                "properties": {
                    "node": {"type": "string", "minLength": 1},
                    "phases": {"enum": [1, 3], "default": 3},
                    "grid_phase": {"enum": ["L1", "L2", "L3"], "default": "L1"},
                    "min_current_a": {"type": "number", "minimum": 0, "default": 6},
                    "max_current_a": {"type": "number", "exclusiveMinimum": 0, "default": 32},
                },
            },
        },
        "meters": {
            "type": "object",
            "default": {},
            "description": "Site meter (a `meter` connection) -> the node it measures and what.",
            "additionalProperties": {
                "type": "object",
                "additionalProperties": False,
                "required": ["node", "measures"],
                "properties": {
                    "node": {"type": "string", "minLength": 1},
                    "measures": {
                        "enum": ["grid", "load", "pv"],
                        "description": "grid: all through the node, EVs included; load: non-EV only; pv: production.",
                    },
                },
            },
        },
        "caps": {
            "type": "object",
            "default": {},
            "description": "Node -> a standing external cap (e.g. a grid-operator contract below the rating).",
            "additionalProperties": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "current_limit_a": {"type": "number", "minimum": 0},
                    "power_limit_kw": {"type": "number", "minimum": 0},
                },
            },
        },
        "slot_minutes": {"type": "number", "exclusiveMinimum": 0, "default": 15},
        "horizon_slots": {"type": "integer", "minimum": 1, "maximum": 672, "default": 96},
        "prices": {
            "type": "array",
            "items": {"type": "number"},
            "minItems": 1,
            "default": [0.3],
            "description": "Price per kWh per slot from local midnight, repeated (one figure: flat).",
        },
        "pv_surplus_kw": {
            "type": "array",
            "items": {"type": "number", "minimum": 0},
            "minItems": 1,
            "default": [0.0],
            "description": "PV surplus forecast, kW per slot from local midnight, repeated; live meters correct now.",
        },
        "energy_value_per_kwh": {
            "type": "number",
            "exclusiveMinimum": 0,
            "default": 10.0,
            "description": "What a delivered kWh is worth: slots priced above it are used only with PV surplus.",
        },
        "variant": {"enum": ["lp", "qp"], "default": "lp"},
        "time_budget_s": {"type": "number", "minimum": 0, "default": 2.0},
        "period_s": {"type": "number", "exclusiveMinimum": 0, "default": 60},
        "lease_periods": {"type": "number", "minimum": 1, "default": 3, "description": "Lease validity."},
        "resolve_deviation_a": {
            "type": "number",
            "minimum": 0,
            "default": 2.0,
            "description": "Decide again when a node's non-EV current moved more than this since the last decision.",
        },
        "resolve_deviation_kw": {
            "type": "number",
            "minimum": 0,
            "default": 1.0,
            "description": "Decide again when the live PV surplus moved more than this since the last decision.",
        },
    },
}


def node_from_config(entry: dict[str, Any]) -> LimitNode:
    value = entry.get("current_limit_a")
    limits = (value[0], value[1], value[2]) if isinstance(value, list) else value
    return LimitNode(
        name=entry["name"],
        parent=entry.get("parent"),
        current_limit_a=limits,
        power_limit_kw=entry.get("power_limit_kw"),
    )


def evse_from_config(name: str, entry: dict[str, Any]) -> Evse:
    return Evse(
        name=name,
        parent=entry["node"],
        phases=entry.get("phases", 3),
        grid_phase=entry.get("grid_phase", "L1"),
        min_current_a=entry.get("min_current_a", 6.0),
        max_current_a=entry.get("max_current_a", 32.0),
    )


def caps_from_config(caps: dict[str, dict[str, float]]) -> dict[str, NodeCap]:
    return {
        node: NodeCap(amps=c.get("current_limit_a"), kw=c.get("power_limit_kw"), source="config")
        for node, c in caps.items()
    }
