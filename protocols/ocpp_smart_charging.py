"""OCPP 1.6J Smart Charging as pure logic: the three CSMS requests, the installed profiles, the limit now.

The backend-link actor calls `set_charging_profile`, `clear_charging_profile` and `get_composite_schedule`
from its handlers with the keyword arguments the `ocpp` library hands it, persists `ProfileStore.to_json()`
before it answers, and calls `ProfileStore.end_transaction` when a transaction stops. It sends each
connector `limit_at(...)` as a lease valid until `Limit.until`, and the energy manager `station_max_at(...)`.
Time is always passed in (`now`, `at`); nothing here reads a clock.

The pieces: `ocpp_smart_types` (profiles and their JSON), `ocpp_smart_store` (install rules and the
store), `ocpp_smart_eval` (stacking, combining purposes, composite schedule); see their docstrings for
how the specification's open points are read.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final

from charger.protocols.ocpp_smart_eval import (
    CompositeSchedule,
    ConnectorElectrics,
    Limit,
    StationElectrics,
    composite_schedule,
    limit_at,
    station_max_at,
)
from charger.protocols.ocpp_smart_share import share_station_max
from charger.protocols.ocpp_smart_store import (
    STORE_FORMAT_VERSION,
    ActiveTransaction,
    ChargingProfileStatus,
    ClearChargingProfileStatus,
    InstalledProfile,
    InstallResult,
    ProfileStore,
    SmartChargingConfig,
    check_profile,
    install_profile,
)
from charger.protocols.ocpp_smart_types import (
    DEFAULT_NUMBER_PHASES,
    ChargingProfile,
    ChargingProfileKind,
    ChargingProfilePurpose,
    ChargingRateUnit,
    ChargingSchedule,
    ChargingSchedulePeriod,
    ProfileFormatError,
    RecurrencyKind,
    format_datetime,
    parse_charging_profile,
    parse_charging_schedule,
    parse_choice,
    parse_datetime,
    parse_integer,
)

__all__ = [
    "DEFAULT_NUMBER_PHASES",
    "MAX_COMPOSITE_DURATION_S",
    "STORE_FORMAT_VERSION",
    "ActiveTransaction",
    "ChargingProfile",
    "ChargingProfileKind",
    "ChargingProfilePurpose",
    "ChargingProfileStatus",
    "ChargingRateUnit",
    "ChargingSchedule",
    "ChargingSchedulePeriod",
    "ClearChargingProfileStatus",
    "CompositeSchedule",
    "ConnectorElectrics",
    "InstallResult",
    "InstalledProfile",
    "Limit",
    "ProfileFormatError",
    "ProfileStore",
    "RecurrencyKind",
    "SmartChargingConfig",
    "StationElectrics",
    "check_profile",
    "clear_charging_profile",
    "composite_schedule",
    "format_datetime",
    "get_composite_schedule",
    "install_profile",
    "limit_at",
    "parse_charging_profile",
    "parse_charging_schedule",
    "parse_datetime",
    "parse_integer",
    "set_charging_profile",
    "share_station_max",
    "station_max_at",
]

MAX_COMPOSITE_DURATION_S: Final = 7 * 86_400
"""The longest GetCompositeSchedule answered: a longer `duration` is cut to one week, the longest
recurrence (RecurrencyKindType Weekly), so the answer still shows every recurring profile's whole cycle.
A recurring profile repeats forever: without a cap a huge duration would make an answer of millions of
periods. The answer's chargingSchedule.duration tells the CSMS how far it reaches."""


def set_charging_profile(
    store: ProfileStore,
    *,
    connector_id: object,
    cs_charging_profiles: object,
    config: SmartChargingConfig,
    transactions: Mapping[int, ActiveTransaction],
    now: datetime,
) -> InstallResult:
    """SetChargingProfile.req (§5.16). Raises `ProfileFormatError` when the request cannot be read;
    otherwise Accepted with the new store, or Rejected with the old store and the reason."""
    return install_profile(
        store,
        parse_integer(connector_id, "connectorId"),
        parse_charging_profile(cs_charging_profiles),
        config=config,
        transactions=transactions,
        now=now,
    )


def clear_charging_profile(
    store: ProfileStore,
    *,
    id: object = None,  # the request's field name, so the handler's kwargs pass straight through
    connector_id: object = None,
    charging_profile_purpose: object = None,
    stack_level: object = None,
) -> tuple[ProfileStore, ClearChargingProfileStatus]:
    """ClearChargingProfile.req (§5.5): see `ProfileStore.clear`. Raises `ProfileFormatError`."""
    return store.clear(
        charging_profile_id=None if id is None else parse_integer(id, "id"),
        connector_id=None if connector_id is None else parse_integer(connector_id, "connectorId"),
        purpose=None
        if charging_profile_purpose is None
        else parse_choice(ChargingProfilePurpose, charging_profile_purpose, "chargingProfilePurpose"),
        stack_level=None if stack_level is None else parse_integer(stack_level, "stackLevel"),
    )


def get_composite_schedule(
    store: ProfileStore,
    station: StationElectrics,
    *,
    connector_id: object,
    duration: object,
    charging_rate_unit: object = None,
    transactions: Mapping[int, ActiveTransaction],
    now: datetime,
) -> dict[str, Any]:
    """GetCompositeSchedule.conf (§5.7) as camelCase OCPP JSON, from `now` for `duration` seconds.
    Rejected for an unknown connector, a duration below one second or an unknown unit; without a unit the
    schedule is in A, the unit the connector controls. A duration over `MAX_COMPOSITE_DURATION_S` is
    answered for that long."""
    try:
        connector = parse_integer(connector_id, "connectorId")
        seconds = parse_integer(duration, "duration")
        unit = (
            ChargingRateUnit.A
            if charging_rate_unit is None
            else parse_choice(ChargingRateUnit, charging_rate_unit, "chargingRateUnit")
        )
    except ProfileFormatError:
        return {"status": "Rejected"}
    if not 0 <= connector <= station.number_of_connectors or seconds < 1:
        return {"status": "Rejected"}
    seconds = min(seconds, MAX_COMPOSITE_DURATION_S)
    composite = composite_schedule(
        store, station, connector, start=now, duration=seconds, transactions=transactions, unit=unit
    )
    return composite.to_ocpp()
