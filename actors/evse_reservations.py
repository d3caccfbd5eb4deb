"""The reservations an EVSE manager honours (a mixin of `EvseManager`).

The connector is where a reservation is enforced, because every way to start charging ends in an
`AuthorizeSession` here: a card at the reader (through Auth), the control API, a remote start. The
OCPP backend link decides which reservations a connector holds (`ReserveConnector`, OCPP 1.6 §5.13);
the connector refuses any other token while one holds, and shows them in `ConnectorStatus`. They are
journaled before the Ack, so a restarted EVSE manager (or box) keeps refusing; one past its expiry
is ignored even when nobody tells the connector, so a reservation never outlives its expiryDate.
"""

from __future__ import annotations

import time

from charger.actors.charging import ConnectorReservation, ReserveConnector
from charger.protocols.ocpp_reservation import Reservation, admits

from charger.behaviour import Behaviour, handles
from charger.journal import Journal
from charger.lifecycle import Ack

__all__ = ["ReservationHolder"]

_KEY = "reservations"


class ReservationHolder(Behaviour):
    journal: Journal
    held: tuple[ConnectorReservation, ...]

    def init_reservations(self) -> None:
        stored = self.journal.get(_KEY) or []
        self.held = tuple(ConnectorReservation(**r) for r in stored)

    @handles(ReserveConnector)
    def on_reserve(self, req: ReserveConnector) -> Ack:
        self.held = tuple(req.reservations)
        self.journal.put(_KEY, [_record(r) for r in self.held])
        ids = ", ".join(str(r.reservation_id) for r in self.held) or "none"
        self.log.info("%s: reservations held: %s", self.name, ids)
        self._publish_status(only_if_changed=True)
        return Ack()

    def _publish_status(self, *, only_if_changed: bool) -> None:
        """The EVSE manager's."""
        raise NotImplementedError

    def reservations_now(self, now: float | None = None) -> tuple[ConnectorReservation, ...]:
        at = time.time() if now is None else now
        return tuple(r for r in self.held if r.expires_at > at)

    def reservation_refusal(self, token_id: str, parent_id_tag: str | None) -> str | None:
        """Why `token_id` may not be authorized here now (None: it may)."""
        held = self.reservations_now()
        if not held or any(admits(_pure(r), token_id, parent_id_tag) for r in held):
            return None
        ids = ", ".join(str(r.reservation_id) for r in held)
        return f"{self.name} is reserved (reservation {ids}) for another idTag"


def _pure(r: ConnectorReservation) -> Reservation:
    return Reservation(r.reservation_id, 0, r.id_tag, r.expires_at, r.parent_id_tag)


def _record(r: ConnectorReservation) -> dict[str, object]:
    return {
        "reservation_id": r.reservation_id,
        "id_tag": r.id_tag,
        "expires_at": r.expires_at,
        "parent_id_tag": r.parent_id_tag,
    }
