"""What the backend link tells the CSMS about the station besides transactions: connector status and
meter values, and the availability the CSMS asked for (a mixin of `BackendLink`).

- Status: every `ConnectorStatus` an EVSE manager publishes becomes an OCPP view (`ocpp_status`); a
  StatusNotification goes out once a new view has lasted MinimumStatusDuration. Connector 0 is the
  station itself: Available, or Unavailable after ChangeAvailability(0, Inoperative).
- Meter values: every MeterValueSampleInterval, the running transactions' MeterValuesSampledData
  (Sample.Periodic) go into the queue; at every ClockAlignedDataInterval boundary, each connector's
  MeterValuesAlignedData (Sample.Clock) go into the queue when a transaction runs, else straight out.
  The register comes from the meter when one is wired to the link, else from the EVSE manager (its
  start register plus the session's energy), so it is the one the bill uses either way.
- Transaction data: at the same instants, StopTxnSampledData and StopTxnAlignedData of the running
  transactions go into the ledger, and the StopTransaction carries them as transactionData.
- Availability: `set_availability` asks the EVSE manager (`SetAvailability`) and persists the
  outcome; a change scheduled for a busy connector is applied when its transaction has been billed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator
from typing import Any, Protocol

from charger.actors.charging import ConnectorStatus, SetAvailability
from charger.actors.ocpp_base import LINK_UNAVAILABLE, LinkCore
from charger.actors.ocpp_link import CsmsError, CsmsReply
from charger.protocols.ocpp_frames import IncomingCall
from charger.protocols.ocpp_meter import MeterSnapshot, meter_value, next_aligned, ocpp_time, sampled_values
from charger.protocols.ocpp_status import (
    ChargePointStatus,
    ConnectorView,
    StatusReport,
    StatusReporter,
    connector_view,
)

from charger.behaviour import Pending, Timer
from charger.errors import CallError

__all__ = ["LinkEventsToActor", "StationReports"]

_FREE = frozenset({ChargePointStatus.AVAILABLE, ChargePointStatus.PREPARING})


class StationReports(LinkCore):
    reporter: StatusReporter
    status_in_flight: dict[int, ConnectorView]
    status_timer: Timer | None
    sample_timer: Timer | None
    aligned_timer: Timer | None

    def init_reports(self) -> None:
        self.reporter = StatusReporter()
        self.status_in_flight = {}
        self.status_timer = self.sample_timer = self.aligned_timer = None
        self.observe_station()

    # --- status -----------------------------------------------------------------------------------

    def observe_station(self) -> None:
        status = ChargePointStatus.AVAILABLE if self.station_operative else ChargePointStatus.UNAVAILABLE
        self.reporter.observe(0, ConnectorView(status), time.time())

    def on_connector_status(self, status: ConnectorStatus) -> None:
        connector = self.connector_of.get(status.connector)
        if connector is None:
            return
        self.status[connector] = status
        operative = self.operative.get(connector, True) and self.station_operative
        reserved = any(r.expires_at > time.time() for r in status.reservations)
        view = connector_view(status.state, status.faults, status.token_id, operative=operative, reserved=reserved)
        if view.status in _FREE and connector in self.finishing.values():
            # Unplugged, but its StopTransaction is not queued yet (the bill settles): still Finishing.
            view = ConnectorView(ChargePointStatus.FINISHING, view.error_code, view.info)
        self.reporter.observe(connector, view, time.time())
        self.flush_statuses()

    def forget_told(self) -> None:
        self.reporter.forget_told()
        self.status_in_flight.clear()

    def flush_statuses(self) -> None:
        """Send the changes that have lasted MinimumStatusDuration; wake up for the next one."""
        if not self.accepted:
            return
        minimum = self.keys.integer("MinimumStatusDuration")
        now = time.time()
        for report in self.reporter.due(now, minimum):
            if self.status_in_flight.get(report.connector_id) != report.view:
                self.send_status(report)
        if self.status_timer is not None:
            self.status_timer.cancel()
            self.status_timer = None
        later = self.reporter.next_due(minimum)
        if later is not None and later > now:
            self.status_timer = self.start_timer(later - now + 0.01, self.flush_statuses)

    def send_status(self, report: StatusReport, *, triggered: bool = False) -> None:
        self.status_in_flight[report.connector_id] = report.view
        self.run_task(self._send_status(report, triggered))

    def _send_status(self, report: StatusReport, triggered: bool) -> Generator[Pending, Any, None]:
        try:
            yield self.call_csms("StatusNotification", report.to_wire(ocpp_time(report.since)), triggered=triggered)
            self.reporter.told(report)
        except CsmsError as exc:  # the CSMS saw it and failed: resending the same status would not help
            self.reporter.told(report)
            self.log.warning("StatusNotification of connector %d: %s", report.connector_id, exc)
        except LINK_UNAVAILABLE as exc:
            self.log.info("StatusNotification of connector %d not sent: %s", report.connector_id, exc)
        finally:
            if self.status_in_flight.get(report.connector_id) == report.view:
                del self.status_in_flight[report.connector_id]

    def current_reports(self, connector: int | None) -> list[StatusReport]:
        wanted = range(len(self.evses) + 1) if connector is None else [connector]
        reports = [self.reporter.current(c) for c in wanted]
        return [r for r in reports if r is not None]

    # --- meter values -----------------------------------------------------------------------------

    def arm_meter_timers(self) -> None:
        for timer in (self.sample_timer, self.aligned_timer):
            if timer is not None:
                timer.cancel()
        self.sample_timer = self.aligned_timer = None
        interval = self.keys.integer("MeterValueSampleInterval")
        if interval > 0:
            self.sample_timer = self.start_timer(interval, self._sample, repeat=True)
        self._arm_aligned()

    def _arm_aligned(self, after: float | None = None) -> None:
        interval = self.keys.integer("ClockAlignedDataInterval")
        if interval > 0:
            now = time.time()
            due = next_aligned(max(now, after or now), interval)
            self.aligned_timer = self.start_timer(due - now, lambda: self._aligned(due))

    def snapshot(self, connector: int) -> MeterSnapshot:
        status, reading = self.status.get(connector), self.readings.get(connector)
        fresh = reading is not None and reading.online
        energy = reading.energy_wh if reading is not None and fresh else None
        session = self.running_session(connector)
        if energy is None and session is not None and status is not None and status.energy_wh is not None:
            start = self.tx_start_wh.get(session)
            if start is None:
                record = self.ledger.get(session)
                start = None if record is None or record.start_payload is None else record.start_payload["meterStart"]
            energy = None if start is None else start + status.energy_wh
        offered = None if status is None else (status.current_limit_a if status.pwm_duty_percent is not None else 0.0)
        return MeterSnapshot(
            energy_wh=energy,
            power_w=reading.power_w if reading is not None and fresh else (status.power_w if status else None),
            currents_a=tuple(reading.currents_a) if reading is not None and fresh else (),
            voltages_v=tuple(reading.voltages_v) if reading is not None and fresh else (),
            current_offered_a=offered,
        )

    def _reporting_sessions(self) -> dict[int, str]:
        """Connector -> session of the transactions whose meter values go into the queue now."""
        return {
            record.connector_id: record.session_id
            for record in self.ledger.open_sessions()
            if self.running_session(record.connector_id) == record.session_id
            and record.session_id not in self.finishing
        }

    def _meter_values(
        self, connector: int, measurands: tuple[str, ...], context: str, at: float | None = None
    ) -> dict[str, Any] | None:
        values = sampled_values(measurands, self.snapshot(connector), context)
        stamp = time.time() if at is None else at
        return {"connectorId": connector, "meterValue": [meter_value(stamp, values)]} if values else None

    def _sample(self) -> None:
        measurands = self.keys.csl("MeterValuesSampledData")
        for_stop = self.keys.csl("StopTxnSampledData")
        for connector, session in self._reporting_sessions().items():
            payload = self._meter_values(connector, measurands, "Sample.Periodic")
            if payload is not None:
                self.enqueue("MeterValues", payload, session)
            self._keep_for_stop(session, connector, for_stop, "Sample.Periodic")

    def _keep_for_stop(
        self, session: str, connector: int, measurands: tuple[str, ...], context: str, at: float | None = None
    ) -> None:
        """StopTxnSampledData / StopTxnAlignedData: kept in the ledger for the StopTransaction's
        transactionData, so they survive a restart of the link like the transaction does."""
        payload = self._meter_values(connector, measurands, context, at)
        if payload is not None:
            self.ledger.add_transaction_data(session, payload["meterValue"][0])

    def _aligned(self, due: float) -> None:
        """The readings of the aligned instant `due` (stamped with it, read now: a timer is a little late)."""
        self._arm_aligned(after=due)
        measurands = self.keys.csl("MeterValuesAlignedData")
        sessions = self._reporting_sessions()
        for_stop = self.keys.csl("StopTxnAlignedData")
        for connector, session in sessions.items():
            self._keep_for_stop(session, connector, for_stop, "Sample.Clock", at=due)
        for connector in range(1, len(self.evses) + 1):
            payload = self._meter_values(connector, measurands, "Sample.Clock", at=due)
            if payload is None:
                continue
            if connector in sessions:
                self.enqueue("MeterValues", payload, sessions[connector])
            elif self.accepted:
                self.run_task(self.send_meter_values(payload))

    def send_meter_values(self, payload: dict[str, Any], *, triggered: bool = False) -> Generator[Pending, Any, None]:
        """MeterValues outside the queue (no transaction, or triggered): lost if the CSMS is away."""
        try:
            yield self.call_csms("MeterValues", payload, triggered=triggered)
        except (*LINK_UNAVAILABLE, CsmsError) as exc:
            self.log.info("MeterValues of connector %s not delivered: %s", payload["connectorId"], exc)

    def triggered_meter_values(self, connector: int | None) -> Generator[Pending, Any, None]:
        measurands = self.keys.csl("MeterValuesSampledData")
        for c in range(1, len(self.evses) + 1) if not connector else [connector]:
            payload = self._meter_values(c, measurands, "Trigger")
            if payload is None:
                continue
            transaction_id = self.transaction_id_of(c)
            if transaction_id is not None:
                payload["transactionId"] = transaction_id
            yield from self.send_meter_values(payload, triggered=True)

    # --- availability -----------------------------------------------------------------------------

    def set_availability(self, connector: int, operative: bool) -> Generator[Pending, Any, bool]:
        """Ask the EVSE manager; on success persist it and report the new status."""
        try:
            yield self.call(self.evses[connector - 1], SetAvailability(available=operative), timeout=5.0)
        except CallError as exc:
            self.log.warning("connector %d cannot become %s: %s", connector, _word(operative), exc)
            return False
        self.operative[connector] = operative
        self.ledger.set_meta(f"operative:{connector}", operative)
        self.log.info("connector %d is now %s", connector, _word(operative))
        status = self.status.get(connector)
        if status is not None:
            self.on_connector_status(status)
        return True

    def save_schedule(self) -> None:
        self.ledger.set_meta("scheduled", {str(c): v for c, v in self.scheduled.items()})

    def set_station_operative(self, operative: bool) -> None:
        self.station_operative = operative
        self.ledger.set_meta("station_operative", operative)
        self.observe_station()
        for status in list(self.status.values()):
            self.on_connector_status(status)
        self.flush_statuses()

    def apply_scheduled_availability(self, connector: int) -> None:
        """A transaction was billed: carry out the ChangeAvailability that waited for it."""
        if connector not in self.scheduled or self.running_session(connector) is not None:
            return
        operative = self.scheduled.pop(connector)
        self.save_schedule()
        self.run_task(self.set_availability(connector, operative))


def _word(operative: bool) -> str:
    return "Operative" if operative else "Inoperative"


class _Receiver(Protocol):
    """The part of `BackendLink` that `LinkEventsToActor` hands events to."""

    def post(self, callback: Callable[[], Any]) -> Callable[[], None]: ...

    def run_task(self, work: Any) -> None: ...

    def on_connected(self, connection: int) -> None: ...

    def on_disconnected(self, connection: int, reason: str) -> None: ...

    def on_connect_failed(self, reason: str, retry_in_s: float) -> None: ...

    def on_csms_call(self, connection: int, call: IncomingCall, reply: CsmsReply) -> None: ...


class LinkEventsToActor:
    """`LinkEvents` for the loop thread: each event runs on the actor's thread."""

    def __init__(self, actor: _Receiver) -> None:
        self._actor = actor

    def _post(self, work: Callable[[], Any]) -> None:
        self._actor.post(work)()

    def connected(self, connection: int) -> None:
        self._post(lambda: self._actor.on_connected(connection))

    def disconnected(self, connection: int, reason: str) -> None:
        self._post(lambda: self._actor.on_disconnected(connection, reason))

    def connect_failed(self, reason: str, retry_in_s: float) -> None:
        self._post(lambda: self._actor.on_connect_failed(reason, retry_in_s))

    def csms_call(self, connection: int, call: IncomingCall, reply: CsmsReply) -> None:
        self._post(lambda: self._actor.on_csms_call(connection, call, reply))

    def answered(self, after: Callable[[], Any]) -> None:
        self._post(lambda: self._actor.run_task(after()))
