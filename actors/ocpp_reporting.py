"""The backend link's transactions: StartTransaction, StopTransaction and transaction-related MeterValues
through the persistent queue, in order, exactly once per session (a mixin of `BackendLink`).

- A session is reported when its EVSE manager says so: StartTransaction at TransactionStarted (the
  start register it will bill from), StopTransaction at SessionCompleted (the bill: stop register and
  stop reason). Each goes through the ledger as an intent first (see `ocpp_ledger`).
- The queue is delivered oldest first while the CSMS has accepted us. A CALLERROR is a failed attempt
  (retried after TransactionMessageRetryInterval x n, discarded after TransactionMessageAttempts); no
  answer or a lost connection is not: the message stays at the head until the next chance.
- StartTransaction.conf brings the transactionId (the queue fills it into the later messages) and an
  idTagInfo: cached, and a non-Accepted one stops the transaction if StopTransactionOnInvalidId.
- At start, `reconcile` compares the ledger with each EVSE manager's session history: a session that
  ended while the link was down gets its StopTransaction now (and its StartTransaction too, if it also
  began then). Sessions that ended before the link ever ran are left alone.
"""

from __future__ import annotations

import time
from collections.abc import Generator
from typing import Any

from charger.actors.charging import (
    ConnectorStatus,
    GetConnectorStatus,
    GetSessionHistory,
    SessionCompleted,
    StopCharging,
)
from charger.actors.ocpp_base import LINK_UNAVAILABLE, RUNNING_STATES, LinkCore
from charger.actors.ocpp_ledger import queued_in
from charger.actors.ocpp_link import CsmsError, InvalidMessage
from charger.protocols.ocpp_local_auth import AuthorizationStatus, IdTagInfo
from charger.protocols.ocpp_transactions import id_tag_of, start_transaction_payload, stop_transaction_payload

from charger.behaviour import Pending
from charger.errors import CallError
from charger.ocpp_store import START_TRANSACTION, STOP_TRANSACTION

__all__ = ["TransactionReporting"]

_NO_ANSWER_RETRY_S = 5.0


class TransactionReporting(LinkCore):
    pumping: bool

    # --- the queue --------------------------------------------------------------------------------

    def pump(self) -> None:
        """Deliver the queue, oldest first, while the CSMS has accepted us."""
        if self.pumping or not self.accepted:
            return
        if self.pump_timer is not None:
            self.pump_timer.cancel()
            self.pump_timer = None
        self.pumping = True
        self.run_task(self._pump())

    def _pump_later(self, seconds: float) -> None:
        if self.pump_timer is not None:
            self.pump_timer.cancel()
        self.pump_timer = self.start_timer(max(seconds, 0.01), self.pump)

    def _pump(self) -> Generator[Pending, Any, None]:
        queue = self.store.queue
        try:
            while self.accepted:
                message = queue.peek_oldest()
                if message is None:
                    return
                now = time.time()
                if message.needs_transaction_id:
                    queue.discard(message.seq, now=now, reason="its StartTransaction never got a transactionId")
                    self.log.warning("discarded %s of %s: it has no transactionId", message.action, message.tx_key)
                    continue
                if not message.due(now):
                    self._pump_later(message.next_attempt_at - now)
                    return
                try:
                    result = yield self.call_csms(message.action, message.payload)
                except CsmsError as exc:
                    failed = queue.record_failed_attempt(
                        message.seq,
                        now=time.time(),
                        max_attempts=self.keys.integer("TransactionMessageAttempts"),
                        retry_interval=self.keys.integer("TransactionMessageRetryInterval"),
                    )
                    outcome = "discarded" if failed.discarded else f"attempt {failed.attempts} failed"
                    self.log.warning("%s of %s: %s (%s)", message.action, message.tx_key, exc, outcome)
                    continue
                except InvalidMessage as exc:  # would block the queue for ever: keep it for diagnosis instead
                    queue.discard(message.seq, now=time.time(), reason=str(exc))
                    self.log.error("discarded %s of %s: %s", message.action, message.tx_key, exc)
                    continue
                except TimeoutError:
                    self._pump_later(_NO_ANSWER_RETRY_S)
                    return
                except LINK_UNAVAILABLE:
                    return  # the next connection resumes the queue
                self._delivered(message.seq, message.tx_key, message.action, message.payload, result)
        finally:
            self.pumping = False

    def _delivered(self, seq: int, tx_key: str, action: str, payload: dict[str, Any], result: dict[str, Any]) -> None:
        if action == START_TRANSACTION:
            self.store.queue.mark_delivered(seq, transaction_id=int(result["transactionId"]))
            self.log.info("%s: StartTransaction delivered, transactionId %s", tx_key, result["transactionId"])
        else:
            self.store.queue.mark_delivered(seq)
            if action == STOP_TRANSACTION:
                self.log.info("%s: StopTransaction delivered", tx_key)
        wire_info = result.get("idTagInfo")
        id_tag = payload.get("idTag") or self._id_tag_of(tx_key)
        if wire_info is None or action not in (START_TRANSACTION, STOP_TRANSACTION) or not id_tag:
            return
        info = IdTagInfo.from_wire(wire_info)
        self.remember(id_tag, info)
        if action == START_TRANSACTION and info.status is not AuthorizationStatus.ACCEPTED:
            self._invalid_id_at_start(tx_key, int(payload["connectorId"]), info.status)

    def _id_tag_of(self, session_id: str) -> str | None:
        record = self.ledger.get(session_id)
        return None if record is None or record.start_payload is None else record.start_payload.get("idTag")

    def _invalid_id_at_start(self, session_id: str, connector_id: int, status: AuthorizationStatus) -> None:
        record = self.ledger.get(session_id)  # not the connector's status: it may lag behind the answer
        if record is None or not record.open or session_id in self.finishing:
            return
        if not self.keys.boolean("StopTransactionOnInvalidId"):
            self.log.warning("%s: idTag %s at start, and StopTransactionOnInvalidId is false", session_id, status.value)
            return
        self.log.warning("%s: idTag %s at start: stopping the transaction", session_id, status.value)
        self.call(self.evses[connector_id - 1], StopCharging(reason="DeAuthorized")).then(
            lambda _: None, lambda exc: self.log.warning("could not stop %s: %s", session_id, exc)
        )

    def _enqueue_reported(self, session_id: str, action: str, payload: dict[str, Any]) -> None:
        """Start or Stop: the intent in the ledger first, then the queue, then confirmed (see ocpp_ledger)."""
        if action == START_TRANSACTION:
            self.ledger.intend_start(session_id, int(payload["connectorId"]), payload)
        else:
            self.ledger.intend_stop(session_id, payload)
        self.store.queue.enqueue(action, payload, tx_key=session_id, now=time.time())
        self.ledger.mark_queued(session_id, action)
        self.pump()

    def recover_unconfirmed(self) -> None:
        """After a crash between an intent and its confirmation: enqueue what did not make it."""
        for record in self.ledger.unconfirmed():
            for action, payload, queued in (
                (START_TRANSACTION, record.start_payload, record.start_queued),
                (STOP_TRANSACTION, record.stop_payload, record.stop_queued),
            ):
                if payload is None or queued:
                    continue
                if not queued_in(self.store.queue, record.session_id, action):
                    self.store.queue.enqueue(action, payload, tx_key=record.session_id, now=time.time())
                    self.log.info("%s: %s recovered after a restart", record.session_id, action)
                self.ledger.mark_queued(record.session_id, action)

    # --- sessions ---------------------------------------------------------------------------------

    def transaction_started(
        self, connector: int, session_id: str, token_id: str | None, meter_wh: float | None, at: float
    ) -> None:
        if self.ledger.get(session_id) is not None:
            return
        id_tag, why = id_tag_of(token_id)
        if why:
            self.log.warning("%s: reported with idTag %s: %s", session_id, id_tag, why)
        payload = start_transaction_payload(connector, id_tag, meter_wh, at)
        reservation_id = self.reservation_used(connector, id_tag, at)
        if reservation_id is not None:
            payload["reservationId"] = reservation_id
        self._enqueue_reported(session_id, START_TRANSACTION, payload)

    def transaction_completed(self, connector: int, done: SessionCompleted) -> None:
        record = self.ledger.get(done.session_id)
        if record is not None and (record.preexisting or record.stop_payload is not None):
            return
        if record is None:  # it began while this link was down: report it whole, late but exact
            self.log.info("%s ran while the backend link was down: reporting it now", done.session_id)
            self.transaction_started(connector, done.session_id, done.token_id, done.meter_start_wh, done.started_at)
        data = self.ledger.transaction_data(done.session_id)
        payload = stop_transaction_payload(done.meter_stop_wh, done.stopped_at, done.stop_reason, data)
        self._enqueue_reported(done.session_id, STOP_TRANSACTION, payload)
        self.finishing.pop(done.session_id, None)
        self.tx_start_wh.pop(done.session_id, None)
        self.ledger.prune()

    def _started_while_down(self, connector: int, status: ConnectorStatus) -> None:
        """A transaction the link did not hear begin (it was restarting): its StartTransaction goes out now,
        from the start register the EVSE manager bills from."""
        assert status.session_id is not None
        if status.transaction_started_at is None:
            self.log.warning("%s began while the link was down; it is reported when it ends", status.session_id)
            return
        self.log.info("%s began while the link was down: reporting its start now", status.session_id)
        if status.meter_start_wh is not None:
            self.tx_start_wh[status.session_id] = status.meter_start_wh
        self.transaction_started(
            connector, status.session_id, status.token_id, status.meter_start_wh, status.transaction_started_at
        )

    def reconcile(self) -> Generator[Pending, Any, list[ConnectorStatus]]:
        """Report what was billed while the link was down; returns the connectors' statuses."""
        first_run = self.ledger.meta("initialized") is None
        asked = [
            (c, self.call(evse, GetSessionHistory(limit=100), timeout=5.0), self.call(evse, GetConnectorStatus()))
            for evse, c in self.connector_of.items()
        ]
        complete, statuses = True, []
        for connector, history_asked, status_asked in asked:
            try:
                history = yield history_asked
                status = yield status_asked
            except CallError as exc:
                complete = False
                self.log.warning("connector %d: no history (%s); its sessions are reported as they end", connector, exc)
                continue
            statuses.append(status)
            if first_run:
                self.ledger.record_preexisting(connector, [s.session_id for s in history.sessions])
            else:
                for done in history.sessions:
                    self.transaction_completed(connector, done)
            if status.state in RUNNING_STATES and status.session_id and self.ledger.get(status.session_id) is None:
                self._started_while_down(connector, status)
        if first_run and complete:
            self.ledger.set_meta("initialized", True)
        return statuses
