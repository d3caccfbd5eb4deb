"""BackendLink: the station's OCPP 1.6J link to its CSMS (Core, Firmware Management, Local Auth List
Management, Reservation, Remote Trigger, Smart Charging, security profiles 0-3 and the Security
Whitepaper's extensions). One per station; the n-th EVSE manager wired to it is OCPP connector n.

The connection itself (websockets and the `ocpp` library) runs on this actor's asyncio I/O thread
(`charger.actors.ocpp_link`); every decision, all state and every SQLite write stay on the actor's
thread. What it does:

- Boot: BootNotification on the first connection after the actor starts (a restart or a Reset boots
  again; a plain reconnect does not, OCPP-J §5.4). Pending and Rejected are retried after the interval,
  and nothing else is sent until Accepted, except what the CSMS triggers while Pending. Heartbeat every
  HeartbeatInterval (the interval of the accepted BootNotification, stored as that key).
- Status: a StatusNotification per connector (and connector 0) for every change of its OCPP status
  that lasts MinimumStatusDuration; everything again after a reconnect.
- Transactions: StartTransaction when the EVSE manager starts one (meterStart = its start register),
  StopTransaction when it has billed it (meterStop = its stop register, its stop reason), and sampled
  and clock-aligned MeterValues, all through the persistent queue (`charger.ocpp_store`) in order,
  with TransactionMessageAttempts and TransactionMessageRetryInterval. The ledger (`ocpp_ledger`)
  makes sure a session is reported exactly once even across a SIGKILL; at start the link compares it
  with the EVSE managers' session histories and reports what it missed while it was down.
- CSMS requests: `charger.actors.ocpp_csms_calls`; Firmware Management and the Security Whitepaper's
  requests and security events: `charger.actors.ocpp_maintenance` (firmware, diagnostics, security).
- Smart Charging (profiles, composite schedule, each connector's limit as this link's lease):
  `charger.actors.ocpp_smart_link`.
- Reservations: `charger.actors.ocpp_reservations` (kept in the ledger's file, enforced by the connectors).
- Authorization: `AuthorizeToken` answers from the local list, the cache and the CSMS (OCPP 1.6 §3.5).

Reset (soft or hard) stops running transactions with reason SoftReset or HardReset, waits until
their StopTransactions are queued, then the actor exits normally: its supervisor restarts it (a
permanent child), and it boots again. A hard reset of the whole box needs a hook into the system
that this actor does not have; it restarts the link only.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Generator
from typing import Any, ClassVar

import ocpp.messages
from charger.actors.charging import (
    EVSE_MANAGER,
    POWERMETER,
    ChargingSessionEvent,
    ConnectorStatus,
    PowerMeterReading,
    SessionCompleted,
)
from charger.actors.ocpp_base import LINK_UNAVAILABLE
from charger.actors.ocpp_csms_calls import CSMS_HANDLERS, serve_csms_call
from charger.actors.ocpp_diagnostics import UploadJobs
from charger.actors.ocpp_firmware import FIRMWARE_CONFIG, FirmwareJobs
from charger.actors.ocpp_ledger import Ledger
from charger.actors.ocpp_link import CsmsError, CsmsReply, LinkSettings, OcppLink
from charger.actors.ocpp_messages import (
    BACKEND_LINK,
    AuthorizeToken,
    BackendLinkStatus,
    GetBackendLinkStatus,
    TokenAuthorization,
)
from charger.actors.ocpp_reporting import TransactionReporting
from charger.actors.ocpp_reservations import Reservations
from charger.actors.ocpp_security import SecurityCenter
from charger.actors.ocpp_smart_link import SMART_CHARGING_SCHEMA, SmartChargingLink
from charger.actors.ocpp_station import LinkEventsToActor, StationReports
from charger.protocols.ocpp_config import FeatureProfile, OcppConfiguration, StationFacts, standard_keys, with_defaults
from charger.protocols.ocpp_frames import IncomingCall
from charger.protocols.ocpp_link_rules import BackoffPolicy, Registration, endpoint_url, transport_problems
from charger.protocols.ocpp_meter import supported_measurands

from charger.behaviour import Pending, Timer, handles
from charger.interfaces import Requirement
from charger.ocpp_store import OcppStore

__all__ = ["BackendLink"]

_FEATURES = frozenset(
    {
        FeatureProfile.CORE,
        FeatureProfile.FIRMWARE_MANAGEMENT,
        FeatureProfile.LOCAL_AUTH_LIST_MANAGEMENT,
        FeatureProfile.REMOTE_TRIGGER,
        FeatureProfile.SMART_CHARGING,
        FeatureProfile.RESERVATION,
    }
)
_CLOSE_WAIT_S = 5.0
_BOOT_FIELDS = {
    "vendor": "chargePointVendor",
    "model": "chargePointModel",
    "serial_number": "chargePointSerialNumber",
    "charge_box_serial_number": "chargeBoxSerialNumber",
    "firmware_version": "firmwareVersion",
    "meter_type": "meterType",
    "meter_serial_number": "meterSerialNumber",
}
_FILE = {"type": ["string", "null"], "default": None}
_STATION = {
    "type": "object",
    "additionalProperties": False,
    "default": {},
    "description": "What BootNotification says about the station.",
    "properties": {
        "vendor": {"type": "string", "minLength": 1, "maxLength": 20, "default": "charger"},
        "model": {"type": "string", "minLength": 1, "maxLength": 20, "default": "charger-ac"},
        "serial_number": {"type": "string", "maxLength": 25},
        "charge_box_serial_number": {"type": "string", "maxLength": 25},
        "firmware_version": {"type": "string", "maxLength": 50},
        "meter_type": {"type": "string", "maxLength": 25},
        "meter_serial_number": {"type": "string", "maxLength": 25},
    },
}


class BackendLink(TransactionReporting, StationReports, Reservations):
    description = "OCPP 1.6J backend link: boot, status, transactions (persistent queue), remote control, auth."
    provides = {"backend": BACKEND_LINK}
    requires = {
        "evse": Requirement(interface=EVSE_MANAGER, min_connections=1, max_connections=64),
        "meter": Requirement(
            interface=POWERMETER,
            min_connections=0,
            max_connections=64,
            description="Optional: the n-th meter is the n-th EVSE's (phase currents, voltages, idle register).",
        ),
    }
    config_schema: ClassVar = {
        "type": "object",
        "additionalProperties": False,
        "required": ["csms_url", "charge_point_id"],
        "properties": {
            "csms_url": {"type": "string", "pattern": "^wss?://", "description": "Endpoint; the id is appended."},
            "charge_point_id": {"type": "string", "minLength": 1, "maxLength": 48},
            "security_profile": {"type": "integer", "minimum": 0, "maximum": 3, "default": 0},
            "authorization_key": {"type": ["string", "null"], "default": None, "description": "Hex, 16-20 bytes."},
            "authorization_key_file": {**_FILE, "description": "File holding the hex key (relative: state dir)."},
            "ca_file": {**_FILE, "description": "PEM CA(s) the CSMS certificate must chain to; null: system CAs."},
            "client_cert_file": {**_FILE, "description": "Profile 3: PEM client certificate (chain)."},
            "client_key_file": {**_FILE, "description": "Profile 3: its PEM private key."},
            "station": _STATION,
            "firmware": FIRMWARE_CONFIG,
            "configuration": {
                "type": "object",
                "default": {},
                "additionalProperties": {"type": ["string", "integer", "boolean"]},
                "description": "Default values of OCPP configuration keys (a CSMS may change them).",
            },
            "response_timeout_s": {"type": "number", "exclusiveMinimum": 0, "default": 30},
            "open_timeout_s": {"type": "number", "exclusiveMinimum": 0, "default": 10},
            "smart_charging": SMART_CHARGING_SCHEMA,
            "boot_retry_s": {
                "type": "number",
                "exclusiveMinimum": 0,
                "default": 60,
                "description": "Boot retry when a Pending or Rejected answer gives no interval.",
            },
        },
    }

    # --- lifecycle ------------------------------------------------------------------------------------

    def init(self) -> Generator[Pending, Any, None]:
        ocpp.messages.ASYNC_VALIDATION = False  # validate on the loop thread: no executor threads to leak
        self.evses = list(self.connections["evse"])
        self.meters = list(self.connections.get("meter") or [])
        if self.meters and len(self.meters) != len(self.evses):
            raise ValueError(f"{len(self.meters)} meters for {len(self.evses)} EVSEs: wire one per EVSE or none")
        self.connector_of = {name: i + 1 for i, name in enumerate(self.evses)}
        self.store = OcppStore(self.state_dir, self.name)
        self.ledger = Ledger(os.path.join(self.state_dir, f"{self.name}-sessions.db"))
        self.security, self.firmware, self.uploads = SecurityCenter(self), FirmwareJobs(self), UploadJobs(self)
        self.keys = self._configuration()
        self.local_list = self.store.auth.load_local_list()
        self.cache = self.store.auth.load_cache(self.keys.integer("LocalAuthListMaxLength"))
        self.settings = self._link_settings()
        problems = self._transport_problems(self.settings.security_profile)
        if problems:
            raise ValueError("backend link: " + "; ".join(problems))
        self.registration = Registration.UNKNOWN
        self.connection = self.connections_opened = 0
        self.last_error: str | None = None
        self.boot_not_before = 0.0
        self.pumping = False
        self.pump_timer = None
        self.heartbeat_timer: Timer | None = None
        self.finishing, self.tx_start_wh = {}, {}
        self.status, self.readings = {}, {}
        self.operative = {c: self.ledger.meta(f"operative:{c}") is not False for c in self.connector_of.values()}
        self.scheduled = {int(c): bool(v) for c, v in (self.ledger.meta("scheduled") or {}).items()}
        self.station_operative = self.ledger.meta("station_operative") is not False
        self.init_reports()
        self.security.started()
        self.smart = SmartChargingLink(self)
        for evse in self.evses:
            self.subscribe(evse, ConnectorStatus, ChargingSessionEvent, SessionCompleted)
        for meter in self.meters:
            self.subscribe(meter, PowerMeterReading)
        self.recover_unconfirmed()
        self.init_reservations()
        for status in (yield from self.reconcile()):
            self.on_connector_status(status)
        self.reservations_ready()
        for connector, operative in self.operative.items():
            if not operative:  # re-assert what the CSMS asked for before the restart
                self.run_task(self.set_availability(connector, False))
        self.arm_meter_timers()
        self.smart.start()
        self.link = OcppLink(self.settings, LinkEventsToActor(self), self.log)
        yield self.run_async(self._start_link())
        self.firmware.resume(self)
        self.log.info(
            "backend link %s -> %s (security profile %d, %d connectors, %d messages queued)",
            self.config["charge_point_id"],
            self.config["csms_url"],
            self.settings.security_profile,
            len(self.evses),
            len(self.store.queue),
        )

    async def _start_link(self) -> None:
        self.link.start()

    def terminate(self, reason: str) -> None:
        link: OcppLink | None = getattr(self, "link", None)
        if link is not None:  # close the WebSocket here; the runtime then stops the loop and its thread
            try:
                asyncio.run_coroutine_threadsafe(link.close(), self._rt.io().loop).result(timeout=_CLOSE_WAIT_S)
            except Exception as exc:  # noqa: BLE001 - a stuck close must not keep the actor from exiting
                self.log.warning("backend link: closing the connection failed: %s", exc)
        for closable in (
            getattr(self, "store", None),
            getattr(self, "ledger", None),
            getattr(self, "security", None),
            getattr(self, "firmware", None),
            getattr(self, "smart", None),
        ):
            if closable is not None:
                closable.close()

    # --- configuration ------------------------------------------------------------------------------

    def _configuration(self) -> OcppConfiguration:
        facts = StationFacts(
            number_of_connectors=len(self.evses),
            feature_profiles=_FEATURES,
            measurands=supported_measurands(with_meter=bool(self.meters)),
        )
        defaults = {k: _config_text(v) for k, v in self.config["configuration"].items()}
        defaults["SecurityProfile"] = str(max(self.config["security_profile"], int(defaults.get("SecurityProfile", 0))))
        key = self._authorization_key()
        if key is not None:
            defaults["AuthorizationKey"] = key
        keys = OcppConfiguration(with_defaults(standard_keys(facts), defaults), self.store.config.load())
        for name, why in keys.ignored_stored.items():
            self.log.warning("stored configuration key %s ignored: %s", name, why)
        return keys

    def _authorization_key(self) -> str | None:
        path = self._path(self.config["authorization_key_file"])
        if path is not None:
            with open(path, encoding="utf-8") as file:
                return file.read().strip()
        key: str | None = self.config["authorization_key"]
        return key

    def _path(self, path: str | None) -> str | None:
        return None if path is None else os.path.join(self.state_dir, path)  # an absolute path stays as it is

    def _link_settings(self) -> LinkSettings:
        keys, cfg = self.keys, self.config
        ping = keys.integer("WebSocketPingInterval")
        signed = self.security.client_files()  # CertificateSigned replaces the configured certificate
        cert_file, key_file = signed or (self._path(cfg["client_cert_file"]), self._path(cfg["client_key_file"]))
        return LinkSettings(
            url=endpoint_url(cfg["csms_url"], cfg["charge_point_id"]),
            charge_point_id=cfg["charge_point_id"],
            security_profile=max(cfg["security_profile"], keys.integer("SecurityProfile")),  # never a downgrade
            password=keys.authorization_password(),
            ca_file=self._path(cfg["ca_file"]),
            extra_ca_pem=self.security.central_system_roots(),
            client_cert_file=cert_file,
            client_key_file=key_file,
            ping_interval_s=float(ping) if ping > 0 else None,
            open_timeout_s=cfg["open_timeout_s"],
            response_timeout_s=cfg["response_timeout_s"],
            backoff=BackoffPolicy(
                keys.integer("RetryBackOffWaitMinimum"),
                keys.integer("RetryBackOffRandomRange"),
                keys.integer("RetryBackOffRepeatTimes"),
            ),
            supported_actions=frozenset(CSMS_HANDLERS),
        )

    def _transport_problems(self, profile: int) -> list[str]:
        return transport_problems(
            profile,
            self.config["csms_url"],
            self.config["charge_point_id"],
            has_password=self.keys.authorization_password() is not None,
            has_client_certificate=bool(self.config["client_cert_file"] and self.config["client_key_file"]),
        )

    def profile_ready(self, profile: int) -> bool:
        """Whether ChangeConfiguration may raise SecurityProfile to `profile` (its prerequisites hold)."""
        return not self._transport_problems(profile)

    def configuration_changed(self, key: str, *, link_setting: bool) -> None:
        """A ChangeConfiguration was accepted: take it into use. Connection settings (the key, the
        profile, ping and back-off) are used from the next connection on."""
        if key == "HeartbeatInterval" and self.accepted:
            self.arm_heartbeat()
        elif key in ("MeterValueSampleInterval", "ClockAlignedDataInterval"):
            self.arm_meter_timers()
        elif key == "MinimumStatusDuration":
            self.flush_statuses()
        if link_setting:
            settings = self.settings = self._link_settings()

            async def update() -> None:
                self.link.update(settings)

            self.run_async(update())

    # --- the connection -----------------------------------------------------------------------------

    def on_connected(self, connection: int) -> None:
        self.connection, self.last_error = connection, None
        self.connections_opened += 1
        self.log.info("connected to the CSMS (connection %d)", connection)
        self.forget_told()
        if self.registration is Registration.ACCEPTED:  # a plain reconnect: no new boot (OCPP-J §5.4)
            self.after_accepted()
        else:
            self.run_task(self._boot(connection))

    def on_disconnected(self, connection: int, reason: str) -> None:
        if connection == self.connection:
            self.connection, self.last_error = 0, reason
            self.log.warning("disconnected from the CSMS: %s", reason)

    def on_connect_failed(self, reason: str, retry_in_s: float) -> None:
        self.last_error = reason
        self.security.connect_failed(reason)
        self.log.warning("cannot connect to the CSMS (%s); next try in %.1f s", reason, retry_in_s)

    def on_csms_call(self, connection: int, call: IncomingCall, reply: CsmsReply) -> None:
        self.run_task(serve_csms_call(self, call, reply))

    # --- boot and heartbeat -------------------------------------------------------------------------

    def boot_payload(self) -> dict[str, Any]:
        station = self.config["station"]
        return {wire: station[name] for name, wire in _BOOT_FIELDS.items() if station.get(name)}

    def _boot(self, connection: int) -> Generator[Pending, Any, None]:
        while self.connection == connection and self.registration is not Registration.ACCEPTED:
            wait = self.boot_not_before - time.monotonic()
            if wait > 0:  # Pending or Rejected: the next boot waits for the interval, even across reconnects
                yield self.sleep(wait)
                continue
            try:
                result = yield self.call_csms("BootNotification", self.boot_payload())
            except LINK_UNAVAILABLE:
                return  # the next connection boots again
            except CsmsError as exc:
                self.log.warning("BootNotification failed: %s", exc)
                self.boot_not_before = time.monotonic() + self.config["boot_retry_s"]
                continue
            self.booted(result)

    def booted(self, result: dict[str, Any]) -> None:
        """Apply a BootNotification.conf, from the boot loop or a triggered boot."""
        status, interval = Registration(result["status"]), int(result["interval"])
        self.registration = status
        self.log.info("BootNotification: %s (interval %d s)", status.value, interval)
        if status is not Registration.ACCEPTED:
            self.boot_not_before = time.monotonic() + (interval if interval > 0 else self.config["boot_retry_s"])
            return
        if interval > 0 and interval != self.keys.integer("HeartbeatInterval"):
            change = self.keys.plan_change("HeartbeatInterval", str(interval))
            if change.stores and change.value is not None:
                self.store.config.save(change.key, change.value)
                self.keys.apply(change)
        self.after_accepted()

    def after_accepted(self) -> None:
        self.arm_heartbeat()
        self.flush_statuses()
        self.pump()

    def arm_heartbeat(self) -> None:
        if self.heartbeat_timer is not None:
            self.heartbeat_timer.cancel()
        interval = self.keys.integer("HeartbeatInterval")
        self.heartbeat_timer = self.start_timer(interval, self.heartbeat, repeat=True) if interval > 0 else None

    def heartbeat(self, *, triggered: bool = False) -> Generator[Pending, Any, None]:
        if not (self.accepted or triggered):
            return
        try:
            result = yield self.call_csms("Heartbeat", {}, triggered=triggered)
        except (*LINK_UNAVAILABLE, CsmsError) as exc:
            self.log.info("Heartbeat failed: %s", exc)
            return
        self.log.debug("Heartbeat: the CSMS's time is %s", result.get("currentTime"))

    # --- sessions -----------------------------------------------------------------------------------

    @handles(ChargingSessionEvent)
    def on_session_event(self, event: ChargingSessionEvent) -> None:
        connector = self.connector_of.get(event.connector)
        if connector is None or event.session_id is None:
            return
        self.smart.session_event(connector, event.kind)
        if event.kind == "TransactionStarted":
            if event.meter_wh is not None:
                self.tx_start_wh[event.session_id] = event.meter_wh
            self.transaction_started(connector, event.session_id, event.token_id, event.meter_wh, event.at)
        elif event.kind == "TransactionFinished":
            self.finishing[event.session_id] = connector  # no more samples; StopTransaction once it is billed

    @handles(SessionCompleted)
    def on_session_completed(self, done: SessionCompleted) -> None:
        connector = self.connector_of.get(done.connector)
        if connector is not None:
            self.transaction_completed(connector, done)
            if connector in self.status:  # Finishing may end now that the StopTransaction is queued
                self.on_connector_status(self.status[connector])
            self.apply_scheduled_availability(connector)

    @handles(ConnectorStatus)
    def on_status_var(self, status: ConnectorStatus) -> None:
        self.on_connector_status(status)
        self.reservations_on_status()
        connector = self.connector_of.get(status.connector)
        if connector is not None:
            self.smart.status_seen(connector)
        if connector is not None and connector in self.scheduled:
            self.apply_scheduled_availability(connector)

    @handles(PowerMeterReading)
    def on_reading(self, reading: PowerMeterReading) -> None:
        if self.sender in self.meters:
            self.readings[self.meters.index(self.sender) + 1] = reading

    # --- authorization and the link at a glance -------------------------------------------------------

    @handles(AuthorizeToken)
    def on_authorize_token(self, request: AuthorizeToken) -> Generator[Pending, Any, TokenAuthorization]:
        verdict = yield from self.authorize(request.id_tag)
        self.note_authorization(verdict)
        return verdict

    @handles(GetBackendLinkStatus)
    def on_get_link_status(self, request: GetBackendLinkStatus) -> BackendLinkStatus:
        return BackendLinkStatus(
            csms_url=self.config["csms_url"],
            charge_point_id=self.config["charge_point_id"],
            security_profile=self.settings.security_profile,
            online=self.connection != 0,
            registration=self.registration.value,
            connections=self.connections_opened,
            queued_messages=len(self.store.queue),
            discarded_messages=len(self.store.queue.discarded()),
            last_error=self.last_error,
        )


def _config_text(value: str | int | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
