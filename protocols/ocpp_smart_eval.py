"""What the installed charging profiles allow at an instant, and the composite schedule (OCPP 1.6 §3.13). No I/O.

Per purpose, the prevailing profile at an instant is the one with the highest stackLevel that covers it
(§3.13.2): a higher profile that is outside [validFrom, validTo), before its start, past its duration
or between two recurrences falls through to the next lower one. At equal stack level a connector's own
TxDefaultProfile wins over the one set on connector 0 (§3.13.1). A connector's own limit is its
prevailing TxProfile (only for the running transaction, matching transactionId when given) or else its
prevailing TxDefaultProfile; the ChargePointMaxProfile caps it, and so does the connector's rating.

The ChargePointMaxProfile limits the whole charge point ("the entire Charge Point", §3.13.2) and the
specification leaves its split over the connectors to the charge point. Here it is shared
(`charger.protocols.ocpp_smart_share`) in its own unit, a current per phase for an A limit (every connector may load
the same phase) or a total power for a W limit: the connectors with a running transaction get an even share,
each capped by its own limit (TxProfile or TxDefaultProfile, and its rating), what one cannot use going
to the others (water-filling); the connectors without a transaction split what is left evenly, so a
transaction that starts before the link re-shares cannot push the sum over the maximum. With no
transaction anywhere nothing flows, and each connector is offered the whole maximum (capped by its own
limit). So whenever a transaction runs, the connector limits add up to at most the ChargePointMaxProfile.
The split depends on which transactions run: a composite schedule for a connector assumes they run on
unchanged. Connector 0 ("the total expected consumption", §5.7) is the sum of the connectors' own
limits (the rating where a connector has none), capped by the ChargePointMaxProfile and the grid
connection. For connector 0, `amps` is the worst-phase current (every connector may load the same phase)
and `watts` the total, so the two are separate bounds.

Units (ChargingRateUnitType, ChargingSchedulePeriod.numberPhases): an A limit caps the current per
phase, a W limit the power; the phases are those of the period (3 when absent) but no more than the
connector has. Combining an A and a W limit at n phases gives amps = min(A, W / (voltage * n)) and
watts = amps * voltage * n.

Relative schedules start when the connector's transaction started; without a transaction, at
`relative_anchor` (GetCompositeSchedule passes its start, so they run as if a transaction started now).
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from charger.protocols.ocpp_smart_share import share_station_max
from charger.protocols.ocpp_smart_store import ActiveTransaction, InstalledProfile, ProfileStore
from charger.protocols.ocpp_smart_types import (
    DEFAULT_NUMBER_PHASES,
    RECURRENCE_SECONDS,
    ChargingProfile,
    ChargingProfileKind,
    ChargingProfilePurpose,
    ChargingRateUnit,
    ChargingSchedule,
    ChargingSchedulePeriod,
    format_datetime,
)

__all__ = [
    "CompositeSchedule",
    "ConnectorElectrics",
    "Limit",
    "StationElectrics",
    "composite_schedule",
    "limit_at",
    "station_max_at",
]

Purpose = ChargingProfilePurpose
_LOOKAHEAD_STEPS = 256
"""How many candidate change points `limit_at` checks before it settles for an earlier `until`."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectorElectrics:
    """What a connector can carry: its rating caps every limit and fills the composite where no profile applies."""

    max_current_a: float
    """Rated current per phase."""
    phases: int = 3
    voltage_v: float = 230.0
    """Phase-to-neutral voltage, for converting between A and W."""


@dataclass(frozen=True, slots=True, kw_only=True)
class StationElectrics:
    """The charge point's connectors (connector 1 first) and its grid connection."""

    connectors: tuple[ConnectorElectrics, ...]
    max_current_a: float | None = None
    """Grid connection per phase; None means the sum of the connector ratings."""
    phases: int = 3
    voltage_v: float = 230.0

    @property
    def number_of_connectors(self) -> int:
        return len(self.connectors)

    def connector(self, connector_id: int) -> ConnectorElectrics:
        if not 1 <= connector_id <= len(self.connectors):
            raise ValueError(f"connector {connector_id} does not exist (1..{len(self.connectors)})")
        return self.connectors[connector_id - 1]


@dataclass(frozen=True, slots=True, kw_only=True)
class Limit:
    """The limit at an instant. For a connector, amps * voltage * number_phases == watts."""

    amps: float
    """Per phase."""
    watts: float
    number_phases: int
    until: datetime | None
    """It holds until this instant (exclusive) at least: the next change, or an earlier point to look again
    if the next change is far away; None when it never changes."""
    min_charging_amps: float | None = None
    """minChargingRate of the prevailing Tx/TxDefault profile, per phase."""
    min_charging_watts: float | None = None
    profile_ids: tuple[int, ...] = ()
    """The chargingProfileIds that set it (connector level first, then ChargePointMaxProfile)."""

    def in_unit(self, unit: ChargingRateUnit) -> float:
        return self.amps if unit is ChargingRateUnit.A else self.watts


@dataclass(frozen=True, slots=True, kw_only=True)
class CompositeSchedule:
    """GetCompositeSchedule's answer (§5.7): the limit from `start` for `duration` seconds."""

    connector_id: int
    start: datetime
    duration: int
    charging_rate_unit: ChargingRateUnit
    periods: tuple[ChargingSchedulePeriod, ...]
    min_charging_rate: float | None = None

    def to_ocpp(self) -> dict[str, Any]:
        """GetCompositeSchedule.conf with status Accepted, camelCase."""
        schedule = ChargingSchedule(
            charging_rate_unit=self.charging_rate_unit,
            charging_schedule_period=self.periods,
            duration=self.duration,
            start_schedule=self.start,
            min_charging_rate=self.min_charging_rate,
        )
        return {
            "status": "Accepted",
            "connectorId": self.connector_id,
            "scheduleStart": format_datetime(self.start),
            "chargingSchedule": schedule.to_ocpp(),
        }


@dataclass(frozen=True, slots=True)
class _Bound:
    """Ceilings from several limits at once; `resolve` turns them into one consistent (amps, watts)."""

    amps: float = math.inf
    watts: float = math.inf
    phases: int = DEFAULT_NUMBER_PHASES

    def meet(self, other: _Bound) -> _Bound:
        return _Bound(min(self.amps, other.amps), min(self.watts, other.watts), min(self.phases, other.phases))

    def resolve(self, voltage_v: float) -> tuple[float, float]:
        amps = min(self.amps, self.watts / (voltage_v * self.phases))
        return amps, amps * voltage_v * self.phases


@dataclass(frozen=True, slots=True)
class _Value:
    amps: float
    watts: float
    phases: int
    min_amps: float | None
    min_watts: float | None
    profile_ids: tuple[int, ...]
    from_profiles: bool
    """False when only ratings set it: no profile applies."""

    def key(self) -> tuple[object, ...]:
        return (self.amps, self.watts, self.phases, self.min_amps, self.min_watts, self.from_profiles)


@dataclass(frozen=True, slots=True)
class _Scene:
    """Everything an evaluation reads besides the instant."""

    store: ProfileStore
    station: StationElectrics
    transactions: Mapping[int, ActiveTransaction]
    anchor: datetime
    """Where Relative schedules start on a connector without a transaction."""


_Hit = tuple[ChargingProfile, ChargingSchedulePeriod]
_Evaluation = tuple[_Value, datetime | None]


def limit_at(
    store: ProfileStore,
    station: StationElectrics,
    connector_id: int,
    at: datetime,
    *,
    transactions: Mapping[int, ActiveTransaction],
    relative_anchor: datetime | None = None,
) -> Limit | None:
    """The limit on `connector_id` (0 = the whole charge point) at `at`, or None when no profile applies.
    Without a transaction on the connector, Relative schedules start at `relative_anchor` (default `at`)."""
    scene = _Scene(store, station, transactions, _whole_second(relative_anchor if relative_anchor is not None else at))
    return _with_until(lambda instant: _evaluate(scene, connector_id, instant), _aware(at))


def station_max_at(store: ProfileStore, station: StationElectrics, at: datetime) -> Limit | None:
    """The prevailing ChargePointMaxProfile alone (for the energy manager), or None when none applies."""
    return _with_until(lambda t: _evaluate_station_max(store, station, t), _aware(at))


def composite_schedule(
    store: ProfileStore,
    station: StationElectrics,
    connector_id: int,
    *,
    start: datetime,
    duration: int,
    transactions: Mapping[int, ActiveTransaction],
    unit: ChargingRateUnit = ChargingRateUnit.A,
) -> CompositeSchedule:
    """The composite schedule (§3.13, §5.7) from `start` (truncated to the second) for `duration` seconds.

    Equals `limit_at` (with `relative_anchor=start`) at every instant, with the rating where that is None.
    Limits are rounded down to 0.1, the precision the schema allows (``multipleOf 0.1``); equal
    consecutive periods are merged. minChargingRate is the highest of the connector's along the way."""
    start = _whole_second(start)
    scene = _Scene(store, station, transactions, start)
    end = start + timedelta(seconds=duration)
    periods: list[ChargingSchedulePeriod] = []
    min_rates: list[float] = []
    instant = start
    while instant < end:
        value, change = _evaluate(scene, connector_id, instant)
        limit = _round_down(value.amps if unit is ChargingRateUnit.A else value.watts)
        min_rate = value.min_amps if unit is ChargingRateUnit.A else value.min_watts
        if min_rate is not None:
            min_rates.append(min_rate)
        if not periods or (periods[-1].limit, periods[-1].number_phases) != (limit, value.phases):
            offset = int((instant - start).total_seconds())
            periods.append(ChargingSchedulePeriod(start_period=offset, limit=limit, number_phases=value.phases))
        if change is not None and change <= instant:  # a bug, but a hang would be worse than a crash
            raise RuntimeError(f"evaluation at {instant} did not move forward")
        instant = change if change is not None and change < end else end
    return CompositeSchedule(
        connector_id=connector_id,
        start=start,
        duration=duration,
        charging_rate_unit=unit,
        periods=tuple(periods),
        min_charging_rate=math.ceil(max(min_rates) * 10 - 1e-6) / 10 if min_rates else None,
    )


# --- one instant ------------------------------------------------------------------------------------


def _with_until(evaluate: Callable[[datetime], _Evaluation], at: datetime) -> Limit | None:
    value, change = evaluate(at)
    if not value.from_profiles:
        return None
    for _ in range(_LOOKAHEAD_STEPS):
        if change is None:
            break
        later, following = evaluate(change)
        if later.key() != value.key():
            break
        change = following
    return Limit(
        amps=value.amps,
        watts=value.watts,
        number_phases=value.phases,
        until=change,
        min_charging_amps=value.min_amps,
        min_charging_watts=value.min_watts,
        profile_ids=value.profile_ids,
    )


def _evaluate(scene: _Scene, connector_id: int, at: datetime) -> _Evaluation:
    """The value at `at` (ratings included) and the next instant it may change: it is constant until then."""
    station_max, change = _prevailing(_entries(scene.store, 0, Purpose.CHARGE_POINT_MAX_PROFILE), at, scene.anchor)
    if connector_id == 0:
        value, connectors_change = _evaluate_station(scene, station_max, at)
    elif station_max is None:
        value, connectors_change = _evaluate_connector(scene, connector_id, None, at)
    else:
        value, connectors_change = _evaluate_shared(scene, connector_id, station_max, at)
    return value, _earliest(change, connectors_change)


def _evaluate_shared(scene: _Scene, connector_id: int, station_max: _Hit, at: datetime) -> _Evaluation:
    """The connector's limit with its share of the ChargePointMaxProfile: it changes whenever any
    connector's own limit does."""
    station = scene.station
    in_watts = station_max[0].charging_schedule.charging_rate_unit is ChargingRateUnit.W
    budget_amps, budget_watts = _bound(station_max, station.phases).resolve(station.voltage_v)
    caps: dict[int, float] = {}
    change: datetime | None = None
    for other, electrics in enumerate(station.connectors, start=1):
        own, own_change = _connector_level(scene, other, at)
        change = _earliest(change, own_change)
        bound = _Bound(amps=electrics.max_current_a, phases=electrics.phases)
        if own is not None:
            bound = bound.meet(_bound(own, electrics.phases))
        amps, watts = bound.resolve(electrics.voltage_v)
        caps[other] = watts if in_watts else amps
    shares = share_station_max(budget_watts if in_watts else budget_amps, caps, scene.transactions.keys())
    share = shares[connector_id]
    value, _ = _evaluate_connector(
        scene, connector_id, station_max, at, share=_Bound(watts=share) if in_watts else _Bound(amps=share)
    )
    return value, change


def _evaluate_connector(
    scene: _Scene, connector_id: int, station_max: _Hit | None, at: datetime, share: _Bound | None = None
) -> _Evaluation:
    electrics = scene.station.connector(connector_id)
    own, change = _connector_level(scene, connector_id, at)
    bound = _Bound(amps=electrics.max_current_a, phases=electrics.phases)
    if share is not None:
        bound = bound.meet(share)
    ids: list[int] = []
    for hit in (own, station_max):
        if hit is not None:
            bound = bound.meet(_bound(hit, electrics.phases))
            ids.append(hit[0].charging_profile_id)
    amps, watts = bound.resolve(electrics.voltage_v)
    min_amps = min_watts = None
    if own is not None and own[0].charging_schedule.min_charging_rate is not None:
        rate, unit = own[0].charging_schedule.min_charging_rate, own[0].charging_schedule.charging_rate_unit
        min_amps = rate if unit is ChargingRateUnit.A else rate / (electrics.voltage_v * bound.phases)
        min_watts = min_amps * electrics.voltage_v * bound.phases
    return _Value(amps, watts, bound.phases, min_amps, min_watts, tuple(ids), bool(ids)), change


def _evaluate_station(scene: _Scene, station_max: _Hit | None, at: datetime) -> _Evaluation:
    station = scene.station
    total_amps = total_watts = 0.0
    change: datetime | None = None
    ids: list[int] = []
    for connector_id, electrics in enumerate(station.connectors, start=1):
        own, own_change = _connector_level(scene, connector_id, at)
        change = _earliest(change, own_change)
        bound = _Bound(amps=electrics.max_current_a, phases=electrics.phases)
        if own is not None:
            bound = bound.meet(_bound(own, electrics.phases))
            ids.append(own[0].charging_profile_id)
        amps, watts = bound.resolve(electrics.voltage_v)
        total_amps, total_watts = total_amps + amps, total_watts + watts
    if station.max_current_a is not None:
        total_amps = min(total_amps, station.max_current_a)
        total_watts = min(total_watts, station.max_current_a * station.voltage_v * station.phases)
    phases = station.phases
    if station_max is not None:
        cap = _bound(station_max, station.phases)
        cap_amps, cap_watts = cap.resolve(station.voltage_v)
        total_amps, total_watts, phases = min(total_amps, cap_amps), min(total_watts, cap_watts), cap.phases
        ids.append(station_max[0].charging_profile_id)
    return _Value(total_amps, total_watts, phases, None, None, tuple(ids), bool(ids)), change


def _evaluate_station_max(store: ProfileStore, station: StationElectrics, at: datetime) -> _Evaluation:
    hit, change = _prevailing(_entries(store, 0, Purpose.CHARGE_POINT_MAX_PROFILE), at, at)
    if hit is None:
        return _Value(math.inf, math.inf, station.phases, None, None, (), False), change
    bound = _bound(hit, station.phases)
    amps, watts = bound.resolve(station.voltage_v)
    return _Value(amps, watts, bound.phases, None, None, (hit[0].charging_profile_id,), True), change


def _connector_level(scene: _Scene, connector_id: int, at: datetime) -> tuple[_Hit | None, datetime | None]:
    """The connector's own limit: TxProfile overrules TxDefaultProfile while one applies (§3.13.1)."""
    store = scene.store
    transaction = scene.transactions.get(connector_id)
    origin = scene.anchor if transaction is None else _whole_second(transaction.started_at)
    tx_change: datetime | None = None
    if transaction is not None:
        tx_profiles = [
            entry
            for entry in _entries(store, connector_id, Purpose.TX_PROFILE)
            if entry.profile.transaction_id in (None, transaction.transaction_id)
        ]
        hit, tx_change = _prevailing(tx_profiles, at, origin)
        if hit is not None:
            return hit, tx_change
    defaults = [
        *_entries(store, connector_id, Purpose.TX_DEFAULT_PROFILE),
        *_entries(store, 0, Purpose.TX_DEFAULT_PROFILE),
    ]
    hit, default_change = _prevailing(defaults, at, origin)
    return hit, _earliest(tx_change, default_change)


def _entries(store: ProfileStore, connector_id: int, purpose: ChargingProfilePurpose) -> list[InstalledProfile]:
    return [
        entry
        for entry in store.installed
        if entry.connector_id == connector_id and entry.profile.charging_profile_purpose is purpose
    ]


def _prevailing(
    entries: Sequence[InstalledProfile], at: datetime, relative_start: datetime
) -> tuple[_Hit | None, datetime | None]:
    """The highest-stack profile covering `at`, and when that choice or its period may change: the first
    change of the winner or of any profile above it (those below cannot matter while it covers `at`)."""
    ranked = sorted(entries, key=lambda entry: (-entry.profile.stack_level, entry.connector_id == 0))
    change: datetime | None = None
    for entry in ranked:
        period, period_change = _period_at(entry.profile, at, relative_start)
        change = _earliest(change, period_change)
        if period is not None:
            return (entry.profile, period), change
    return None, change


def _period_at(
    profile: ChargingProfile, at: datetime, relative_start: datetime
) -> tuple[ChargingSchedulePeriod | None, datetime | None]:
    """The profile's period covering `at` (None: not covered), and the next instant that may change."""
    if profile.valid_to is not None and at >= profile.valid_to:
        return None, None
    if profile.valid_from is not None and at < profile.valid_from:
        return None, profile.valid_from
    schedule = profile.charging_schedule
    start, cycle = _run_start(profile, at, relative_start)
    elapsed = (at - start).total_seconds()
    if elapsed < 0:
        return None, _earliest(start, profile.valid_to)
    end = schedule.duration
    if cycle is not None:  # a run ends where the next begins
        end = cycle if end is None else min(end, cycle)
    next_run = None if cycle is None else start + timedelta(seconds=cycle)
    if end is not None and elapsed >= end:
        return None, _earliest(next_run, profile.valid_to)
    periods = schedule.charging_schedule_period
    index = bisect_right([period.start_period for period in periods], elapsed) - 1
    if index < 0:  # only in a profile that skipped validation: nothing until its first period
        return None, _earliest(start + timedelta(seconds=periods[0].start_period), profile.valid_to)
    boundary = end
    if index + 1 < len(periods):
        following = periods[index + 1].start_period
        boundary = following if end is None else min(end, following)
    change = None if boundary is None else start + timedelta(seconds=boundary)
    return periods[index], _earliest(change, profile.valid_to)


def _run_start(profile: ChargingProfile, at: datetime, relative_start: datetime) -> tuple[datetime, int | None]:
    """Where the schedule's periods count from at `at`, and the recurrence in seconds (None: no recurrence).
    A Recurring schedule first runs at startSchedule and not before: ChargingProfileKindType says it
    "restarts periodically", so the first run is the one at startSchedule."""
    schedule_start = profile.charging_schedule.start_schedule
    kind = profile.charging_profile_kind
    if kind is ChargingProfileKind.RELATIVE or schedule_start is None:
        return relative_start, None
    if kind is ChargingProfileKind.RECURRING and profile.recurrency_kind is not None:
        cycle = RECURRENCE_SECONDS[profile.recurrency_kind]
        elapsed = (at - schedule_start).total_seconds()
        runs = max(0, math.floor(elapsed / cycle))
        return schedule_start + timedelta(seconds=runs * cycle), cycle
    return schedule_start, None


def _bound(hit: _Hit, phases_available: int) -> _Bound:
    profile, period = hit
    phases = min(period.number_phases or DEFAULT_NUMBER_PHASES, phases_available)
    if profile.charging_schedule.charging_rate_unit is ChargingRateUnit.A:
        return _Bound(amps=period.limit, phases=phases)
    return _Bound(watts=period.limit, phases=phases)


def _earliest(first: datetime | None, second: datetime | None) -> datetime | None:
    if first is None:
        return second
    return first if second is None else min(first, second)


def _round_down(value: float) -> float:
    # the schema's multipleOf 0.1 forces a rounding; down, because a limit must never be exceeded. The
    # tolerance keeps 5.9999999 (a float conversion of 6) at 6.0.
    return math.floor(value * 10 + 1e-6) / 10


def _aware(at: datetime) -> datetime:
    if at.tzinfo is None:
        raise ValueError(f"{at!r} has no timezone")
    return at


def _whole_second(at: datetime) -> datetime:
    return _aware(at).replace(microsecond=0)
