"""OCPP 1.6 transactions and connector control, decided without I/O (pure): the StartTransaction and
StopTransaction payloads, stop reasons, which connector takes a remote start, and ChangeAvailability.

meterStart and meterStop are the meter register in whole Wh (OCPP integers), taken from the values the
EVSE manager billed with, so ``meterStop - meterStart`` is the billed energy rounded at both ends.

ChangeAvailability (OCPP 1.6 §5.2): taking a connector that runs a transaction out of service is
Scheduled and done when the transaction ends; everything else is done at once (Accepted), or refused
(Rejected) when the connector does not exist or cannot change. Connector 0 means the whole station.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from charger.protocols.ocpp_local_auth import ID_TAG_MAX_LENGTH
from charger.protocols.ocpp_meter import ocpp_time

__all__ = [
    "OCPP16_STOP_REASONS",
    "TAKES_REMOTE_START",
    "AvailabilityPlan",
    "AvailabilityStatus",
    "AvailabilityType",
    "id_tag_of",
    "ocpp_stop_reason",
    "plan_availability",
    "remote_start_target",
    "start_transaction_payload",
    "stop_transaction_payload",
]

OCPP16_STOP_REASONS = frozenset(
    {
        "DeAuthorized",
        "EmergencyStop",
        "EVDisconnected",
        "HardReset",
        "Local",
        "Other",
        "PowerLoss",
        "Reboot",
        "Remote",
        "SoftReset",
        "UnlockCommand",
    }
)
"""OCPP 1.6 §7.42 Reason; the EVSE manager's other reasons (OCPP 2.0.1's) are reported as Other."""

TAKES_REMOTE_START = frozenset({"Idle", "WaitingForAuthentication"})
"""EVSE manager states in which a connector can take a new authorization."""


def ocpp_stop_reason(reason: str | None) -> str:
    return reason if reason in OCPP16_STOP_REASONS else "Other"


def id_tag_of(token_id: str | None) -> tuple[str, str | None]:
    """The idTag to report for a session's token, and why it differs from the token (None: it does not).

    idTag is required and at most 20 characters (IdToken); a session without a token (an EVSE manager
    that authorizes on its own) is reported as ``"UNKNOWN"``."""
    if not token_id:
        return "UNKNOWN", "the session has no token"
    if len(token_id) > ID_TAG_MAX_LENGTH:
        return token_id[:ID_TAG_MAX_LENGTH], f"token is longer than {ID_TAG_MAX_LENGTH} characters"
    return token_id, None


def _wh(value: float | None) -> int:
    return 0 if value is None else round(value)


def start_transaction_payload(
    connector_id: int, id_tag: str, meter_start_wh: float | None, at: float
) -> dict[str, Any]:
    return {"connectorId": connector_id, "idTag": id_tag, "meterStart": _wh(meter_start_wh), "timestamp": ocpp_time(at)}


def stop_transaction_payload(
    meter_stop_wh: float | None, at: float, reason: str | None, transaction_data: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """Without transactionId: the persistent queue fills it in once StartTransaction.conf brought it."""
    payload: dict[str, Any] = {"meterStop": _wh(meter_stop_wh), "timestamp": ocpp_time(at)}
    payload["reason"] = ocpp_stop_reason(reason)
    if transaction_data:
        payload["transactionData"] = transaction_data
    return payload


def remote_start_target(requested: int | None, states: Mapping[int, str], operative: Mapping[int, bool]) -> int | None:
    """The connector a RemoteStartTransaction goes to, or None (Rejected).

    With a connectorId, that connector if it can take it; without one (the station chooses, OCPP 1.6
    §5.11) the lowest-numbered connector with a car waiting for authorization, else the lowest idle one."""

    def takes(c: int) -> bool:
        return states.get(c) in TAKES_REMOTE_START and operative.get(c, True)

    if requested is not None:
        return requested if takes(requested) else None
    waiting = [c for c in sorted(states) if states[c] == "WaitingForAuthentication" and takes(c)]
    idle = [c for c in sorted(states) if takes(c)]
    candidates = waiting or idle
    return candidates[0] if candidates else None


class AvailabilityType(enum.StrEnum):
    OPERATIVE = "Operative"
    INOPERATIVE = "Inoperative"


class AvailabilityStatus(enum.StrEnum):
    ACCEPTED = "Accepted"
    REJECTED = "Rejected"
    SCHEDULED = "Scheduled"


@dataclass(frozen=True, slots=True, kw_only=True)
class AvailabilityPlan:
    status: AvailabilityStatus
    apply_now: dict[int, bool] = field(default_factory=dict)
    """Connector -> operative, to apply before answering."""
    schedule: dict[int, bool] = field(default_factory=dict)
    """Connector -> operative, to apply when its transaction ends."""
    unschedule: frozenset[int] = frozenset()
    """Connectors whose earlier scheduled change this request replaces."""
    station_operative: bool | None = None
    """Connector 0 (the station itself): its new state, or None when the request is for one connector."""


def plan_availability(
    connector_id: int, kind: AvailabilityType, connectors: Mapping[int, tuple[bool, bool]]
) -> AvailabilityPlan:
    """`connectors` maps each connector id to (operative now, runs a transaction now)."""
    if connector_id != 0 and connector_id not in connectors:
        return AvailabilityPlan(status=AvailabilityStatus.REJECTED)
    wanted = kind is AvailabilityType.OPERATIVE
    targets = sorted(connectors) if connector_id == 0 else [connector_id]
    apply_now: dict[int, bool] = {}
    schedule: dict[int, bool] = {}
    for c in targets:
        operative, busy = connectors[c]
        if busy and not wanted:
            schedule[c] = False
        elif operative != wanted:
            apply_now[c] = wanted
    return AvailabilityPlan(
        status=AvailabilityStatus.SCHEDULED if schedule else AvailabilityStatus.ACCEPTED,
        apply_now=apply_now,
        schedule=schedule,
        unschedule=frozenset(targets) - set(schedule),
        station_operative=wanted if connector_id == 0 else None,
    )
