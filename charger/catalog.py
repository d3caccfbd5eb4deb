"""Finding actor types by name: the built-ins, plus any installed package's ``charger.actors`` entry points.

An integrator's package declares, in its own setup.cfg::

    [options.entry_points]
    charger.actors =
        MyMeter = my_package.meter:MyMeter

and `MyMeter` can then be used as a ``type:`` in any topology, without editing charger.
A topology may also name a class directly as ``module:Class``.
"""

from __future__ import annotations

import functools
import importlib
import logging
from importlib.metadata import entry_points

from charger.behaviour import Behaviour

__all__ = ["BUILTIN_ACTOR_TYPES", "ENTRY_POINT_GROUP", "UnknownActorType", "actor_types", "load_actor_type"]

ENTRY_POINT_GROUP = "charger.actors"
_log = logging.getLogger(__name__)

BUILTIN_ACTOR_TYPES: dict[str, str] = {
    "Ticker": "charger.actors.ticker:Ticker",
    "Counter": "charger.actors.counter:Counter",
    "ControlApi": "charger.actors.control_api:ControlApi",
    "EvseManager": "charger.actors.evse_manager:EvseManager",
    "BoardDriver": "charger.actors.board:BoardDriver",
    "PowerMeter": "charger.actors.powermeter:PowerMeter",
    "CardReader": "charger.actors.card_reader:CardReader",
    "Auth": "charger.actors.auth:Auth",
    "LoadShare": "charger.actors.load_share:LoadShare",
    "SilRig": "charger.actors.sil_rig:SilRig",
    "CardReaderSim": "charger.actors.card_reader_sim:CardReaderSim",
    "EnergyManager": "charger.actors.energy_manager:EnergyManager",
    "BackendLink": "charger.actors.backend_link:BackendLink",
    "CsmsSim": "charger.actors.csms_sim:CsmsSim",
}


class UnknownActorType(LookupError):
    """No built-in, entry point or importable class has that name; the message says what was tried."""


@functools.cache
def actor_types() -> dict[str, str]:
    """Every known actor type name -> ``module:Class``. A plugin cannot shadow a built-in."""
    found = dict(BUILTIN_ACTOR_TYPES)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in BUILTIN_ACTOR_TYPES:
            _log.warning("ignoring plugin actor type %r (%s): a built-in has that name", ep.name, ep.value)
            continue
        found.setdefault(ep.name, ep.value)
    return found


def load_actor_type(name: str) -> type[Behaviour]:
    """Import the `Behaviour` subclass for a type name or a ``module:Class`` path."""
    path = name if ":" in name else actor_types().get(name)
    if path is None:
        known = ", ".join(sorted(actor_types()))
        raise UnknownActorType(f"unknown actor type {name!r} (known: {known})")
    module, _, qualname = path.partition(":")
    try:
        obj: object = importlib.import_module(module)
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except Exception as exc:  # noqa: BLE001 - whatever a user's module raises on import is a bad type name to us
        raise UnknownActorType(f"actor type {name!r}: cannot import {path}: {type(exc).__name__}: {exc}") from None
    if not (isinstance(obj, type) and issubclass(obj, Behaviour)):
        raise UnknownActorType(f"actor type {name!r}: {path} is not a charger Behaviour")
    return obj
