"""OCPP 1.6 Smart Charging (§3.13, §5.5, §5.7, §5.16): parsing, install rules, stacking, composite schedules.

Table cases follow the specification's examples (the daily 6 kW TxDefaultProfile of §3.13's example
data structure, the weekly calendar with a holiday exception of §3.13.2, the stacking NOTE on duration)
and EVerest's worked edge cases for validFrom/validTo and recurrence (everest-core
doc/smart_charging_profiles.md); hypothesis checks the invariants over random profile sets.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from charger.protocols.ocpp_smart_charging import (
    MAX_COMPOSITE_DURATION_S,
    ActiveTransaction,
    ChargingProfile,
    ChargingProfileKind,
    ChargingProfilePurpose,
    ChargingProfileStatus,
    ChargingRateUnit,
    ChargingSchedule,
    ChargingSchedulePeriod,
    ClearChargingProfileStatus,
    ConnectorElectrics,
    ProfileFormatError,
    ProfileStore,
    RecurrencyKind,
    SmartChargingConfig,
    StationElectrics,
    clear_charging_profile,
    composite_schedule,
    get_composite_schedule,
    install_profile,
    limit_at,
    parse_charging_profile,
    set_charging_profile,
    share_station_max,
    station_max_at,
)
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from ocpp.charge_point import camel_to_snake_case
from ocpp.messages import Call, CallResult, validate_payload

P = ChargingProfilePurpose
T0 = datetime(2013, 1, 1, tzinfo=UTC)  # a Tuesday
CONFIG = SmartChargingConfig(
    number_of_connectors=2, max_stack_level=8, max_schedule_periods=24, max_profiles_installed=20
)
STATION = StationElectrics(connectors=(ConnectorElectrics(max_current_a=32), ConnectorElectrics(max_current_a=32)))
NO_TX: Mapping[int, ActiveTransaction] = {}


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:  # noqa: PLR0917
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def profile(
    profile_id: int,
    purpose: str = "TxDefaultProfile",
    *,
    kind: str = "Absolute",
    stack: int = 0,
    periods: tuple[tuple[int, float], ...] = ((0, 16.0),),
    unit: str = "A",
    start: datetime | None = T0,
    duration: int | None = None,
    recurrency: str | None = None,
    valid_from: datetime | None = None,
    valid_to: datetime | None = None,
    transaction_id: int | None = None,
    phases: int | None = None,
    min_rate: float | None = None,
) -> dict[str, Any]:
    """A csChargingProfiles object in wire form."""
    schedule: dict[str, Any] = {
        "chargingRateUnit": unit,
        "chargingSchedulePeriod": [
            {"startPeriod": s, "limit": limit} | ({} if phases is None else {"numberPhases": phases})
            for s, limit in periods
        ],
    }
    optional_schedule = {"duration": duration, "startSchedule": _iso(start), "minChargingRate": min_rate}
    schedule |= {key: value for key, value in optional_schedule.items() if value is not None}
    body: dict[str, Any] = {
        "chargingProfileId": profile_id,
        "stackLevel": stack,
        "chargingProfilePurpose": purpose,
        "chargingProfileKind": kind,
        "chargingSchedule": schedule,
    }
    optional = {
        "recurrencyKind": recurrency,
        "validFrom": _iso(valid_from),
        "validTo": _iso(valid_to),
        "transactionId": transaction_id,
    }
    return body | {key: value for key, value in optional.items() if value is not None}


def _iso(at: datetime | None) -> str | None:
    return None if at is None else at.strftime("%Y-%m-%dT%H:%M:%SZ")


def installed(
    *items: tuple[int, dict[str, Any]],
    transactions: Mapping[int, ActiveTransaction] = NO_TX,
    config: SmartChargingConfig = CONFIG,
) -> ProfileStore:
    store = ProfileStore()
    for connector_id, payload in items:
        result = set_charging_profile(
            store,
            connector_id=connector_id,
            cs_charging_profiles=payload,
            config=config,
            transactions=transactions,
            now=T0,
        )
        assert result.status is ChargingProfileStatus.ACCEPTED, result.reason
        store = result.store
    return store


def amps(store: ProfileStore, connector_id: int, at: datetime, **kw: Any) -> float | None:
    kw.setdefault("transactions", NO_TX)
    limit = limit_at(store, STATION, connector_id, at, **kw)
    return None if limit is None else round(limit.amps, 6)


def periods_of(result: dict[str, Any]) -> list[tuple[int, float]]:
    return [(p["startPeriod"], p["limit"]) for p in result["chargingSchedule"]["chargingSchedulePeriod"]]


def library_validates(action: str, payload: dict[str, Any], *, result: bool) -> None:
    message = CallResult("1", payload, action) if result else Call("1", action, payload)
    asyncio.run(validate_payload(message, "1.6"))


# --- parsing ----------------------------------------------------------------------------------------


def test_the_wire_form_and_the_ocpp_library_form_parse_to_the_same_profile() -> None:
    wire = profile(7, "TxProfile", kind="Relative", start=None, periods=((0, 6.1), (60, 10)), transaction_id=3)
    wire["chargingSchedule"]["minChargingRate"] = 4.2
    request = {"connectorId": 1, "csChargingProfiles": wire}
    library_validates("SetChargingProfile", request, result=False)
    # what an @on handler receives: numbers as Decimal, every key snake_case
    kwargs = camel_to_snake_case(json.loads(json.dumps(request), parse_float=Decimal))
    assert isinstance(
        kwargs["cs_charging_profiles"]["charging_schedule"]["charging_schedule_period"][0]["limit"], Decimal
    )
    from_library = parse_charging_profile(kwargs["cs_charging_profiles"])
    assert from_library == parse_charging_profile(wire)
    assert from_library.charging_schedule.charging_schedule_period[0].limit == 6.1
    assert from_library.charging_schedule.min_charging_rate == 4.2
    assert from_library.to_ocpp() == wire


def test_dates_are_read_as_utc_whole_seconds() -> None:
    wire = profile(1, valid_from=None)
    wire["validFrom"] = "2013-01-01T02:00:00.750+02:00"
    wire["chargingSchedule"]["startSchedule"] = "2013-01-01T00:00:00"  # no offset: UTC
    parsed = parse_charging_profile(wire)
    assert parsed.valid_from == utc(2013, 1, 1, 0, 0, 0)
    assert parsed.charging_schedule.start_schedule == T0
    assert parsed.to_ocpp()["validFrom"] == "2013-01-01T00:00:00Z"


def _broken(change: Any) -> dict[str, Any]:
    payload = profile(1)
    change(payload)
    return payload


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ("not a profile", "expected an object"),
        (_broken(lambda p: p.pop("chargingProfileId")), "missing charging_profile_id"),
        (_broken(lambda p: p.update(stackLevel="1")), "stackLevel"),
        (_broken(lambda p: p.update(stackLevel=True)), "boolean"),
        (_broken(lambda p: p.update(stackLevel=1.5)), "stackLevel"),
        (_broken(lambda p: p.update(chargingProfilePurpose="Max")), "chargingProfilePurpose"),
        (_broken(lambda p: p.update(chargingProfileKind=3)), "chargingProfileKind"),
        (_broken(lambda p: p.update(validTo="tomorrow")), "validTo"),
        (_broken(lambda p: p.update(validTo=17)), "validTo"),
        (_broken(lambda p: p.update(colour="blue")), "unknown field 'colour'"),
        (_broken(lambda p: p.update(stack_level=0)), "both spellings"),
        (_broken(lambda p: p["chargingSchedule"].update(chargingSchedulePeriod={"startPeriod": 0})), "a list"),
        (_broken(lambda p: p["chargingSchedule"]["chargingSchedulePeriod"][0].update(limit=float("nan"))), "finite"),
        (_broken(lambda p: p["chargingSchedule"]["chargingSchedulePeriod"][0].update(limit="16")), "limit"),
        (_broken(lambda p: p["chargingSchedule"].update(chargingRateUnit="kW")), "chargingRateUnit"),
        (_broken(lambda p: p["chargingSchedule"].pop("chargingRateUnit")), "missing charging_rate_unit"),
    ],
)
def test_unreadable_profiles_raise_a_typed_error(payload: object, message: str) -> None:
    with pytest.raises(ProfileFormatError, match=message):
        parse_charging_profile(payload)


def test_whole_decimals_are_integers() -> None:
    payload = profile(1)
    payload["stackLevel"] = Decimal("2")
    assert parse_charging_profile(payload).stack_level == 2


# --- validation (§3.13.1, §5.16, the profile types, §9.4) --------------------------------------------------

TX7 = {1: ActiveTransaction(transaction_id=7, started_at=utc(2013, 1, 1, 10))}


@pytest.mark.parametrize(
    ("connector_id", "payload", "reason"),
    [
        (1, profile(1, "ChargePointMaxProfile"), "connectorId 0"),
        (0, profile(1, "ChargePointMaxProfile", kind="Relative", start=None), "cannot be Relative"),
        (2, profile(1, "TxProfile"), "without a transaction"),
        (0, profile(1, "TxProfile"), "connectorId > 0"),
        (1, profile(1, "TxProfile", transaction_id=8), "transactionId 8"),
        (3, profile(1), "connectorId 3 does not exist"),
        (-1, profile(1), "does not exist"),
        (1, profile(1, stack=9), "ChargeProfileMaxStackLevel"),
        (1, profile(1, stack=-1), "stackLevel -1"),
        (1, profile(1, periods=((10, 16),)), "startPeriod 0"),
        (1, profile(1, periods=((0, 16), (600, 10), (300, 8))), "increase"),
        (1, profile(1, periods=((0, 16), (0, 10))), "increase"),
        (1, profile(1, periods=tuple((60 * i, 16.0) for i in range(25))), "ChargingScheduleMaxPeriods"),
        (1, profile(1, periods=()), "0 periods"),
        (1, profile(1, periods=((0, -1),)), "negative limit"),
        (1, profile(1, phases=4), "numberPhases 4"),
        (1, profile(1, phases=0), "numberPhases 0"),
        (1, profile(1, duration=-5), "negative duration"),
        (1, profile(1, min_rate=-1), "minChargingRate"),
        (1, profile(1, kind="Recurring"), "recurrencyKind"),
        (1, profile(1, kind="Recurring", recurrency="Daily", start=None), "startSchedule"),
        (1, profile(1, kind="Relative"), "Relative profile has no startSchedule"),
        (1, profile(1, start=None), "Absolute profile needs startSchedule"),
        (1, profile(1, valid_from=utc(2013, 2, 1), valid_to=utc(2013, 1, 1)), "validTo is not after"),
    ],
)
def test_profiles_the_specification_forbids_are_rejected(
    connector_id: int, payload: dict[str, Any], reason: str
) -> None:
    store = installed((0, profile(99, stack=3)))
    result = set_charging_profile(
        store, connector_id=connector_id, cs_charging_profiles=payload, config=CONFIG, transactions=TX7, now=T0
    )
    assert result.status is ChargingProfileStatus.REJECTED
    assert reason in result.reason
    assert result.store is store


@pytest.mark.parametrize(
    ("connector_id", "payload"),
    [
        (0, profile(1, "ChargePointMaxProfile")),
        (0, profile(1, "ChargePointMaxProfile", kind="Recurring", recurrency="Weekly")),
        (0, profile(1)),
        (2, profile(1, kind="Relative", start=None)),
        (1, profile(1, "TxProfile")),
        (1, profile(1, "TxProfile", transaction_id=7, kind="Relative", start=None)),
        (1, profile(1, stack=8, phases=1, duration=0, min_rate=6)),
    ],
)
def test_profiles_the_specification_allows_are_accepted(connector_id: int, payload: dict[str, Any]) -> None:
    result = set_charging_profile(
        ProfileStore(), connector_id=connector_id, cs_charging_profiles=payload, config=CONFIG, transactions=TX7, now=T0
    )
    assert (result.status, result.reason) == (ChargingProfileStatus.ACCEPTED, "")
    assert [(e.connector_id, e.profile.to_ocpp()) for e in result.store.installed] == [(connector_id, payload)]


def test_allowed_rate_units_come_from_the_configuration_key() -> None:
    assert SmartChargingConfig.rate_units_from_key("Current") == {ChargingRateUnit.A}
    assert SmartChargingConfig.rate_units_from_key("Current, Power") == {ChargingRateUnit.A, ChargingRateUnit.W}
    with pytest.raises(ValueError, match="Watts"):
        SmartChargingConfig.rate_units_from_key("Watts")
    amps_only = SmartChargingConfig(
        number_of_connectors=1,
        max_stack_level=1,
        max_schedule_periods=1,
        max_profiles_installed=1,
        allowed_rate_units=SmartChargingConfig.rate_units_from_key("Current"),
    )
    result = install_profile(
        ProfileStore(), 1, parse_charging_profile(profile(1, unit="W")), config=amps_only, transactions={}, now=T0
    )
    assert "ChargingScheduleAllowedChargingRateUnit" in result.reason


def test_max_charging_profiles_installed_counts_replacements() -> None:
    config = SmartChargingConfig(
        number_of_connectors=2, max_stack_level=8, max_schedule_periods=4, max_profiles_installed=2
    )
    store = installed((0, profile(1)), (1, profile(2)), config=config)
    third = set_charging_profile(
        store, connector_id=2, cs_charging_profiles=profile(3), config=config, transactions={}, now=T0
    )
    assert "MaxChargingProfilesInstalled" in third.reason
    replacing = set_charging_profile(
        store, connector_id=1, cs_charging_profiles=profile(3), config=config, transactions={}, now=T0
    )
    assert replacing.status is ChargingProfileStatus.ACCEPTED and len(replacing.store) == 2


def test_an_absolute_profile_without_start_may_be_started_on_arrival() -> None:
    lenient = SmartChargingConfig(
        number_of_connectors=1,
        max_stack_level=1,
        max_schedule_periods=2,
        max_profiles_installed=2,
        allow_absolute_without_start_schedule=True,
    )
    now = utc(2013, 5, 1, 8, 30, 15)
    result = set_charging_profile(
        ProfileStore(),
        connector_id=1,
        cs_charging_profiles=profile(1, start=None, periods=((0, 10), (60, 20))),
        config=lenient,
        transactions={},
        now=now.replace(microsecond=500),
    )
    assert result.store.installed[0].profile.charging_schedule.start_schedule == now
    station = StationElectrics(connectors=(ConnectorElectrics(max_current_a=32),))
    assert limit_at(result.store, station, 1, now + timedelta(seconds=61), transactions={}) is not None


# --- the store: replacement, clearing, transactions, persistence -----------------------------------


def ids(store: ProfileStore) -> list[tuple[int, int]]:
    return [(e.connector_id, e.profile.charging_profile_id) for e in store.installed]


def test_same_id_or_same_stack_level_and_purpose_on_a_connector_replaces() -> None:
    store = installed((0, profile(1, stack=0)), (1, profile(2, stack=1)), (0, profile(3, "ChargePointMaxProfile")))
    assert ids(store) == [(0, 3), (0, 1), (1, 2)]
    store = installed((0, profile(1, stack=0)), (1, profile(2, stack=1)), (2, profile(1, stack=5)))
    assert ids(store) == [(1, 2), (2, 1)]  # same id on another connector
    store = installed((1, profile(2, stack=1)), (1, profile(4, stack=1)))
    assert ids(store) == [(1, 4)]  # same stack level and purpose on the connector
    store = installed((0, profile(1, stack=1)), (1, profile(4, stack=1)))
    assert ids(store) == [(0, 1), (1, 4)]  # §3.13.1: replaced "only for that specific connector"


def test_a_connectors_own_tx_default_wins_at_equal_stack_level() -> None:
    store = installed((0, profile(1, stack=1, periods=((0, 20),))), (1, profile(2, stack=1, periods=((0, 10),))))
    assert amps(store, 1, T0) == 10
    assert amps(store, 2, T0) == 20
    store = installed((0, profile(1, stack=2, periods=((0, 20),))), (1, profile(2, stack=1, periods=((0, 10),))))
    assert amps(store, 1, T0) == 20  # a higher stack level still wins


def test_clear_charging_profile_by_id_and_by_criteria() -> None:
    store = installed(
        (0, profile(1, "ChargePointMaxProfile", stack=0)),
        (0, profile(2, stack=0)),
        (1, profile(3, stack=1)),
        (2, profile(4, stack=1)),
    )
    assert ids(clear_charging_profile(store, id=3)[0]) == [(0, 1), (0, 2), (2, 4)]
    assert clear_charging_profile(store, id=42) == (store, ClearChargingProfileStatus.UNKNOWN)
    # an id decides alone, other criteria are ignored (OCPP 2.0.1 K10 spells this out, 1.6 is silent)
    assert ids(clear_charging_profile(store, id=Decimal(3), connector_id=2)[0]) == [(0, 1), (0, 2), (2, 4)]
    assert ids(clear_charging_profile(store, connector_id=0)[0]) == [(1, 3), (2, 4)]
    assert ids(clear_charging_profile(store, charging_profile_purpose="TxDefaultProfile")[0]) == [(0, 1)]
    assert ids(clear_charging_profile(store, stack_level=1, connector_id=2)[0]) == [(0, 1), (0, 2), (1, 3)]
    assert clear_charging_profile(store, stack_level=5)[1] is ClearChargingProfileStatus.UNKNOWN
    cleared, status = clear_charging_profile(store)
    assert (cleared, status) == (ProfileStore(), ClearChargingProfileStatus.ACCEPTED)
    assert clear_charging_profile(ProfileStore())[1] is ClearChargingProfileStatus.UNKNOWN
    with pytest.raises(ProfileFormatError):
        clear_charging_profile(store, charging_profile_purpose="Everything")


def test_tx_profiles_go_when_their_transaction_ends() -> None:
    transactions = {
        1: ActiveTransaction(transaction_id=7, started_at=T0),
        2: ActiveTransaction(transaction_id=8, started_at=T0),
    }
    store = installed(
        (1, profile(1, "TxProfile")), (2, profile(2, "TxProfile")), (1, profile(3)), transactions=transactions
    )
    assert ids(store.end_transaction(1)) == [(1, 3), (2, 2)]
    assert store.end_transaction(1).end_transaction(1) == store.end_transaction(1)
    # a TxProfile left behind (e.g. across a reboot) never applies to another transaction
    other = {1: ActiveTransaction(transaction_id=9, started_at=T0)}
    pinned = ProfileStore().install(1, parse_charging_profile(profile(5, "TxProfile", transaction_id=7)))
    assert amps(pinned, 1, T0, transactions=other) is None
    assert amps(pinned, 1, T0, transactions=transactions) == 16
    assert amps(pinned, 1, T0) is None


def test_expired_profiles_can_be_purged_without_changing_any_limit() -> None:
    store = installed(
        (1, profile(1, valid_to=utc(2013, 1, 2))),
        (1, profile(2, stack=1, duration=3600)),
        (2, profile(3, kind="Recurring", recurrency="Daily", duration=3600)),
    )
    assert ids(store.purge_expired(utc(2013, 1, 1, 0, 30))) == ids(store)
    assert ids(store.purge_expired(utc(2013, 1, 3))) == [(2, 3)]
    for at in (utc(2013, 1, 3), utc(2013, 1, 4, 0, 30)):
        assert amps(store, 1, at) == amps(store.purge_expired(utc(2013, 1, 3)), 1, at)


def test_the_store_survives_json_and_refuses_anything_else() -> None:
    store = installed((0, profile(1, "ChargePointMaxProfile", unit="W", periods=((0, 11000),))), (2, profile(2)))
    assert ProfileStore.from_json(json.loads(json.dumps(store.to_json()))) == store
    good = store.to_json()
    broken: object
    for broken in (
        [],
        {"version": 2, "profiles": []},
        {"version": 1, "profiles": {}},
        {"version": 1, "profiles": [{"connectorId": "0", "profile": good["profiles"][0]["profile"]}]},
        {"version": 1, "profiles": [{"connectorId": -1, "profile": good["profiles"][0]["profile"]}]},
        {"version": 1, "profiles": [{"connectorId": 0, "profile": {}}]},
        {"version": 1, "profiles": [], "extra": 1},
    ):
        with pytest.raises(ProfileFormatError):
            ProfileStore.from_json(broken)


# --- evaluation: the specification's examples ------------------------------------------------------

# §3.13, example data structure: "a daily default profile that limits the power to 6 kW between 08:00h and 20:00h"
DAILY_6KW = profile(
    100,
    kind="Recurring",
    recurrency="Daily",
    unit="W",
    duration=86400,
    start=utc(2013, 1, 1),
    periods=((0, 11000), (28800, 6000), (72000, 11000)),
    phases=3,
)


@pytest.mark.parametrize(
    ("at", "watts", "until"),
    [
        (utc(2013, 1, 1, 0, 0), 11000, utc(2013, 1, 1, 8)),
        (utc(2013, 1, 1, 7, 59, 59), 11000, utc(2013, 1, 1, 8)),
        (utc(2013, 1, 1, 8, 0), 6000, utc(2013, 1, 1, 20)),
        (utc(2013, 3, 9, 19, 59, 59), 6000, utc(2013, 3, 9, 20)),
        (utc(2013, 3, 9, 20, 0), 11000, utc(2013, 3, 10, 8)),  # the next run starts with 11 kW too
        (utc(2012, 12, 31, 23, 0), None, None),  # a Recurring schedule does not run before startSchedule
    ],
)
def test_daily_recurring_default_profile(at: datetime, watts: float | None, until: datetime | None) -> None:
    store = installed((0, DAILY_6KW))
    limit = limit_at(store, STATION, 1, at, transactions=NO_TX)
    if watts is None:
        assert limit is None
        return
    assert limit is not None
    assert (limit.watts, limit.until, limit.number_phases, limit.profile_ids) == (watts, until, 3, (100,))
    assert limit.amps == pytest.approx(watts / (230 * 3))


def test_daily_profile_composite_in_watts_and_amps() -> None:
    store = installed((0, DAILY_6KW))
    at = utc(2013, 1, 5, 7, 0, 0)
    watts = get_composite_schedule(
        store, STATION, connector_id=1, duration=86400, charging_rate_unit="W", transactions=NO_TX, now=at
    )
    assert watts["status"] == "Accepted" and watts["scheduleStart"] == "2013-01-05T07:00:00Z"
    assert watts["chargingSchedule"]["startSchedule"] == "2013-01-05T07:00:00Z"
    assert watts["chargingSchedule"]["duration"] == 86400
    assert periods_of(watts) == [(0, 11000), (3600, 6000), (46800, 11000)]
    current = get_composite_schedule(store, STATION, connector_id=1, duration=7200, transactions=NO_TX, now=at)
    assert current["chargingSchedule"]["chargingRateUnit"] == "A"
    assert periods_of(current) == [(0, 15.9), (3600, 8.6)]  # 11000/690 and 6000/690, rounded down to 0.1
    library_validates("GetCompositeSchedule", current, result=True)


# §3.13.2: a weekly calendar (full current on weekday nights and weekends, reduced otherwise) with a
# holiday exception one stack level above it
MONDAY = utc(2013, 1, 7)
WEEKLY = profile(
    1,
    kind="Recurring",
    recurrency="Weekly",
    start=MONDAY,
    duration=7 * 86400,
    periods=((0, 32), *((d * 86400 + h * 3600, a) for d in range(5) for h, a in ((6, 10), (23, 32)))),
)
HOLIDAY = profile(
    2, stack=1, start=utc(2013, 1, 9), duration=86400, valid_from=utc(2013, 1, 9), valid_to=utc(2013, 1, 10)
)
HOLIDAY["chargingSchedule"]["chargingSchedulePeriod"][0]["limit"] = 32


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        (utc(2013, 1, 8, 12), 10),  # Tuesday daytime: reduced
        (utc(2013, 1, 8, 23, 30), 32),  # Tuesday night
        (utc(2013, 1, 9, 12), 32),  # the holiday
        (utc(2013, 1, 10, 5, 59), 32),  # Thursday night, back on the calendar
        (utc(2013, 1, 10, 12), 10),  # Thursday daytime
        (utc(2013, 1, 12, 12), 32),  # Saturday
        (utc(2013, 1, 16, 12), 10),  # the next Wednesday: the holiday profile is no longer valid
    ],
)
def test_weekly_calendar_with_a_holiday_on_a_higher_stack_level(at: datetime, expected: float) -> None:
    store = installed((0, WEEKLY), (0, HOLIDAY))
    assert amps(store, 1, at) == expected


def test_weekly_calendar_composite_over_the_holiday() -> None:
    store = installed((0, WEEKLY), (0, HOLIDAY))
    result = get_composite_schedule(
        store, STATION, connector_id=2, duration=2 * 86400, transactions=NO_TX, now=utc(2013, 1, 9)
    )
    assert periods_of(result) == [(0, 32), (86400 + 6 * 3600, 10), (86400 + 23 * 3600, 32)]


@pytest.mark.parametrize(("duration", "expected"), [(None, [20, 20, 20]), (3600, [20, 10, 10])])
def test_without_duration_the_top_stack_level_never_falls_back(duration: int | None, expected: list[float]) -> None:
    # §3.13.2 NOTE: "If you use Stacking without a duration, on the highest stack level, the Charge Point will
    # never fall back to a lower stack level profile."
    store = installed(
        (1, profile(1, stack=0, periods=((0, 10),))), (1, profile(2, stack=1, periods=((0, 20),), duration=duration))
    )
    assert [amps(store, 1, T0 + timedelta(hours=h)) for h in (0, 1, 5)] == expected


def test_tx_profile_overrules_tx_default_and_the_station_maximum_caps_both() -> None:
    tx_start = utc(2013, 1, 1, 10)
    transactions = {1: ActiveTransaction(transaction_id=7, started_at=tx_start)}
    store = installed(
        (0, profile(1, "ChargePointMaxProfile", periods=((0, 20),))),
        (0, profile(2, periods=((0, 32),))),
        (1, profile(3, "TxProfile", kind="Relative", start=None, periods=((0, 10), (1800, 16)), duration=3600)),
        transactions=transactions,
    )
    at = [tx_start + timedelta(minutes=m) for m in (10, 40, 70)]
    assert [amps(store, 1, t, transactions=transactions) for t in at] == [10, 16, 20]
    # connector 2 has no transaction: it is offered what connector 1's transaction leaves of the 20 A
    assert [amps(store, 2, t, transactions=transactions) for t in at] == [10, 4, 0]
    limit = limit_at(store, STATION, 1, at[0], transactions=transactions)
    assert limit is not None and limit.until == tx_start + timedelta(minutes=30) and limit.profile_ids == (3, 1)
    connector = get_composite_schedule(
        store, STATION, connector_id=1, duration=7200, transactions=transactions, now=tx_start
    )
    assert periods_of(connector) == [(0, 10), (1800, 16), (3600, 20)]
    whole = get_composite_schedule(
        store, STATION, connector_id=0, duration=7200, transactions=transactions, now=tx_start
    )
    assert periods_of(whole) == [(0, 20)]  # 10 + 20 A, capped by the ChargePointMaxProfile
    maximum = station_max_at(store, STATION, at[0])
    assert maximum is not None and (maximum.amps, maximum.until, maximum.profile_ids) == (20, None, (1,))


def test_relative_schedules_start_with_the_transaction_or_at_the_anchor() -> None:
    store = installed((0, profile(1, kind="Relative", start=None, periods=((0, 32), (3600, 6)))))
    transactions = {1: ActiveTransaction(transaction_id=7, started_at=utc(2013, 1, 1, 10, 0, 0))}
    assert amps(store, 1, utc(2013, 1, 1, 10, 30), transactions=transactions) == 32
    assert amps(store, 1, utc(2013, 1, 1, 11, 30), transactions=transactions) == 6
    assert amps(store, 2, utc(2013, 1, 1, 11, 30), transactions=transactions) == 32  # as if it started now
    anchored = amps(store, 2, utc(2013, 1, 1, 11, 30), transactions=transactions, relative_anchor=utc(2013, 1, 1, 10))
    assert anchored == 6
    idle = get_composite_schedule(
        store, STATION, connector_id=2, duration=7200, transactions=NO_TX, now=utc(2013, 1, 2)
    )
    assert periods_of(idle) == [(0, 32), (3600, 6)]


# EVerest's worked cases (everest-core doc/smart_charging_profiles.md) for validFrom/validTo and recurrence
RELATIVE_WINDOW = profile(
    1,
    kind="Relative",
    start=None,
    periods=((0, 16), (3600, 6)),
    valid_from=utc(2024, 1, 1, 12),
    valid_to=utc(2024, 1, 1, 20),
)


@pytest.mark.parametrize(
    ("plugged_in", "at", "expected"),
    [
        (utc(2024, 1, 1, 10), utc(2024, 1, 1, 11), None),  # not valid yet
        (utc(2024, 1, 1, 10), utc(2024, 1, 1, 12), 6),  # valid, but the first hour of the session is over
        (utc(2024, 1, 1, 19, 50), utc(2024, 1, 1, 19, 55), 16),
        (utc(2024, 1, 1, 19, 50), utc(2024, 1, 1, 20), None),  # validTo is exclusive
    ],
)
def test_relative_profile_inside_its_validity(plugged_in: datetime, at: datetime, expected: float | None) -> None:
    transactions = {1: ActiveTransaction(transaction_id=1, started_at=plugged_in)}
    assert amps(installed((1, RELATIVE_WINDOW)), 1, at, transactions=transactions) == expected


def test_relative_profile_composite_fills_the_gap_with_the_rating() -> None:
    transactions = {1: ActiveTransaction(transaction_id=1, started_at=utc(2024, 1, 1, 19, 50))}
    result = get_composite_schedule(
        installed((1, RELATIVE_WINDOW)),
        STATION,
        connector_id=1,
        duration=3600,
        transactions=transactions,
        now=utc(2024, 1, 1, 19, 50).replace(microsecond=900),
    )
    assert result["scheduleStart"] == "2024-01-01T19:50:00Z"
    assert periods_of(result) == [(0, 16), (600, 32)]


DAILY_NOON = profile(1, kind="Recurring", recurrency="Daily", start=utc(2024, 1, 1, 12), periods=((0, 32), (3600, 6)))
DAILY_NOON_5H = profile(
    1,
    kind="Recurring",
    recurrency="Daily",
    start=utc(2024, 1, 1, 12),
    duration=18000,
    periods=((0, 32), (3600, 6)),
    valid_from=utc(2024, 2, 1, 12),
    valid_to=utc(2024, 3, 1, 9),
)


@pytest.mark.parametrize(
    ("payload", "at", "expected"),
    [
        (DAILY_NOON, utc(2024, 1, 10, 11, 50), 6),  # yesterday's run still holds
        (DAILY_NOON, utc(2024, 1, 10, 12), 32),
        (DAILY_NOON, utc(2024, 1, 10, 13), 6),
        (DAILY_NOON_5H, utc(2024, 2, 10, 11, 50), None),  # yesterday's run lasted 5 hours
        (DAILY_NOON_5H, utc(2024, 2, 10, 12), 32),
        (DAILY_NOON_5H, utc(2024, 2, 1, 11, 50), None),  # not valid yet
        (DAILY_NOON_5H, utc(2024, 2, 29, 16, 59), 6),
        (DAILY_NOON_5H, utc(2024, 2, 29, 17), None),
        (DAILY_NOON_5H, utc(2024, 3, 1, 12), None),  # past validTo
    ],
)
def test_daily_recurrence_with_and_without_duration(
    payload: dict[str, Any], at: datetime, expected: float | None
) -> None:
    assert amps(installed((0, payload)), 2, at) == expected


def test_a_duration_gap_falls_through_to_the_lower_stack_level() -> None:
    store = installed((0, profile(1, periods=((0, 8),))), (0, profile(2, **_daily_noon_5h_args(stack=1))))
    assert amps(store, 1, utc(2024, 2, 10, 11)) == 8
    assert amps(store, 1, utc(2024, 2, 10, 12)) == 32
    limit = limit_at(store, STATION, 1, utc(2024, 2, 10, 11), transactions=NO_TX)
    assert limit is not None and limit.until == utc(2024, 2, 10, 12)


def _daily_noon_5h_args(stack: int) -> dict[str, Any]:
    return {
        "kind": "Recurring",
        "recurrency": "Daily",
        "start": utc(2024, 1, 1, 12),
        "duration": 18000,
        "periods": ((0, 32), (3600, 6)),
        "stack": stack,
    }


# --- the ChargePointMaxProfile shared by the connectors ---------------------------------------------


@pytest.mark.parametrize(
    ("budget", "caps", "running", "expected"),
    [
        (20, {1: 32, 2: 32}, {1, 2}, {1: 10, 2: 10}),  # an even share
        (20, {1: 6, 2: 32}, {1, 2}, {1: 6, 2: 14}),  # what one cannot use goes to the other
        (20, {1: 32, 2: 32}, {1}, {1: 20, 2: 0}),  # the idle one gets what is left
        (20, {1: 12, 2: 32, 3: 32}, {1}, {1: 12, 2: 4, 3: 4}),  # split evenly among the idle ones
        (20, {1: 32, 2: 8}, set(), {1: 20, 2: 20}),  # nothing flows: everyone may have it all
        (30, {1: 5, 2: 5, 3: 32}, {1, 2, 3}, {1: 5, 2: 5, 3: 20}),
        (0, {1: 32, 2: 32}, {1}, {1: 0, 2: 0}),
    ],
)
def test_share_station_max(
    budget: float, caps: dict[int, float], running: set[int], expected: dict[int, float]
) -> None:
    assert share_station_max(budget, caps, running) == pytest.approx(expected)


def test_two_transactions_share_the_charge_point_maximum_and_one_leaving_frees_it() -> None:
    both = {c: ActiveTransaction(transaction_id=c, started_at=T0) for c in (1, 2)}
    store = installed((0, profile(1, "ChargePointMaxProfile", periods=((0, 20),))))
    assert [amps(store, c, T0, transactions=both) for c in (1, 2)] == [10, 10]
    only_one = {1: both[1]}
    assert [amps(store, c, T0, transactions=only_one) for c in (1, 2)] == [20, 0]
    assert [amps(store, c, T0) for c in (1, 2)] == [20, 20]  # no transaction: nothing flows
    # a TxProfile holds connector 1 at 6 A: connector 2 gets the rest
    store = installed(
        (0, profile(1, "ChargePointMaxProfile", periods=((0, 20),))),
        (1, profile(2, "TxProfile", kind="Relative", start=None, periods=((0, 6), (600, 16)))),
        transactions=both,
    )
    assert [amps(store, c, T0, transactions=both) for c in (1, 2)] == [6, 14]
    limit = limit_at(store, STATION, 2, T0, transactions=both)
    assert limit is not None and limit.until == T0 + timedelta(seconds=600)  # connector 1's change moves it
    assert [amps(store, c, T0 + timedelta(seconds=600), transactions=both) for c in (1, 2)] == [10, 10]
    composite = get_composite_schedule(store, STATION, connector_id=2, duration=1200, transactions=both, now=T0)
    assert periods_of(composite) == [(0, 14), (600, 10)]
    whole = get_composite_schedule(store, STATION, connector_id=0, duration=1200, transactions=both, now=T0)
    assert periods_of(whole) == [(0, 20)]


def test_a_power_maximum_is_shared_as_power() -> None:
    single = ConnectorElectrics(max_current_a=32, phases=1)
    station = StationElectrics(connectors=(single, STATION.connectors[1]))
    both = {c: ActiveTransaction(transaction_id=c, started_at=T0) for c in (1, 2)}
    store = installed((0, profile(1, "ChargePointMaxProfile", unit="W", periods=((0, 11040),))), transactions=both)
    limits = [limit_at(store, station, c, T0, transactions=both) for c in (1, 2)]
    assert [limit.watts for limit in limits if limit is not None] == pytest.approx([5520, 5520])
    assert [limit.amps for limit in limits if limit is not None] == pytest.approx([24, 8])


def test_a_huge_composite_duration_is_cut_to_a_week() -> None:
    daily = profile(1, kind="Recurring", recurrency="Daily", periods=((0, 16), (3600, 8)))
    result = get_composite_schedule(
        installed((0, daily)), STATION, connector_id=1, duration=2**31 - 1, transactions=NO_TX, now=T0
    )
    assert result["chargingSchedule"]["duration"] == MAX_COMPOSITE_DURATION_S == 7 * 86400
    assert len(periods_of(result)) == 14  # two periods a day for a week
    library_validates("GetCompositeSchedule", result, result=True)


# --- units, phases, minChargingRate, connector 0 ----------------------------------------------------


def test_current_and_power_limits_combine_with_the_phases_in_use() -> None:
    single = StationElectrics(connectors=(ConnectorElectrics(max_current_a=32, phases=1),))
    config = SmartChargingConfig(
        number_of_connectors=1, max_stack_level=2, max_schedule_periods=2, max_profiles_installed=4
    )
    store = installed((1, profile(1, unit="W", periods=((0, 3680),))), config=config)
    limit = limit_at(store, single, 1, T0, transactions=NO_TX)
    assert limit is not None and (limit.amps, limit.number_phases) == (16, 1)  # 3680 W on one phase

    # 11040 W over three phases, and 32 A on one phase: the EV may take 32 A = 7360 W
    store = installed(
        (0, profile(1, "ChargePointMaxProfile", unit="W", periods=((0, 11040),))),
        (1, profile(2, periods=((0, 32),), phases=1, min_rate=6)),
    )
    limit = limit_at(store, STATION, 1, T0, transactions=NO_TX)
    assert limit is not None
    assert (limit.amps, limit.watts, limit.number_phases) == (32, 7360, 1)
    assert (limit.min_charging_amps, limit.min_charging_watts) == (6, 1380)
    # 16 A on three phases under 7360 W: the power wins, 10.67 A per phase
    store = installed(
        (0, profile(1, "ChargePointMaxProfile", unit="W", periods=((0, 7360),))),
        (1, profile(2, periods=((0, 16),), min_rate=2)),
    )
    limit = limit_at(store, STATION, 1, T0, transactions=NO_TX)
    assert limit is not None and limit.amps == pytest.approx(7360 / 690) and limit.watts == pytest.approx(7360)
    result = get_composite_schedule(
        store, STATION, connector_id=1, duration=60, charging_rate_unit="W", transactions=NO_TX, now=T0
    )
    assert result["chargingSchedule"]["minChargingRate"] == 1380
    assert periods_of(result) == [(0, 7360)]


def test_connector_zero_is_the_sum_of_the_connectors_capped_by_the_station() -> None:
    grid = StationElectrics(connectors=STATION.connectors, max_current_a=50)
    store = installed((1, profile(1, periods=((0, 10),))))
    limit = limit_at(store, grid, 0, T0, transactions=NO_TX)
    assert limit is not None and limit.amps == 42  # 10 + the other connector's 32 A rating
    no_profiles = get_composite_schedule(ProfileStore(), grid, connector_id=0, duration=60, transactions=NO_TX, now=T0)
    assert periods_of(no_profiles) == [(0, 50)]  # the grid connection, not 2 x 32
    assert limit_at(ProfileStore(), grid, 0, T0, transactions=NO_TX) is None
    assert station_max_at(store, grid, T0) is None


def test_a_steady_limit_never_changes_and_a_repeating_one_is_looked_at_again_later() -> None:
    steady = limit_at(installed((1, profile(1))), STATION, 1, T0, transactions=NO_TX)
    assert steady is not None and steady.until is None
    repeating = installed((1, profile(1, kind="Recurring", recurrency="Daily", periods=((0, 16),))))
    limit = limit_at(repeating, STATION, 1, T0, transactions=NO_TX)
    assert limit is not None and limit.until is not None and limit.until > T0 + timedelta(days=200)


@pytest.mark.parametrize(
    ("connector_id", "duration", "unit"),
    [(3, 60, None), (-1, 60, None), (1, 0, None), (1, "60", None), (1, 60, "kW"), (True, 60, None)],
)
def test_get_composite_schedule_rejects_what_it_cannot_answer(connector_id: Any, duration: Any, unit: Any) -> None:
    result = get_composite_schedule(
        ProfileStore(),
        STATION,
        connector_id=connector_id,
        duration=duration,
        charging_rate_unit=unit,
        transactions=NO_TX,
        now=T0,
    )
    assert result == {"status": "Rejected"}
    library_validates("GetCompositeSchedule", result, result=True)


def test_naive_instants_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone"):
        limit_at(ProfileStore(), STATION, 1, datetime(2013, 1, 1), transactions=NO_TX)


# --- properties -------------------------------------------------------------------------------------

PROPERTY_CONFIG = SmartChargingConfig(
    number_of_connectors=2, max_stack_level=3, max_schedule_periods=4, max_profiles_installed=100
)
PROPERTY_TX = {1: ActiveTransaction(transaction_id=7, started_at=T0 + timedelta(minutes=30))}
HORIZON = 2 * 86400
SMALL_IDS = st.integers(1, 40)


@st.composite
def profiles(draw: st.DrawFn, profile_ids: st.SearchStrategy[int] = SMALL_IDS) -> tuple[int, ChargingProfile]:
    """A valid (connector, profile) pair for PROPERTY_CONFIG and PROPERTY_TX."""
    purpose = draw(st.sampled_from(ChargingProfilePurpose))
    kinds = list(ChargingProfileKind)
    connector_id = draw(st.sampled_from([0, 1, 2]))
    transaction_id = None
    if purpose is P.CHARGE_POINT_MAX_PROFILE:
        kinds.remove(ChargingProfileKind.RELATIVE)
        connector_id = 0
    elif purpose is P.TX_PROFILE:
        connector_id = 1
        transaction_id = draw(st.sampled_from([None, 7]))
    kind = draw(st.sampled_from(kinds))
    unit = draw(st.sampled_from(ChargingRateUnit))
    offsets = draw(st.lists(st.integers(1, 2 * 86400), max_size=3, unique=True))
    scale = 1 if unit is ChargingRateUnit.A else 100
    periods = tuple(
        ChargingSchedulePeriod(
            start_period=offset,
            limit=draw(st.integers(0, 600)) * scale / 10,
            number_phases=draw(st.sampled_from([None, 1, 2, 3])),
        )
        for offset in [0, *sorted(offsets)]
    )
    start = (
        None if kind is ChargingProfileKind.RELATIVE else T0 + timedelta(seconds=draw(st.integers(-2 * 86400, HORIZON)))
    )
    valid_from = draw(st.none() | st.integers(-86400, HORIZON).map(lambda s: T0 + timedelta(seconds=s)))
    valid_to = draw(st.none() | st.integers(1, HORIZON).map(lambda s: (valid_from or T0) + timedelta(seconds=s)))
    schedule = ChargingSchedule(
        charging_rate_unit=unit,
        charging_schedule_period=periods,
        duration=draw(st.none() | st.integers(0, 3 * 86400)),
        start_schedule=start,
        min_charging_rate=draw(st.none() | st.integers(0, 100).map(lambda r: r * scale / 10)),
    )
    return connector_id, ChargingProfile(
        charging_profile_id=draw(profile_ids),
        stack_level=draw(st.integers(0, 3)),
        charging_profile_purpose=purpose,
        charging_profile_kind=kind,
        charging_schedule=schedule,
        transaction_id=transaction_id,
        recurrency_kind=draw(st.sampled_from(RecurrencyKind)) if kind is ChargingProfileKind.RECURRING else None,
        valid_from=valid_from,
        valid_to=valid_to,
    )


@st.composite
def stores(draw: st.DrawFn) -> ProfileStore:
    store = ProfileStore()
    for connector_id, item in draw(st.lists(profiles(), max_size=6)):
        result = install_profile(store, connector_id, item, config=PROPERTY_CONFIG, transactions=PROPERTY_TX, now=T0)
        assert result.status is ChargingProfileStatus.ACCEPTED, result.reason
        store = result.store
    return store


def _round_down(value: float) -> float:
    return math.floor(value * 10 + 1e-6) / 10


def _composite_at(periods: tuple[ChargingSchedulePeriod, ...], offset: float) -> ChargingSchedulePeriod:
    return [period for period in periods if period.start_period <= offset][-1]


instants = st.lists(st.floats(0, HORIZON - 1, allow_nan=False), min_size=1, max_size=8)
starts = st.integers(-86400, 86400).map(lambda s: T0 + timedelta(seconds=s))


@settings(max_examples=150, deadline=None)
@given(stores(), st.sampled_from([0, 1, 2]), st.sampled_from(ChargingRateUnit), starts, instants)
def test_the_composite_is_limit_at_everywhere(
    store: ProfileStore, connector_id: int, unit: ChargingRateUnit, start: datetime, offsets: list[float]
) -> None:
    composite = composite_schedule(
        store, STATION, connector_id, start=start, duration=HORIZON, transactions=PROPERTY_TX, unit=unit
    )
    rating = composite_schedule(
        ProfileStore(), STATION, connector_id, start=start, duration=1, transactions={}, unit=unit
    )
    assert composite.periods[0].start_period == 0
    assert all(a != b for a, b in zip(composite.periods, composite.periods[1:], strict=False))  # merged
    boundaries = [float(p.start_period) for p in composite.periods]
    for offset in [*offsets, *boundaries]:
        at = start + timedelta(seconds=offset)
        limit = limit_at(store, STATION, connector_id, at, transactions=PROPERTY_TX, relative_anchor=start)
        expected = (
            rating.periods[0]
            if limit is None
            else ChargingSchedulePeriod(
                start_period=0, limit=_round_down(limit.in_unit(unit)), number_phases=limit.number_phases
            )
        )
        actual = _composite_at(composite.periods, offset)
        assert (actual.limit, actual.number_phases) == (expected.limit, expected.number_phases), at
        if limit is not None and limit.until is not None:
            # the limit holds until `until`
            later = at + (limit.until - at) * 0.999
            again = limit_at(store, STATION, connector_id, later, transactions=PROPERTY_TX, relative_anchor=start)
            assert again is not None and (again.amps, again.watts) == (limit.amps, limit.watts)
    library_validates("GetCompositeSchedule", composite.to_ocpp(), result=True)


@settings(max_examples=150, deadline=None)
@given(stores(), st.sampled_from([0, 1, 2]), starts, instants)
def test_the_composite_never_exceeds_the_charge_point_maximum(
    store: ProfileStore, connector_id: int, start: datetime, offsets: list[float]
) -> None:
    by_id = {entry.profile.charging_profile_id: entry.profile for entry in store.installed}
    composites = {
        unit: composite_schedule(
            store, STATION, connector_id, start=start, duration=HORIZON, transactions=PROPERTY_TX, unit=unit
        )
        for unit in ChargingRateUnit
    }
    for offset in offsets:
        maximum = station_max_at(store, STATION, start + timedelta(seconds=offset))
        if maximum is None:
            continue
        unit = by_id[maximum.profile_ids[0]].charging_schedule.charging_rate_unit
        assert _composite_at(composites[unit].periods, offset).limit <= maximum.in_unit(unit) + 1e-9


@settings(max_examples=150, deadline=None)
@given(stores(), st.sets(st.sampled_from([1, 2])), st.integers(-86400, HORIZON))
def test_connectors_never_add_up_to_more_than_the_charge_point_maximum_while_a_transaction_runs(
    store: ProfileStore, running: set[int], offset: int
) -> None:
    at = T0 + timedelta(seconds=offset)
    transactions = {c: ActiveTransaction(transaction_id=7, started_at=T0 + timedelta(minutes=30)) for c in running}
    maximum = station_max_at(store, STATION, at)
    limits = [limit_at(store, STATION, c, at, transactions=transactions) for c in (1, 2)]
    if maximum is None or not running:
        return
    assert all(limit is not None for limit in limits)
    unit = next(e for e in store.installed if e.profile.charging_profile_id == maximum.profile_ids[0])
    total = sum(limit.in_unit(unit.profile.charging_schedule.charging_rate_unit) for limit in limits if limit)
    assert total <= maximum.in_unit(unit.profile.charging_schedule.charging_rate_unit) + 1e-6


@settings(max_examples=200, deadline=None)
@given(profiles(), st.sampled_from([1, 2]), st.integers(-3 * 86400, 4 * 86400))
def test_a_profile_never_applies_outside_its_validity(
    item: tuple[int, ChargingProfile], connector_id: int, offset: int
) -> None:
    store = ProfileStore().install(*item)
    at = T0 + timedelta(seconds=offset)
    assume(not item[1].is_valid_at(at))
    assert limit_at(store, STATION, connector_id, at, transactions=PROPERTY_TX) is None
    assert limit_at(store, STATION, 0, at, transactions=PROPERTY_TX) is None
    assert station_max_at(store, STATION, at) is None


@settings(max_examples=200, deadline=None)
@given(stores(), profiles(profile_ids=st.integers(100, 120)))
def test_install_then_clear_by_id_leaves_the_store_as_it_was(
    store: ProfileStore, item: tuple[int, ChargingProfile]
) -> None:
    connector_id, new = item
    assume(not store.replaced_by(connector_id, new))
    result = install_profile(store, connector_id, new, config=PROPERTY_CONFIG, transactions=PROPERTY_TX, now=T0)
    assert result.status is ChargingProfileStatus.ACCEPTED and len(result.store) == len(store) + 1
    assert clear_charging_profile(result.store, id=new.charging_profile_id) == (
        store,
        ClearChargingProfileStatus.ACCEPTED,
    )


@settings(max_examples=200, deadline=None)
@given(stores())
def test_the_store_round_trips_through_json_and_the_ocpp_library_form(store: ProfileStore) -> None:
    assert ProfileStore.from_json(json.loads(json.dumps(store.to_json()))) == store
    for entry in store.installed:
        wire = entry.profile.to_ocpp()
        assert parse_charging_profile(wire) == entry.profile
        library_form = camel_to_snake_case(json.loads(json.dumps(wire), parse_float=Decimal))
        assert parse_charging_profile(library_form) == entry.profile
        library_validates(
            "SetChargingProfile", {"connectorId": entry.connector_id, "csChargingProfiles": wire}, result=False
        )


@settings(max_examples=100, deadline=None)
@given(
    st.datetimes(
        timezones=st.just(timezone(timedelta(hours=5))), min_value=datetime(1990, 1, 1), max_value=datetime(2090, 1, 1)
    )
)
def test_dates_round_trip_in_utc(moment: datetime) -> None:
    payload = profile(1, start=None)
    payload["chargingSchedule"]["startSchedule"] = moment.isoformat()
    parsed = parse_charging_profile(payload)
    assert parsed.charging_schedule.start_schedule == moment.replace(microsecond=0)
    assert parse_charging_profile(parsed.to_ocpp()) == parsed
