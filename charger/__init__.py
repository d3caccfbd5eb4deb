"""charger: an operating system for EV chargers and charging parks, built on supervised actors."""

from charger.behaviour import Behaviour, Pending, Timer, handles
from charger.errors import BadRequest, CallError, CallTimeout, Rejected, RemoteCrash, Unavailable
from charger.interfaces import Command, ErrorDef, Interface, Requirement, Severity
from charger.messages import DecodeError, message

__all__ = [
    "BadRequest",
    "Behaviour",
    "CallError",
    "CallTimeout",
    "Command",
    "DecodeError",
    "ErrorDef",
    "Interface",
    "Pending",
    "Rejected",
    "RemoteCrash",
    "Requirement",
    "Severity",
    "Timer",
    "Unavailable",
    "handles",
    "message",
]

__version__ = "0.1.0"
