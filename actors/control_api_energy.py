"""The control API's energy-manager methods: the plan, session needs, node caps and forecasts."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Generator
from typing import Any

from charger.actors.charging import GetEnergyPlan, SetEnergyForecast, SetNodeCap, SetSessionNeed
from charger.actors.control_api import _CONNECTOR, ControlApi, RpcError, _evse, _ok, rpc
from charger.protocols import jsonrpc

from charger.behaviour import Pending

__all__ = ["energy_cap", "energy_forecast", "energy_plan", "energy_session"]


@rpc("energy.plan")
def energy_plan(api: ControlApi, params: dict[str, Any]) -> Generator[Pending, Any, dict[str, Any]]:
    """The energy manager's last decision: why each EVSE got what it got, the limits per node, the schedule."""
    plan = yield api.call(_energy(api), GetEnergyPlan(), timeout=5.0)
    return dataclasses.asdict(plan)


@rpc(
    "energy.session",
    {
        "required": ["connector"],
        "properties": {
            **_CONNECTOR,
            "energy_kwh": {"type": ["number", "null"], "minimum": 0},
            "departure": {"type": ["number", "null"], "description": "Unix seconds"},
        },
    },
)
def energy_session(api: ControlApi, params: dict[str, Any]) -> Generator[Pending, Any, dict[str, bool]]:
    """The energy the car at a connector still wants and when it leaves (both absent: unknown again)."""
    msg = SetSessionNeed(
        evse=_evse(api, params), energy_kwh=params.get("energy_kwh"), departure=params.get("departure")
    )
    return (yield from _ok(api, _energy(api), msg))


@rpc(
    "energy.cap",
    {
        "required": ["node"],
        "properties": {
            "node": {"type": "string", "minLength": 1},
            "amps": {"type": ["number", "null"], "minimum": 0},
            "kw": {"type": ["number", "null"], "minimum": 0},
            "valid_until": {"type": ["number", "null"], "description": "Unix seconds; absent: until replaced"},
            "source": {"type": "string", "minLength": 1},
        },
    },
)
def energy_cap(api: ControlApi, params: dict[str, Any]) -> Generator[Pending, Any, dict[str, bool]]:
    """A grid-operator cap on a node (A per phase and/or kW); neither amps nor kw: the cap is lifted."""
    msg = SetNodeCap(
        node=params["node"],
        amps=params.get("amps"),
        kw=params.get("kw"),
        valid_until=params.get("valid_until"),
        source=params.get("source", "api"),
    )
    return (yield from _ok(api, _energy(api), msg))


@rpc(
    "energy.forecast",
    {
        "properties": {
            "starts_at": {"type": "number", "description": "Unix seconds; absent: now"},
            "prices": {"type": "array", "items": {"type": "number"}, "minItems": 1},
            "pv_surplus_kw": {"type": "array", "items": {"type": "number", "minimum": 0}, "minItems": 1},
        },
    },
)
def energy_forecast(api: ControlApi, params: dict[str, Any]) -> Generator[Pending, Any, dict[str, bool]]:
    """Prices and/or PV surplus per slot from `starts_at`, over the configured daily profile."""
    msg = SetEnergyForecast(
        starts_at=params.get("starts_at", time.time()),
        prices=params.get("prices"),
        pv_surplus_kw=params.get("pv_surplus_kw"),
    )
    return (yield from _ok(api, _energy(api), msg))


def _energy(api: ControlApi) -> str:
    managers = api.connections.get("energy", [])
    if not managers:
        raise RpcError(jsonrpc.INVALID_PARAMS, "no energy manager is wired to the control API")
    return str(managers[0])
