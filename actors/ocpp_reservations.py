"""The backend link's reservations (OCPP 1.6 Reservation profile, §5.13 and §5.2): ReserveNow,
CancelReservation, expiry, and reservations on connector 0 (a mixin of `BackendLink`, plus the two
CSMS handlers).

The link owns the reservations: they are kept in its ledger's SQLite file (written before the CSMS
hears Accepted), so they survive a SIGKILL of the link or of the whole box. The connectors enforce
them: the rules of `ocpp_reservation.guards` say which reservations each connector honours now, and
each EVSE manager is told its share (`ReserveConnector`) whenever it changes, and again after the
link restarts. A connector that honours a reservation shows Reserved (its `ConnectorStatus` says so,
and the StatusNotification follows from it) and refuses every other token.

A reservation ends when a transaction starts for it (its id goes into StartTransaction), when the
CSMS cancels it, at its expiryDate (the connector stops honouring it by itself even if the link is
down), or when its connector or the station becomes Unavailable.
"""

from __future__ import annotations

import time
from collections.abc import Generator, Iterable
from typing import TYPE_CHECKING, Any

from charger.actors.charging import ConnectorReservation, ReserveConnector
from charger.actors.ocpp_base import LinkCore
from charger.actors.ocpp_link import CsmsAnswer
from charger.actors.ocpp_messages import TokenAuthorization
from charger.protocols.ocpp_frames import ErrorCode
from charger.protocols.ocpp_local_auth import id_key
from charger.protocols.ocpp_reservation import (
    CancelStatus,
    ConnectorFacts,
    Reservation,
    ReserveStatus,
    admits,
    consumed_by,
    guards,
    plan_cancel,
    plan_reserve,
    terminated,
)
from charger.protocols.ocpp_status import ChargePointStatus, connector_view

from charger.behaviour import Pending, Timer
from charger.errors import CallError

if TYPE_CHECKING:
    from charger.actors.backend_link import BackendLink

__all__ = ["Reservations", "cancel_reservation", "reserve_now"]

_META = "reservations"
_PARENTS_KEPT = 256
_PUSH_TIMEOUT_S = 5.0
_PUSH_RETRY_S = 10.0  # after a connector did not take its share (down, or it knows no reservations)
Holds = tuple[ConnectorReservation, ...]


class Reservations(LinkCore):
    reservations: dict[int, Reservation]
    holds_sent: dict[int, Holds]
    """Connector -> what it last acknowledged: told again only when this changes."""
    holds_in_flight: set[int]
    holds_retry_at: dict[int, float]
    """Connector -> when (monotonic) to tell it again after it did not take its share."""
    parents: dict[str, str | None]
    """idTag (`id_key`) -> parentIdTag of recent authorizations: which group reservation a start used."""
    reservation_timer: Timer | None

    def init_reservations(self) -> None:
        """Load the stored reservations (expired ones are dropped by `reservations_ready`, after the
        link has reported transactions that may have used them while it was down)."""
        stored = self.ledger.meta(_META) or []
        self.reservations = {int(r["reservation_id"]): Reservation.from_record(r) for r in stored}
        self.holds_sent, self.holds_in_flight, self.holds_retry_at, self.parents = {}, set(), {}, {}
        self.reservation_timer = None

    def reservations_ready(self) -> None:
        """After start-up: drop what expired meanwhile, and tell every connector what it honours."""
        self._expire()
        if self.reservations:
            self.log.info("reservations kept: %s", ", ".join(str(r) for r in sorted(self.reservations)))

    # --- what the connectors know ---------------------------------------------------------------

    def connector_facts(self, *, unknown_unavailable: bool = False) -> dict[int, ConnectorFacts]:
        """Each connector as the reservation rules see it (its status leaving reservations aside)."""
        facts = {}
        for connector in self.connector_of.values():
            status = self.status.get(connector)
            if status is None:
                if unknown_unavailable:  # cannot see it, so cannot promise it
                    facts[connector] = ConnectorFacts(ChargePointStatus.UNAVAILABLE)
                continue
            operative = self.operative.get(connector, True) and self.station_operative
            view = connector_view(status.state, status.faults, status.token_id, operative=operative)
            facts[connector] = ConnectorFacts(view.status, in_session=status.token_id is not None)
        return facts

    def _wanted_holds(self, now: float) -> dict[int, Holds]:
        """Connector -> the reservations it should honour; only connectors whose status is known (the
        others are down, and are told once their status arrives)."""
        held = guards(self.reservations.values(), self.connector_facts(), now)
        return {c: tuple(_hold(r) for r in held.get(c, ())) for c in self.connector_of.values() if c in self.status}

    def push_holds(self) -> Generator[Pending, Any, set[int]]:
        """Tell every connector whose share changed; returns the connectors that did not take it."""
        asked = [
            (c, self._push(c, holds))
            for c, holds in self._wanted_holds(time.time()).items()
            if self.holds_sent.get(c) != holds
        ]
        failed = set()
        for connector, pending in asked:
            try:
                yield pending
            except CallError:
                failed.add(connector)
        return failed

    def sync_holds(self) -> None:
        """`push_holds` without waiting (after a status change, an expiry, a cancellation). A connector
        whose status shows other reservations than it took (its journal lost) is told again too."""
        now, clock = time.time(), time.monotonic()
        for c, holds in self._wanted_holds(now).items():
            if c in self.holds_in_flight or clock < self.holds_retry_at.get(c, 0.0):
                continue
            if self.holds_sent.get(c) != holds or _live(self.status[c].reservations, now) != _live(holds, now):
                self._push(c, holds).then(_ignore, _ignore)

    def _push(self, connector: int, holds: Holds) -> Pending:
        self.holds_in_flight.add(connector)
        pending = self.call(self.evses[connector - 1], ReserveConnector(reservations=holds), timeout=_PUSH_TIMEOUT_S)

        def taken(_: Any) -> None:
            self.holds_in_flight.discard(connector)
            self.holds_retry_at.pop(connector, None)
            self.holds_sent[connector] = holds

        def refused(exc: BaseException) -> None:
            self.holds_in_flight.discard(connector)
            self.holds_retry_at[connector] = time.monotonic() + _PUSH_RETRY_S
            self.log.warning("connector %d did not take its reservations (%s): telling it again later", connector, exc)

        pending.then(taken, refused)
        return pending

    def reservations_on_status(self) -> None:
        """A connector changed: end reservations it can no longer serve, and re-share the rest."""
        ended = terminated(self.reservations.values(), self.connector_facts(), station_operative=self.station_operative)
        if ended:
            for r in ended:
                self.log.info("reservation %d ended: its connector is Unavailable", r.reservation_id)
            self.forget_reservations(r.reservation_id for r in ended)
        self.sync_holds()

    # --- the reservations -----------------------------------------------------------------------

    def save_reservations(self) -> None:
        self.ledger.set_meta(_META, [r.to_record() for r in sorted(self.reservations.values(), key=_by_id)])

    def forget_reservations(self, reservation_ids: Iterable[int]) -> None:
        for reservation_id in list(reservation_ids):
            self.reservations.pop(reservation_id, None)
        self.save_reservations()
        self.arm_reservation_expiry()

    def arm_reservation_expiry(self) -> None:
        if self.reservation_timer is not None:
            self.reservation_timer.cancel()
            self.reservation_timer = None
        if self.reservations:
            due = min(r.expires_at for r in self.reservations.values())
            self.reservation_timer = self.start_timer(max(0.0, due - time.time()) + 0.01, self._expire)

    def _expire(self) -> None:
        now = time.time()
        expired = [r for r in self.reservations.values() if not r.active(now)]
        for r in expired:
            self.log.info("reservation %d of %s expired", r.reservation_id, r.id_tag)
        self.forget_reservations(r.reservation_id for r in expired)
        self.sync_holds()

    def note_authorization(self, verdict: TokenAuthorization) -> None:
        """Remember an idTag's parent: a transaction it starts may use a reservation of its group."""
        self.parents[id_key(verdict.id_tag)] = verdict.parent_id_tag
        while len(self.parents) > _PARENTS_KEPT:
            del self.parents[next(iter(self.parents))]

    def parent_of(self, id_tag: str) -> str | None:
        """The idTag's parent, as far as the station knows it without asking the CSMS."""
        key = id_key(id_tag)
        if key in self.parents:
            return self.parents[key]
        for known in (self.local_list.get(id_tag), self.cache.get(id_tag)):
            if known is not None:
                return known.info.parent_id_tag
        return None

    def reserved_for_others(self, connector: int, id_tag: str, parent_id_tag: str | None) -> bool:
        """Whether the connector honours reservations that `id_tag` may not use."""
        held = guards(self.reservations.values(), self.connector_facts(), time.time()).get(connector, ())
        return bool(held) and not any(admits(r, id_tag, parent_id_tag) for r in held)

    def reservation_used(self, connector: int, id_tag: str, at: float) -> int | None:
        """A transaction started for `id_tag` on `connector` at `at`: the reservation it ends, if any."""
        used = consumed_by(self.reservations.values(), connector, id_tag, self.parent_of(id_tag), at)
        if used is None:
            return None
        self.log.info("reservation %d used by %s on connector %d", used.reservation_id, id_tag, connector)
        self.forget_reservations([used.reservation_id])
        self.sync_holds()
        return used.reservation_id


def _hold(r: Reservation) -> ConnectorReservation:
    return ConnectorReservation(
        reservation_id=r.reservation_id, id_tag=r.id_tag, expires_at=r.expires_at, parent_id_tag=r.parent_id_tag
    )


def _live(holds: Holds, now: float) -> Holds:
    return tuple(h for h in holds if h.expires_at > now)


def _by_id(r: Reservation) -> int:
    return r.reservation_id


def _ignore(_: Any) -> None:
    pass


# --- the CSMS's requests ---------------------------------------------------------------------------


def reserve_now(link: BackendLink, payload: dict[str, Any]) -> Generator[Pending, Any, dict[str, Any] | CsmsAnswer]:
    try:
        request = Reservation.from_wire(payload)
    except ValueError as exc:
        return CsmsAnswer(error=ErrorCode.FORMATION_VIOLATION, description=f"expiryDate: {exc}")
    plan = plan_reserve(
        request,
        link.reservations.values(),
        link.connector_facts(unknown_unavailable=True),
        station_operative=link.station_operative,
        connector_zero_supported=link.keys.boolean("ReserveConnectorZeroSupported"),
        now=time.time(),
    )
    if plan.status is not ReserveStatus.ACCEPTED:
        link.log.info(
            "ReserveNow %d on connector %d: %s (%s)",
            request.reservation_id,
            request.connector_id,
            plan.status.value,
            plan.reason,
        )
        return {"status": plan.status.value}
    link.reservations[request.reservation_id] = request
    link.save_reservations()  # on disk before the CSMS hears Accepted
    failed = yield from link.push_holds()
    if request.connector_id in failed:  # the connector cannot enforce it: take it back
        link.reservations.pop(request.reservation_id)
        if plan.replaces is not None:
            link.reservations[plan.replaces.reservation_id] = plan.replaces
        link.save_reservations()
        link.sync_holds()
        link.log.warning("ReserveNow %d: connector %d did not take it", request.reservation_id, request.connector_id)
        return {"status": ReserveStatus.REJECTED.value}
    link.arm_reservation_expiry()
    link.log.info(
        "ReserveNow %d: connector %d reserved for %s until %s",
        request.reservation_id,
        request.connector_id,
        request.id_tag,
        payload["expiryDate"],
    )
    return {"status": ReserveStatus.ACCEPTED.value}


def cancel_reservation(link: BackendLink, payload: dict[str, Any]) -> dict[str, Any]:
    reservation_id = int(payload["reservationId"])
    status = plan_cancel(reservation_id, link.reservations.values())
    if status is CancelStatus.ACCEPTED:
        link.forget_reservations([reservation_id])
        link.sync_holds()
    link.log.info("CancelReservation %d: %s", reservation_id, status.value)
    return {"status": status.value}
