"""OCPP 1.6 reservations (§5.13 ReserveNow, §5.2 CancelReservation), as pure decisions.

- `plan_reserve` answers a ReserveNow.req: a reservationId already held is replaced; otherwise the
  connector (or, for connector 0, the station) must be Available: Faulted, Unavailable and Occupied
  (in use, or reserved already, for the same or another idTag) say why not, and Rejected means the
  station does not take this reservation (connector 0 without ReserveConnectorZeroSupported, an
  unknown connector, an expiry in the past).
- `guards` says which reservations each connector must honour now: its own reservation, and for
  reservations on connector 0 the last free connectors ("one connector remains available for the
  reserved idTag"): as long as more connectors are free than there are connector-0 reservations,
  none is held back; once they are as many, each of them takes only those idTags.
- `admits`: the idTag, or its parent idTag, matches the reservation's idTag or parent idTag.
- `consumed_by` picks the reservation a starting transaction ends (its id goes into StartTransaction),
  and `terminated` the reservations that end because their connector (or the station) became
  Unavailable.

Times are Unix seconds; a reservation holds while ``now < expires_at``.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from charger.protocols.ocpp_local_auth import ID_TAG_MAX_LENGTH, id_key, parse_datetime
from charger.protocols.ocpp_status import ChargePointStatus

__all__ = [
    "CancelStatus",
    "ConnectorFacts",
    "Reservation",
    "ReserveStatus",
    "admits",
    "consumed_by",
    "guards",
    "plan_cancel",
    "plan_reserve",
    "terminated",
]


class ReserveStatus(enum.StrEnum):
    """ReserveNow.conf status (OCPP 1.6 §7.37 ReservationStatus)."""

    ACCEPTED = "Accepted"
    FAULTED = "Faulted"
    OCCUPIED = "Occupied"
    REJECTED = "Rejected"
    UNAVAILABLE = "Unavailable"


class CancelStatus(enum.StrEnum):
    """CancelReservation.conf status (§7.9 CancelReservationStatus)."""

    ACCEPTED = "Accepted"
    REJECTED = "Rejected"


@dataclass(frozen=True, slots=True)
class Reservation:
    reservation_id: int
    connector_id: int
    """0: any connector of the station."""
    id_tag: str
    expires_at: float
    parent_id_tag: str | None = None

    @classmethod
    def from_wire(cls, payload: Mapping[str, Any]) -> Reservation:
        """From a schema-valid ReserveNow.req payload; ValueError for an unreadable expiryDate."""
        return cls(
            reservation_id=int(payload["reservationId"]),
            connector_id=int(payload["connectorId"]),
            id_tag=str(payload["idTag"]),
            expires_at=parse_datetime(str(payload["expiryDate"])).timestamp(),
            parent_id_tag=payload.get("parentIdTag"),
        )

    def to_record(self) -> dict[str, Any]:
        return {
            "reservation_id": self.reservation_id,
            "connector_id": self.connector_id,
            "id_tag": self.id_tag,
            "expires_at": self.expires_at,
            "parent_id_tag": self.parent_id_tag,
        }

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Reservation:
        return cls(
            reservation_id=int(record["reservation_id"]),
            connector_id=int(record["connector_id"]),
            id_tag=str(record["id_tag"]),
            expires_at=float(record["expires_at"]),
            parent_id_tag=record.get("parent_id_tag"),
        )

    def active(self, now: float) -> bool:
        return now < self.expires_at


def admits(reservation: Reservation, id_tag: str, parent_id_tag: str | None) -> bool:
    """Whether `id_tag` (with its parent, if known) may use the reservation (§5.13: "except when the
    incoming idTag or the parent idTag match the idTag or parent idTag of the reservation")."""
    mine = {id_key(t) for t in (id_tag, parent_id_tag) if t}
    theirs = {id_key(t) for t in (reservation.id_tag, reservation.parent_id_tag) if t}
    return bool(mine & theirs)


@dataclass(frozen=True, slots=True)
class ConnectorFacts:
    """What the reservation rules need of a connector, leaving reservations aside."""

    status: ChargePointStatus
    """Its OCPP status as if it held no reservation."""
    in_session: bool = False
    """A token is assigned to it (authorized or charging): it is not free even while Preparing."""

    @property
    def free(self) -> bool:
        """Nobody uses it: available, or a car waits there for a token."""
        return self.status in (ChargePointStatus.AVAILABLE, ChargePointStatus.PREPARING) and not self.in_session


def _active(reservations: Iterable[Reservation], now: float) -> list[Reservation]:
    return sorted((r for r in reservations if r.active(now)), key=lambda r: r.reservation_id)


def guards(
    reservations: Iterable[Reservation], connectors: Mapping[int, ConnectorFacts], now: float
) -> dict[int, tuple[Reservation, ...]]:
    """Connector -> the reservations whose idTags alone may start there now (absent: anyone may)."""
    active = _active(reservations, now)
    held: dict[int, tuple[Reservation, ...]] = {r.connector_id: (r,) for r in active if r.connector_id != 0}
    anywhere = tuple(r for r in active if r.connector_id == 0)
    free = [c for c in sorted(connectors) if connectors[c].free and c not in held]
    if anywhere and len(free) <= len(anywhere):
        held.update(dict.fromkeys(free, anywhere))
    return held


@dataclass(frozen=True, slots=True)
class ReservePlan:
    status: ReserveStatus
    reason: str = ""
    replaces: Reservation | None = None


def plan_reserve(
    request: Reservation,
    reservations: Iterable[Reservation],
    connectors: Mapping[int, ConnectorFacts],
    *,
    station_operative: bool,
    connector_zero_supported: bool,
    now: float,
) -> ReservePlan:
    """The answer to a ReserveNow.req (§5.13); when Accepted the caller stores `request` (in place of
    `replaces`, the reservation of the same id, if any)."""
    held = _active(reservations, now)
    previous = next((r for r in held if r.reservation_id == request.reservation_id), None)
    others = [r for r in held if r.reservation_id != request.reservation_id]
    refusal = next(
        _refusals(
            request,
            previous,
            others,
            connectors,
            station_operative=station_operative,
            connector_zero_supported=connector_zero_supported,
            now=now,
        ),
        None,
    )
    return refusal or ReservePlan(ReserveStatus.ACCEPTED, "", previous)


def _refusals(
    request: Reservation,
    previous: Reservation | None,
    others: list[Reservation],
    connectors: Mapping[int, ConnectorFacts],
    *,
    station_operative: bool,
    connector_zero_supported: bool,
    now: float,
) -> Iterator[ReservePlan]:
    """Why the station does not take the reservation, most basic reason first."""
    where = request.connector_id
    if not 0 < len(request.id_tag) <= ID_TAG_MAX_LENGTH:
        yield ReservePlan(ReserveStatus.REJECTED, "the idTag is not an IdToken")
    if not request.active(now):
        yield ReservePlan(ReserveStatus.REJECTED, "expiryDate is in the past")
    if where != 0 and where not in connectors:
        yield ReservePlan(ReserveStatus.REJECTED, f"there is no connector {where}")
    if where == 0 and not connector_zero_supported:
        yield ReservePlan(ReserveStatus.REJECTED, "ReserveConnectorZeroSupported is false")
    if not station_operative:
        yield ReservePlan(ReserveStatus.UNAVAILABLE, "the charge point is Unavailable")
    if previous is not None and previous.connector_id == where:
        return  # the same reservation, renewed: its connector is the one it holds already
    specific = {r.connector_id for r in others if r.connector_id != 0}
    anywhere = sum(1 for r in others if r.connector_id == 0)
    free = [c for c in connectors if connectors[c].free and c not in specific]
    if where == 0:
        yield from _refusals_anywhere(connectors, free, anywhere)
        return
    status = connectors[where].status
    if status in (ChargePointStatus.FAULTED, ChargePointStatus.UNAVAILABLE):
        yield ReservePlan(ReserveStatus(status.value), f"connector {where} is {status.value}")
    if where in specific:
        yield ReservePlan(ReserveStatus.OCCUPIED, f"connector {where} is reserved already")
    if status is not ChargePointStatus.AVAILABLE or connectors[where].in_session:
        yield ReservePlan(ReserveStatus.OCCUPIED, f"connector {where} is {status.value}")
    if len(free) - 1 < anywhere:  # it would take the connector kept for a reservation on connector 0
        yield ReservePlan(ReserveStatus.OCCUPIED, "the last free connector is kept for a reservation")


def _refusals_anywhere(
    connectors: Mapping[int, ConnectorFacts], free: list[int], anywhere: int
) -> Iterator[ReservePlan]:
    statuses = {f.status for f in connectors.values()}
    for status in (ChargePointStatus.FAULTED, ChargePointStatus.UNAVAILABLE):
        if statuses == {status}:
            yield ReservePlan(ReserveStatus(status.value), f"every connector is {status.value}")
    if len(free) <= anywhere:
        yield ReservePlan(ReserveStatus.OCCUPIED, "no connector is left free for another reservation")


def plan_cancel(reservation_id: int, reservations: Iterable[Reservation]) -> CancelStatus:
    """§5.2: Accepted when the station holds the reservation, else Rejected."""
    known = any(r.reservation_id == reservation_id for r in reservations)
    return CancelStatus.ACCEPTED if known else CancelStatus.REJECTED


def consumed_by(
    reservations: Iterable[Reservation], connector_id: int, id_tag: str, parent_id_tag: str | None, now: float
) -> Reservation | None:
    """The reservation a transaction starting on `connector_id` for `id_tag` ends: the connector's own
    reservation if it admits the idTag, else a connector-0 reservation that does."""
    active = _active(reservations, now)
    for wanted in (connector_id, 0):
        found = next((r for r in active if r.connector_id == wanted and admits(r, id_tag, parent_id_tag)), None)
        if found is not None:
            return found
    return None


def terminated(
    reservations: Iterable[Reservation], connectors: Mapping[int, ConnectorFacts], *, station_operative: bool
) -> list[Reservation]:
    """Reservations that end because their connector, or the charge point, became Unavailable (§5.13);
    a connector-0 reservation ends when every connector is Unavailable.

    Faulted does not end one here: a fault that clears in seconds (the meter not answering yet after
    a reboot) must not cancel a reservation that survived the reboot. A faulted connector cannot start
    anyone's transaction meanwhile, and the reservation still expires."""
    gone = ChargePointStatus.UNAVAILABLE
    every_gone = bool(connectors) and all(f.status is gone for f in connectors.values())
    ended = []
    for r in reservations:
        facts = connectors.get(r.connector_id)
        own_gone = facts is not None and facts.status is gone
        if not station_operative or own_gone or (r.connector_id == 0 and every_gone):
            ended.append(r)
    return ended
