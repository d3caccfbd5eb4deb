"""The CSMS's requests to the station (every OCPP 1.6 feature profile and the Security Whitepaper's), each
answered on the backend link's actor thread. The payload arrives as on the wire (camelCase) and has
passed the 1.6 schema; a handler returns the CALLRESULT payload, or a `CsmsAnswer` with work to do once
the answer is sent ("response first": TriggerMessage, Reset, a remote start that must authorize).

Core, Local Auth List Management and Remote Trigger are here; Smart Charging's requests are in
`charger.actors.ocpp_smart_link` (`SMART_HANDLERS`), Reservation's (ReserveNow, CancelReservation) in
`ocpp_reservations`, Firmware Management's and the Security Whitepaper's in `ocpp_maintenance`. An
action a charge point sends (BootNotification...) is answered NotSupported.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any

from charger.actors.charging import AuthorizeSession, StopCharging, UnlockConnectorNow
from charger.actors.ocpp_base import LINK_UNAVAILABLE, RUNNING_STATES
from charger.actors.ocpp_link import CsmsAnswer, CsmsError, CsmsReply
from charger.actors.ocpp_maintenance import MAINTENANCE_HANDLERS, MAINTENANCE_TRIGGERS
from charger.actors.ocpp_reservations import cancel_reservation, reserve_now
from charger.actors.ocpp_smart_link import SMART_HANDLERS
from charger.protocols.ocpp_config import ConfigurationStatus, TooManyKeys
from charger.protocols.ocpp_frames import ErrorCode, IncomingCall
from charger.protocols.ocpp_local_auth import ListLimits, UpdateStatus
from charger.protocols.ocpp_transactions import (
    AvailabilityStatus,
    AvailabilityType,
    plan_availability,
    remote_start_target,
)

from charger.behaviour import Pending
from charger.errors import CallError

if TYPE_CHECKING:
    from charger.actors.backend_link import BackendLink

__all__ = ["CSMS_HANDLERS", "serve_csms_call"]

Result = dict[str, Any] | CsmsAnswer
Handler = Callable[["BackendLink", dict[str, Any]], Result | Generator[Pending, Any, Result]]
_TRIGGERABLE = frozenset({"BootNotification", "Heartbeat", "StatusNotification", "MeterValues"})
_LOCKS_WITHOUT_TRANSACTION = frozenset({"WaitingForAuthentication"})  # the EVSE manager holds the plug there
_RESET_STOP_WAIT_S = 30.0  # for the transactions to be billed (the bill waits for the meter to settle)
_RESET_DRAIN_WAIT_S = 10.0


def serve_csms_call(link: BackendLink, call: IncomingCall, reply: CsmsReply) -> Generator[Pending, Any, None]:
    """Run the handler and hand its answer back. A bug in a handler answers InternalError: a CSMS frame
    must never take the link down."""
    handler = CSMS_HANDLERS[call.action]
    try:
        outcome = handler(link, call.payload)
        if isinstance(outcome, Generator):
            outcome = yield from outcome
    except Exception:
        link.log.exception("handling %s %s failed", call.action, call.unique_id)
        reply(CsmsAnswer(error=ErrorCode.INTERNAL_ERROR, description=f"the station failed to handle {call.action}"))
        return
    reply(outcome if isinstance(outcome, CsmsAnswer) else CsmsAnswer(payload=outcome))


def _status(value: str) -> dict[str, Any]:
    return {"status": value}


# --- configuration -----------------------------------------------------------------------------------


def get_configuration(link: BackendLink, payload: dict[str, Any]) -> Result:
    try:
        return link.keys.get_configuration(payload.get("key")).to_wire()
    except TooManyKeys as exc:
        return CsmsAnswer(error=ErrorCode.OCCURENCE_CONSTRAINT_VIOLATION, description=str(exc))


_LINK_KEYS = frozenset(
    {
        "AuthorizationKey",
        "SecurityProfile",
        "WebSocketPingInterval",
        "RetryBackOffWaitMinimum",
        "RetryBackOffRandomRange",
        "RetryBackOffRepeatTimes",
    }
)


def change_configuration(link: BackendLink, payload: dict[str, Any]) -> Result:
    change = link.keys.plan_change(payload["key"], payload["value"], security_profile_ready=link.profile_ready)
    if change.stores and change.value is not None:
        link.store.config.save(change.key, change.value)  # on disk before the CSMS hears Accepted
        link.keys.apply(change)
        link.security.configuration_changed(change.key)
        if change.status is ConfigurationStatus.ACCEPTED:
            link.configuration_changed(change.key, link_setting=change.key in _LINK_KEYS)
    why = f" ({change.reason})" if change.reason else ""  # a reason never contains the value
    link.log.info("ChangeConfiguration %s: %s%s", change.key, change.status.value, why)
    return _status(change.status.value)


# --- authorization -----------------------------------------------------------------------------------


def clear_cache(link: BackendLink, payload: dict[str, Any]) -> Result:
    change = link.cache.plan_clear()
    link.store.auth.save_cache_change(change)
    link.cache.apply(change)
    return _status("Accepted")


def get_local_list_version(link: BackendLink, payload: dict[str, Any]) -> Result:
    return {"listVersion": link.local_list.version}


def send_local_list(link: BackendLink, payload: dict[str, Any]) -> Result:
    limits = ListLimits(
        max_length=link.keys.integer("LocalAuthListMaxLength"),
        send_max_length=link.keys.integer("SendLocalListMaxLength"),
    )
    update = link.local_list.plan(
        payload["listVersion"], payload["updateType"], payload.get("localAuthorizationList"), limits
    )
    if update.status is UpdateStatus.ACCEPTED:
        link.store.auth.save_list_update(update)
        link.local_list.apply(update)
    else:
        link.log.warning(
            "SendLocalList version %s: %s (%s)", payload["listVersion"], update.status.value, update.reason
        )
    return _status(update.status.value)


# --- remote control ----------------------------------------------------------------------------------


def remote_start_transaction(link: BackendLink, payload: dict[str, Any]) -> Generator[Pending, Any, Result]:
    id_tag: str = payload["idTag"]
    parent = link.parent_of(id_tag)
    states = {c: s.state for c, s in link.status.items()}
    operative = {
        c: link.operative.get(c, True) and link.station_operative and not link.reserved_for_others(c, id_tag, parent)
        for c in link.connector_of.values()
    }
    target = remote_start_target(payload.get("connectorId"), states, operative)
    if target is None:
        return _status("Rejected")
    if "chargingProfile" in payload and (why := link.smart.remote_start_profile(target, payload["chargingProfile"])):
        link.log.warning("RemoteStartTransaction on connector %d: chargingProfile refused: %s", target, why)
        return _status("Rejected")
    if link.keys.boolean("AuthorizeRemoteTxRequests"):
        return CsmsAnswer(payload=_status("Accepted"), after=lambda: _authorize_then_start(link, target, id_tag))
    try:
        yield link.call(link.evses[target - 1], AuthorizeSession(token_id=id_tag, parent_id_tag=parent), timeout=5.0)
    except CallError as exc:
        link.log.warning("RemoteStartTransaction on connector %d refused: %s", target, exc)
        link.smart.drop_pending(target)
        return _status("Rejected")
    link.log.info("RemoteStartTransaction: %s authorized on connector %d", id_tag, target)
    return _status("Accepted")


def _authorize_then_start(link: BackendLink, connector: int, id_tag: str) -> Generator[Pending, Any, None]:
    verdict = yield from link.authorize(id_tag)
    link.note_authorization(verdict)
    if verdict.status != "Accepted":
        link.log.info("RemoteStartTransaction: %s is %s (%s): not started", id_tag, verdict.status, verdict.source)
        link.smart.drop_pending(connector)
        return
    try:
        start = AuthorizeSession(token_id=id_tag, parent_id_tag=verdict.parent_id_tag)
        yield link.call(link.evses[connector - 1], start, timeout=5.0)
    except CallError as exc:
        link.log.warning("RemoteStartTransaction on connector %d refused after Authorize: %s", connector, exc)


def remote_stop_transaction(link: BackendLink, payload: dict[str, Any]) -> Generator[Pending, Any, Result]:
    wanted = payload["transactionId"]
    for connector in link.connector_of.values():
        if link.transaction_id_of(connector) == wanted:
            try:
                yield link.call(link.evses[connector - 1], StopCharging(reason="Remote"), timeout=5.0)
            except CallError as exc:
                link.log.warning("RemoteStopTransaction %s refused: %s", wanted, exc)
                return _status("Rejected")
            return _status("Accepted")
    return _status("Rejected")


def unlock_connector(link: BackendLink, payload: dict[str, Any]) -> Generator[Pending, Any, Result]:
    connector = payload["connectorId"]
    status = link.status.get(connector)
    if status is None:
        return _status("UnlockFailed")
    if status.state in RUNNING_STATES:  # OCPP 1.6 §5.17: stop the transaction (UnlockCommand), then unlock
        try:
            yield link.call(link.evses[connector - 1], StopCharging(reason="UnlockCommand"), timeout=5.0)
        except CallError as exc:
            link.log.warning("UnlockConnector %d: the transaction did not stop: %s", connector, exc)
            return _status("UnlockFailed")
        return _status("Unlocked")  # the EVSE manager releases the lock as the transaction ends
    if status.state in _LOCKS_WITHOUT_TRANSACTION:  # the waiting session ends, the lock opens
        try:
            yield link.call(link.evses[connector - 1], UnlockConnectorNow(), timeout=5.0)
        except CallError as exc:
            link.log.warning("UnlockConnector %d: the plug stays locked: %s", connector, exc)
            return _status("UnlockFailed")
    return _status("Unlocked")


def change_availability(link: BackendLink, payload: dict[str, Any]) -> Generator[Pending, Any, Result]:
    connectors = {
        c: (link.operative.get(c, True), link.running_session(c) is not None) for c in link.connector_of.values()
    }
    plan = plan_availability(payload["connectorId"], AvailabilityType(payload["type"]), connectors)
    if plan.status is AvailabilityStatus.REJECTED:
        return _status("Rejected")
    changed = True
    for connector, operative in plan.apply_now.items():
        changed = (yield from link.set_availability(connector, operative)) and changed
    for connector in plan.unschedule:
        link.scheduled.pop(connector, None)
    link.scheduled.update(plan.schedule)
    link.save_schedule()
    if plan.station_operative is not None and changed:
        link.set_station_operative(plan.station_operative)
    return _status(plan.status.value if changed else "Rejected")


def reset(link: BackendLink, payload: dict[str, Any]) -> Result:
    kind = payload["type"]
    return CsmsAnswer(payload=_status("Accepted"), after=lambda: _reset(link, kind))


def _reset(link: BackendLink, kind: str) -> Generator[Pending, Any, None]:
    """After Reset.conf: stop every transaction with SoftReset or HardReset, wait until they are billed
    and queued, give the queue a moment, then exit for the supervisor to restart the link."""
    reason = "HardReset" if kind == "Hard" else "SoftReset"
    link.log.warning("Reset (%s) requested by the CSMS", kind)
    link.security.resetting(kind)
    running = {c: s for c in link.connector_of.values() if (s := link.running_session(c)) is not None}
    for connector in running:
        link.call(link.evses[connector - 1], StopCharging(reason=reason), timeout=5.0).then(
            _ignore, _warn_not_stopped(link, connector)
        )
    deadline = time.monotonic() + _RESET_STOP_WAIT_S
    while time.monotonic() < deadline and any(
        (record := link.ledger.get(session)) is not None and record.open for session in running.values()
    ):
        yield link.sleep(0.2)
    deadline = time.monotonic() + _RESET_DRAIN_WAIT_S
    while time.monotonic() < deadline and link.accepted and len(link.store.queue):
        yield link.sleep(0.2)
    link.log.warning("Reset (%s): restarting the backend link", kind)
    link.stop(f"reset ({kind})")


def _ignore(_: Any) -> None:
    pass


def _warn_not_stopped(link: BackendLink, connector: int) -> Callable[[BaseException], None]:
    return lambda exc: link.log.warning("connector %d did not stop: %s", connector, exc)


def trigger_message(link: BackendLink, payload: dict[str, Any]) -> Result:
    wanted, connector = payload["requestedMessage"], payload.get("connectorId")
    if connector is not None and not 0 <= connector <= len(link.evses):
        return _status("Rejected")
    if wanted not in _TRIGGERABLE and wanted not in MAINTENANCE_TRIGGERS:
        return _status("NotImplemented")
    return CsmsAnswer(payload=_status("Accepted"), after=lambda: _send_triggered(link, wanted, connector))


def _send_triggered(link: BackendLink, what: str, connector: int | None) -> Generator[Pending, Any, None]:
    """Send what a TriggerMessage asked for, after its answer went out."""
    if what == "BootNotification":
        try:
            link.booted((yield link.call_csms("BootNotification", link.boot_payload(), triggered=True)))
        except (*LINK_UNAVAILABLE, CsmsError) as exc:
            link.log.info("triggered BootNotification failed: %s", exc)
    elif what == "Heartbeat":
        yield from link.heartbeat(triggered=True)
    elif what == "StatusNotification":
        for report in link.current_reports(connector):
            link.send_status(report, triggered=True)
    elif what == "MeterValues":
        yield from link.triggered_meter_values(connector)
    elif what in MAINTENANCE_TRIGGERS:
        yield from MAINTENANCE_TRIGGERS[what](link, connector)


def data_transfer(link: BackendLink, payload: dict[str, Any]) -> Result:
    # The station defines no vendor messages of its own yet.
    known_vendor = payload["vendorId"] == link.config["station"]["vendor"]
    return _status("UnknownMessageId" if known_vendor else "UnknownVendorId")


CSMS_HANDLERS: dict[str, Handler] = {
    "CancelReservation": cancel_reservation,
    "ChangeAvailability": change_availability,
    "ChangeConfiguration": change_configuration,
    "ClearCache": clear_cache,
    "DataTransfer": data_transfer,
    "ExtendedTriggerMessage": trigger_message,  # the Security Whitepaper's: TriggerMessage with more messages
    "GetConfiguration": get_configuration,
    "GetLocalListVersion": get_local_list_version,
    "RemoteStartTransaction": remote_start_transaction,
    "RemoteStopTransaction": remote_stop_transaction,
    "ReserveNow": reserve_now,
    "Reset": reset,
    "SendLocalList": send_local_list,
    "TriggerMessage": trigger_message,
    "UnlockConnector": unlock_connector,
    **MAINTENANCE_HANDLERS,
    **SMART_HANDLERS,
}
"""Every CSMS-initiated action the station serves (the SmartCharging seam: add its handlers here)."""
