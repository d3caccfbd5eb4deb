"""Actor types that exist only for topology tests: their manifests matter, their behaviour does not.

`Ping` and `Pong` require each other's interface, so two of them can be wired into a cycle; `Relay`
provides and requires the same interface, so relays can form cycles of any length; `Tuned` has nested
config defaults and an optional requirement.
"""

from __future__ import annotations

from typing import ClassVar

from charger.actors.ticker import TICKS

from charger.behaviour import Behaviour
from charger.interfaces import Interface, Requirement

PING = Interface(name="ping")
PONG = Interface(name="pong")
RELAY = Interface(name="relay")


class Ping(Behaviour):
    provides = {"ping": PING}
    requires = {"peer": Requirement(interface=PONG)}


class Pong(Behaviour):
    provides = {"pong": PONG}
    requires = {"peer": Requirement(interface=PING)}


class Relay(Behaviour):
    provides = {"relay": RELAY}
    requires = {"next": Requirement(interface=RELAY, min_connections=0, max_connections=1)}


class Tuned(Behaviour):
    requires = {"ticks": Requirement(interface=TICKS, min_connections=0, max_connections=2)}
    config_schema: ClassVar = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "label": {"type": "string", "default": "tuned"},
            "limits": {
                "type": "object",
                "default": {},
                "additionalProperties": False,
                "properties": {
                    "max_a": {"type": "integer", "minimum": 6, "default": 16},
                    "phases": {"enum": [1, 3], "default": 3},
                },
            },
        },
    }
