"""OCPP 1.6J Smart Charging on the backend link: the CSMS's three requests, the profiles kept across
restarts, and the limit they set, sent to every connector as a lease (a part of `BackendLink`).

- SetChargingProfile, ClearChargingProfile and GetCompositeSchedule are answered from the pure logic in
  `charger.protocols.ocpp_smart_charging`, with the bounds of the Smart Charging configuration keys. A
  changed store is on disk (`charger.ocpp_profiles`) before the CSMS hears Accepted.
- A RemoteStartTransaction's chargingProfile (a TxProfile) waits, persisted, for the transaction it
  starts on its connector and is installed when that transaction starts; a session that ends without
  one drops it. Every TxProfile of a connector is cleared when its transaction ends (§3.13.1).
- Leases: the link is a grantor (its actor name) on every connector. Where a profile limits the
  connector, it holds a `GrantLimitLease` valid for `lease_s`, renewed at half time and at once when the
  limit changes (a period boundary, a new or cleared profile, a transaction starting or ending). Where
  none does, it sends `ReleaseLimitLease`, so the connector goes back to the other grantors. The
  ChargePointMaxProfile is shared by the connectors (`charger.protocols.ocpp_smart_eval`), so a
  transaction starting or ending moves the others' limits: lowerings go out first and raises wait until
  they are taken, so the connectors never hold more than the maximum together. A lease is
  in amperes, or in watts when every profile setting the limit counts in W (the EVSE manager converts
  with its own voltage and phases). At most one lease call is in flight per connector (DESIGN §4).
  The fence is a counter in the profile file, raised at every start of the link.

The link does not know the connectors' ratings: `smart_charging` in its config gives them (for
GetCompositeSchedule where no profile applies; the EVSE manager caps every lease by its own rating).
If the link dies, its leases lapse after at most `lease_s` and the connector counts it as failsafe.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

from charger.actors.charging import GrantLimitLease, ReleaseLimitLease
from charger.protocols.ocpp_smart_charging import (
    ActiveTransaction,
    ChargingProfilePurpose,
    ChargingProfileStatus,
    ChargingRateUnit,
    ConnectorElectrics,
    Limit,
    ProfileFormatError,
    ProfileStore,
    SmartChargingConfig,
    StationElectrics,
    clear_charging_profile,
    get_composite_schedule,
    install_profile,
    limit_at,
    parse_charging_profile,
    parse_datetime,
    set_charging_profile,
)

from charger.ocpp_profiles import ProfileFile

if TYPE_CHECKING:
    from charger.actors.backend_link import BackendLink

__all__ = ["SMART_CHARGING_SCHEMA", "SMART_HANDLERS", "UNKNOWN_TRANSACTION_ID", "SmartChargingLink"]

UNKNOWN_TRANSACTION_ID: Final = -1
"""The transactionId of a running transaction whose StartTransaction.conf has not arrived yet: a TxProfile
without transactionId (RemoteStartTransaction's) applies to it, one naming a transactionId does not."""
_RETRY_S = 2.0  # after a lease call failed
_SLACK_S = 0.01  # wake just after a boundary, so the evaluation sees the new period

SMART_CHARGING_SCHEMA: Final = {
    "type": "object",
    "additionalProperties": False,
    "default": {},
    "description": "Smart Charging: the connectors' ratings and the lease window.",
    "properties": {
        "connector_max_current_a": {"type": "number", "exclusiveMinimum": 0, "default": 32},
        "phases": {"type": "integer", "enum": [1, 3], "default": 3},
        "voltage_v": {"type": "number", "exclusiveMinimum": 0, "default": 230},
        "grid_max_current_a": {"type": ["number", "null"], "exclusiveMinimum": 0, "default": None},
        "lease_s": {"type": "number", "minimum": 2, "default": 30, "description": "How long a lease is valid."},
    },
}


@dataclass(frozen=True, slots=True)
class _Want:
    """What the link grants a connector; None fields mean 'not this unit'."""

    amps: float | None
    watts: float | None


_UNKNOWN: Final = "unknown"  # what a connector holds from an earlier incarnation (or after a failed call)


@dataclass(slots=True)
class _Held:
    want: _Want | None
    """None: released."""
    valid_until: float


class SmartChargingLink:
    def __init__(self, link: BackendLink) -> None:
        self.link = link
        cfg = link.config["smart_charging"]
        self.lease_s: float = cfg["lease_s"]
        connector = ConnectorElectrics(
            max_current_a=cfg["connector_max_current_a"], phases=cfg["phases"], voltage_v=cfg["voltage_v"]
        )
        self.electrics = StationElectrics(
            connectors=(connector,) * len(link.evses),
            max_current_a=cfg["grid_max_current_a"],
            phases=cfg["phases"],
            voltage_v=cfg["voltage_v"],
        )
        self.file = ProfileFile(os.path.join(link.state_dir, f"{link.name}-profiles.db"))
        try:
            self.store = self.file.load_profiles()
            self.pending = self.file.load_pending()
        except ProfileFormatError as exc:  # a damaged file must not keep the link from running
            link.log.error("stored charging profiles unreadable, starting without them: %s", exc)
            self.store, self.pending = ProfileStore(), {}
        self.fence = self.file.next_fence()
        self.held: dict[int, _Held | str] = dict.fromkeys(range(1, len(link.evses) + 1), _UNKNOWN)
        self.in_flight: set[int] = set()
        self.lowering: set[int] = set()
        """Connectors whose lease call in flight may lower their limit: raises wait for them."""
        self.retry_at: dict[int, float] = {}
        """Connector -> when to try again after a lease call failed (not at once: it may keep failing)."""
        self.closed = False
        self.running: dict[int, str | None] = {}
        self.timer: Any = None

    def start(self) -> None:
        """After the link knows its connectors' statuses: drop the TxProfiles of transactions that ended
        while it was down, then grant or release on every connector."""
        for connector in self.held:
            self.running[connector] = self.link.running_session(connector)
            if self.running[connector] is None:
                self._save(self.store.end_transaction(connector))
        self.link.log.info("smart charging: %d profiles installed, lease fence %d", len(self.store), self.fence)
        self.refresh()

    def close(self) -> None:
        self.closed = True
        if self.timer is not None:
            self.timer.cancel()
        self.file.close()

    # --- what the profiles say -------------------------------------------------------------------------

    def config(self) -> SmartChargingConfig:
        keys = self.link.keys
        return SmartChargingConfig(
            number_of_connectors=len(self.link.evses),
            max_stack_level=keys.integer("ChargeProfileMaxStackLevel"),
            max_schedule_periods=keys.integer("ChargingScheduleMaxPeriods"),
            max_profiles_installed=keys.integer("MaxChargingProfilesInstalled"),
            allowed_rate_units=SmartChargingConfig.rate_units_from_key(
                ",".join(keys.csl("ChargingScheduleAllowedChargingRateUnit"))
            ),
        )

    def transactions(self) -> dict[int, ActiveTransaction]:
        """The running transactions, with the CSMS's transactionId once known and their start."""
        running = {}
        for connector in self.held:
            session = self.link.running_session(connector)
            if session is None:
                continue
            transaction_id = self.link.transaction_id_of(connector)
            running[connector] = ActiveTransaction(
                transaction_id=UNKNOWN_TRANSACTION_ID if transaction_id is None else transaction_id,
                started_at=self._started_at(session),
            )
        return running

    def _started_at(self, session: str) -> datetime:
        record = self.link.ledger.get(session)
        if record is not None and record.start_payload is not None:
            try:
                return parse_datetime(record.start_payload.get("timestamp"), "timestamp")
            except ProfileFormatError:
                pass
        return _now()

    def _save(self, store: ProfileStore) -> bool:
        """Persist and take `store` if it differs from the current one; whether it did."""
        if store == self.store:
            return False
        self.file.save_profiles(store)
        self.store = store
        return True

    # --- the CSMS's requests ---------------------------------------------------------------------------

    def set_charging_profile(self, payload: dict[str, Any]) -> dict[str, Any]:
        now = _now()
        try:
            result = set_charging_profile(
                self.store.purge_expired(now),
                connector_id=payload["connectorId"],
                cs_charging_profiles=payload["csChargingProfiles"],
                config=self.config(),
                transactions=self.transactions(),
                now=now,
            )
        except ProfileFormatError as exc:
            self.link.log.warning("SetChargingProfile: unreadable profile: %s", exc)
            return {"status": ChargingProfileStatus.REJECTED.value}
        profile_id = payload["csChargingProfiles"].get("chargingProfileId")
        if result.status is ChargingProfileStatus.ACCEPTED:
            self._save(result.store)
            self.link.log.info("SetChargingProfile %s on connector %s: Accepted", profile_id, payload["connectorId"])
            self.refresh()
        else:
            self.link.log.warning("SetChargingProfile %s: %s (%s)", profile_id, result.status.value, result.reason)
        return {"status": result.status.value}

    def clear_charging_profile(self, payload: dict[str, Any]) -> dict[str, Any]:
        try:
            store, status = clear_charging_profile(
                self.store,
                id=payload.get("id"),
                connector_id=payload.get("connectorId"),
                charging_profile_purpose=payload.get("chargingProfilePurpose"),
                stack_level=payload.get("stackLevel"),
            )
        except ProfileFormatError as exc:
            self.link.log.warning("ClearChargingProfile: unreadable request: %s", exc)
            return {"status": "Unknown"}
        if self._save(store):
            self.refresh()
        self.link.log.info("ClearChargingProfile %s: %s", payload, status.value)
        return {"status": status.value}

    def get_composite_schedule(self, payload: dict[str, Any]) -> dict[str, Any]:
        return get_composite_schedule(
            self.store,
            self.electrics,
            connector_id=payload["connectorId"],
            duration=payload["duration"],
            charging_rate_unit=payload.get("chargingRateUnit"),
            transactions=self.transactions(),
            now=_now(),
        )

    def remote_start_profile(self, connector: int, body: object) -> str | None:
        """RemoteStartTransaction's chargingProfile for `connector`: kept for the transaction it starts.
        Returns why it cannot be (the request is then Rejected), or None."""
        try:
            profile = parse_charging_profile(body)
        except ProfileFormatError as exc:
            return str(exc)
        if profile.charging_profile_purpose is not ChargingProfilePurpose.TX_PROFILE:
            return "its chargingProfilePurpose must be TxProfile (§5.11)"
        # checked as if its transaction ran already: the transaction does not exist before the answer
        ahead = {connector: ActiveTransaction(transaction_id=UNKNOWN_TRANSACTION_ID, started_at=_now())}
        check = install_profile(
            self.store.purge_expired(_now()), connector, profile, config=self.config(), transactions=ahead, now=_now()
        )
        if check.status is not ChargingProfileStatus.ACCEPTED:
            return check.reason
        self.pending[connector] = profile
        self.file.save_pending(self.pending)
        return None

    def drop_pending(self, connector: int) -> None:
        """The RemoteStartTransaction that brought a profile for `connector` will not start a transaction."""
        if self.pending.pop(connector, None) is not None:
            self.file.save_pending(self.pending)

    # --- events from the connectors ----------------------------------------------------------------

    def session_event(self, connector: int, kind: str) -> None:
        if kind == "TransactionStarted":
            self._install_pending(connector)
        elif kind == "TransactionFinished":
            self._save(self.store.end_transaction(connector))
            self.refresh()
        elif kind in ("SessionFinished", "PluginTimeout") and connector in self.pending:
            self.drop_pending(connector)
            self.link.log.info("connector %d: RemoteStartTransaction's profile dropped, no transaction", connector)

    def _install_pending(self, connector: int) -> None:
        profile = self.pending.pop(connector, None)
        if profile is None:
            return
        now = _now()
        ahead = {connector: ActiveTransaction(transaction_id=UNKNOWN_TRANSACTION_ID, started_at=now)}
        result = install_profile(
            self.store.purge_expired(now), connector, profile, config=self.config(), transactions=ahead, now=now
        )
        if result.status is ChargingProfileStatus.ACCEPTED:
            self._save(result.store)
        else:
            self.link.log.warning(
                "connector %d: RemoteStartTransaction's profile not installed: %s", connector, result.reason
            )
        self.file.save_pending(self.pending)
        self.refresh()

    def status_seen(self, connector: int) -> None:
        """A ConnectorStatus arrived: a transaction starting or ending changes which profiles apply."""
        session = self.link.running_session(connector)
        if self.running.get(connector, session) != session:
            self.running[connector] = session
            self.refresh()
        self.running[connector] = session

    # --- the leases ------------------------------------------------------------------------------------

    def want(
        self, connector: int, transactions: dict[int, ActiveTransaction], now: datetime
    ) -> tuple[_Want | None, datetime | None]:
        limit = limit_at(self.store, self.electrics, connector, now, transactions=transactions)
        if limit is None:
            return None, None
        return _Want(*self._in_unit(limit)), limit.until

    def _in_unit(self, limit: Limit) -> tuple[float | None, float | None]:
        units = {
            e.profile.charging_schedule.charging_rate_unit
            for e in self.store.installed
            if e.profile.charging_profile_id in limit.profile_ids
        }
        if units == {ChargingRateUnit.W}:
            return None, limit.watts
        return limit.amps, None

    def refresh(self) -> None:
        """Grant, renew or release wherever the connector holds something else than the profiles say,
        then sleep until the next renewal or boundary."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        now_dt, now = _now(), time.time()
        transactions = self.transactions()
        wake: float | None = None
        sends: list[tuple[int, _Want | None]] = []
        for connector in self.held:
            want, until = self.want(connector, transactions, now_dt)
            if until is not None:
                wake = _first(wake, until.timestamp() + _SLACK_S)
            if connector in self.in_flight:
                continue  # looked at again when it settles
            retry_at = self.retry_at.get(connector, 0.0)
            if retry_at > now:
                wake = _first(wake, retry_at)
                continue
            held = self.held[connector]
            if isinstance(held, _Held) and held.want == want:
                if want is None:
                    continue
                renew_at = held.valid_until - self.lease_s / 2
                if renew_at > now:
                    wake = _first(wake, renew_at)
                    continue
            if want is None and held == _UNKNOWN and not self._holds_ours(connector):
                self.held[connector] = _Held(None, now)
                continue
            sends.append((connector, want))
        self._send_lowerings_first(sends, now)
        if wake is not None:
            self.timer = self.link.start_timer(max(wake - time.time(), _SLACK_S), self.refresh)

    def _send_lowerings_first(self, sends: list[tuple[int, _Want | None]], now: float) -> None:
        """A raise waits until no lowering is in flight, so connectors that share the
        ChargePointMaxProfile never hold more than it together while the shares move."""
        sends.sort(key=lambda item: not self._lowers(*item))
        for connector, want in sends:
            if self.lowering and not self._lowers(connector, want):
                continue  # looked at again when the lowering settles
            self._send(connector, want, now)

    def _lowers(self, connector: int, want: _Want | None) -> bool:
        """Whether granting `want` may lower what the connector holds from the link (unknown: it may)."""
        held = self.held[connector]
        if not isinstance(held, _Held):
            return True
        old = held.want
        if want is None:
            return False
        if old is None:
            return True
        if want.amps is not None and old.amps is not None:
            return want.amps < old.amps
        if want.watts is not None and old.watts is not None:
            return want.watts < old.watts
        return True

    def _holds_ours(self, connector: int) -> bool:
        status = self.link.status.get(connector)
        return status is None or self.link.name in status.leases

    def _send(self, connector: int, want: _Want | None, now: float) -> None:
        link, evse = self.link, self.link.evses[connector - 1]
        valid_until = now + self.lease_s
        request: GrantLimitLease | ReleaseLimitLease
        if want is None:
            request = ReleaseLimitLease(grantor=link.name, fence=self.fence)
        else:
            request = GrantLimitLease(
                valid_until=valid_until, amps=want.amps, watts=want.watts, grantor=link.name, fence=self.fence
            )
        previous = self.held[connector]
        self.in_flight.add(connector)
        if self._lowers(connector, want):
            self.lowering.add(connector)

        def taken(_: object) -> None:
            self.held[connector] = _Held(want, valid_until)
            self.retry_at.pop(connector, None)
            if want != getattr(previous, "want", _UNKNOWN):
                link.log.info("connector %d: %s", connector, _describe(want))
            self._settled(connector)

        def failed(exc: BaseException) -> None:
            self.held[connector] = _UNKNOWN
            self.retry_at[connector] = time.time() + _RETRY_S
            link.log.warning("connector %d did not take the smart-charging limit: %s", connector, exc)
            self._settled(connector)

        link.call(evse, request, timeout=5.0).then(taken, failed)

    def _settled(self, connector: int) -> None:
        """A lease call ended: the limit may have changed meanwhile, and the renewal needs a timer."""
        self.in_flight.discard(connector)
        self.lowering.discard(connector)
        if not self.closed:
            self.refresh()


def _describe(want: _Want | None) -> str:
    if want is None:
        return "no charging profile limits it: lease released"
    amount = f"{want.amps:.1f} A" if want.amps is not None else f"{want.watts or 0.0:.0f} W"
    return f"charging profiles limit it to {amount}"


def _first(a: float | None, b: float) -> float:
    return b if a is None else min(a, b)


def _now() -> datetime:
    return datetime.now(UTC)


def _set(link: BackendLink, payload: dict[str, Any]) -> dict[str, Any]:
    return link.smart.set_charging_profile(payload)


def _clear(link: BackendLink, payload: dict[str, Any]) -> dict[str, Any]:
    return link.smart.clear_charging_profile(payload)


def _composite(link: BackendLink, payload: dict[str, Any]) -> dict[str, Any]:
    return link.smart.get_composite_schedule(payload)


SMART_HANDLERS: Final = {
    "ClearChargingProfile": _clear,
    "GetCompositeSchedule": _composite,
    "SetChargingProfile": _set,
}
"""The Smart Charging profile's CSMS requests, for `CSMS_HANDLERS`."""
