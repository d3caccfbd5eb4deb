"""How the simulated CSMS answers: the configurable replies, and faults planned for the next requests.

`CsmsBehaviour` is a value: the simulator reads the current one at every request, so a test swaps it
(`dataclasses.replace`) between two boots to go from Pending to Accepted. `FaultPlan` holds faults for the
next N requests of an action: a CALLERROR (the "failure to process" that makes a charge point resend a
transaction message, OCPP 1.6 §3.7.1) or no answer at all (a lost reply, so the charge point times out).
"""

from __future__ import annotations

import enum
import itertools
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

__all__ = ["CP_INITIATED_ACTIONS", "CsmsBehaviour", "Fault", "FaultKind", "FaultPlan", "TransactionIds"]

CP_INITIATED_ACTIONS = (
    "Authorize",
    "BootNotification",
    "DataTransfer",
    "DiagnosticsStatusNotification",
    "FirmwareStatusNotification",
    "Heartbeat",
    "LogStatusNotification",
    "MeterValues",
    "SecurityEventNotification",
    "SignCertificate",
    "SignedFirmwareStatusNotification",
    "StartTransaction",
    "StatusNotification",
    "StopTransaction",
)
"""Every action a 1.6 charge point (with the security whitepaper) may send; the simulator answers all."""

_REGISTRATION = ("Accepted", "Pending", "Rejected")
_AUTHORIZATION = ("Accepted", "Blocked", "Expired", "Invalid", "ConcurrentTx")
_DATA_TRANSFER = ("Accepted", "Rejected", "UnknownMessageId", "UnknownVendorId")
_GENERIC = ("Accepted", "Rejected")


@dataclass(frozen=True, slots=True, kw_only=True)
class CsmsBehaviour:
    """The answers the CSMS gives; wire spellings of the OCPP 1.6 enumerations."""

    boot_status: str = "Accepted"
    """RegistrationStatus answered to every BootNotification."""
    boot_interval: int = 300
    """Heartbeat interval when Accepted; when to boot again when Pending or Rejected (seconds)."""
    id_tags: Mapping[str, str] = field(default_factory=dict)
    """AuthorizationStatus per idTag, used by Authorize, StartTransaction and StopTransaction."""
    default_id_tag_status: str = "Accepted"
    """Status of an idTag not in `id_tags`."""
    data_transfer_status: str = "Accepted"
    sign_certificate_status: str = "Accepted"

    def __post_init__(self) -> None:
        _check("boot_status", self.boot_status, _REGISTRATION)
        _check("default_id_tag_status", self.default_id_tag_status, _AUTHORIZATION)
        for tag, status in self.id_tags.items():
            _check(f"id_tags[{tag!r}]", status, _AUTHORIZATION)
        _check("data_transfer_status", self.data_transfer_status, _DATA_TRANSFER)
        _check("sign_certificate_status", self.sign_certificate_status, _GENERIC)
        if self.boot_interval < 0:
            raise ValueError(f"boot_interval must be >= 0, not {self.boot_interval}")

    def id_tag_status(self, id_tag: str) -> str:
        return self.id_tags.get(id_tag, self.default_id_tag_status)


def _check(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)}, not {value!r}")


class TransactionIds:
    """Transaction ids handed out by StartTransaction: increasing, across every charge point."""

    def __init__(self, first: int = 1) -> None:
        self._ids: Iterator[int] = itertools.count(first)

    def next(self) -> int:
        return next(self._ids)


class FaultKind(enum.Enum):
    CALL_ERROR = "call_error"
    """Answer with a CALLERROR carrying `Fault.error_code`."""
    NO_ANSWER = "no_answer"
    """Read the request and never answer it."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Fault:
    kind: FaultKind
    error_code: str = "InternalError"


class FaultPlan:
    """Faults queued per action; each request of that action consumes one."""

    def __init__(self) -> None:
        self._queued: dict[str, deque[Fault]] = {}

    def add(self, action: str, fault: Fault, times: int = 1) -> None:
        if times < 1:
            raise ValueError(f"times must be >= 1, not {times}")
        self._queued.setdefault(action, deque()).extend([fault] * times)

    def take(self, action: str) -> Fault | None:
        queued = self._queued.get(action)
        return queued.popleft() if queued else None

    def clear(self) -> None:
        self._queued.clear()
