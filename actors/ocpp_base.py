"""The state the parts of the backend link share (`BackendLink` and its mixins `TransactionReporting` and
`StationReports`), and the operations all of them use: is the CSMS there, send it a CALL, which session
runs on a connector, and the authorization of an idTag (OCPP 1.6 §3.5) with its cache.
"""

from __future__ import annotations

import time
from collections.abc import Generator
from datetime import UTC, datetime
from typing import Any

from charger.actors.charging import ConnectorStatus, PowerMeterReading
from charger.actors.ocpp_ledger import Ledger
from charger.actors.ocpp_link import CsmsError, InvalidMessage, OcppLink
from charger.actors.ocpp_messages import TokenAuthorization
from charger.protocols.evse_events import TRANSACTION_STATES
from charger.protocols.ocpp_config import OcppConfiguration
from charger.protocols.ocpp_link_rules import Registration, may_send
from charger.protocols.ocpp_local_auth import (
    AuthDecision,
    AuthorizationCache,
    AuthorizationStatus,
    AuthSettings,
    DecisionReason,
    IdTagInfo,
    LocalAuthList,
    Verdict,
    decide,
    remember_answer,
)

from charger.behaviour import Behaviour, Pending, Timer
from charger.ocpp_store import OcppStore

__all__ = ["LINK_UNAVAILABLE", "RUNNING_STATES", "LinkCore"]

RUNNING_STATES = frozenset(state.value for state in TRANSACTION_STATES)
"""EVSE manager states (as in `ConnectorStatus.state`) in which a transaction runs."""
LINK_UNAVAILABLE = (ConnectionError, TimeoutError, OSError, InvalidMessage)
"""What a CALL raises when it cannot be delivered: the CSMS cannot be reached or does not answer (or,
never expected, the message itself is invalid and was not sent)."""


class LinkCore(Behaviour):
    """Shared by the backend link's parts; set up by `BackendLink.init`."""

    evses: list[str]
    meters: list[str]
    connector_of: dict[str, int]
    store: OcppStore
    ledger: Ledger
    keys: OcppConfiguration
    local_list: LocalAuthList
    cache: AuthorizationCache
    link: OcppLink
    registration: Registration
    connection: int
    """The open connection's number, 0 while offline."""
    status: dict[int, ConnectorStatus]
    readings: dict[int, PowerMeterReading]
    operative: dict[int, bool]
    scheduled: dict[int, bool]
    station_operative: bool
    finishing: dict[str, int]
    """Session -> connector of transactions that ended and are not billed yet."""
    tx_start_wh: dict[str, float]
    pump_timer: Timer | None

    @property
    def accepted(self) -> bool:
        """Connected, and the CSMS accepted our BootNotification."""
        return self.connection != 0 and self.registration is Registration.ACCEPTED

    def call_csms(self, action: str, payload: dict[str, Any], *, triggered: bool = False) -> Pending:
        """Send a CALL now; fails with ConnectionError while offline or while the boot forbids it."""
        if self.connection == 0 or not may_send(self.registration, action, triggered=triggered):
            failed = Pending()
            failed.fail(ConnectionError(f"{action} cannot be sent now (offline, or boot {self.registration.value})"))
            return failed
        return self.run_async(self.link.call(action, payload))

    def running_session(self, connector: int) -> str | None:
        """The session id of the transaction running on this connector, if any."""
        status = self.status.get(connector)
        return status.session_id if status is not None and status.state in RUNNING_STATES else None

    def transaction_id_of(self, connector: int) -> int | None:
        """The CSMS's transactionId of the transaction running on this connector, once it is known."""
        session = self.running_session(connector)
        return None if session is None else self.store.queue.transaction_id(session)

    def pump(self) -> None:
        """Deliver the transaction queue: `TransactionReporting.pump`."""
        raise NotImplementedError

    def reservation_used(self, connector: int, id_tag: str, at: float) -> int | None:
        """The reservation a transaction starting now ends: `Reservations.reservation_used`."""
        raise NotImplementedError

    def enqueue(self, action: str, payload: dict[str, Any], session_id: str) -> None:
        """A MeterValues of a running transaction: into the queue, behind everything before it."""
        self.store.queue.enqueue(action, payload, tx_key=session_id, now=time.time())
        self.pump()

    def remember(self, id_tag: str, info: IdTagInfo) -> None:
        """An idTagInfo from the CSMS goes into the authorization cache (OCPP 1.6 §3.5.1)."""
        change = remember_answer(
            id_tag,
            info,
            settings=AuthSettings.from_config(self.keys),
            local_list=self.local_list,
            cache=self.cache,
            now=datetime.now(UTC),
        )
        if change is not None:
            self.store.auth.save_cache_change(change)
            self.cache.apply(change)

    def authorize(self, id_tag: str) -> Generator[Pending, Any, TokenAuthorization]:
        """OCPP 1.6 §3.5: the local list and cache, the CSMS when online, the offline rules otherwise."""
        settings = AuthSettings.from_config(self.keys)

        def decision(online: bool) -> AuthDecision:
            now = datetime.now(UTC)
            return decide(
                id_tag, online=online, settings=settings, local_list=self.local_list, cache=self.cache, now=now
            )

        decided = decision(self.accepted)
        if decided.verdict is Verdict.ASK_CSMS:
            try:
                result = yield self.call_csms("Authorize", {"idTag": id_tag})
            except (*LINK_UNAVAILABLE, CsmsError) as exc:
                self.log.info("Authorize of %s failed (%s): deciding offline", id_tag, exc)
                decided = decision(False)
            else:
                info = IdTagInfo.from_wire(result["idTagInfo"])
                self.remember(id_tag, info)
                return _authorization(id_tag, info.status.value, "csms", info)
        if decided.reason is DecisionReason.BAD_ID_TAG:
            return _authorization(id_tag, AuthorizationStatus.INVALID.value, "none", None)
        source = "offline" if decided.source.value == "none" else decided.source.value
        if decided.verdict is Verdict.ACCEPT:
            return _authorization(id_tag, AuthorizationStatus.ACCEPTED.value, source, decided.info)
        refused = decided.info.status.value if decided.info is not None else AuthorizationStatus.INVALID.value
        return _authorization(id_tag, refused, source, decided.info)


def _authorization(id_tag: str, status: str, source: str, info: IdTagInfo | None) -> TokenAuthorization:
    expiry = None if info is None or info.expiry_date is None else info.expiry_date.timestamp()
    parent = None if info is None else info.parent_id_tag
    return TokenAuthorization(id_tag=id_tag, status=status, source=source, parent_id_tag=parent, expiry=expiry)
