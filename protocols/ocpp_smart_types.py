"""OCPP 1.6 Smart Charging value types (OCPP 1.6 ed.2 chapter 7) and their JSON form. No I/O.

`parse_charging_profile` accepts a ``csChargingProfiles`` object as it arrives on the wire (camelCase) or
as the `ocpp` library hands it to a handler (every key snake_case, numbers possibly `Decimal`), and
raises `ProfileFormatError` on anything it cannot read; the caller answers a CALLERROR or Rejected.
`ChargingProfile.to_ocpp()` writes the camelCase wire form back. Parsing checks shape and types only;
the rules of §3.13 and §5.16 (connector, stack level, period order, ...) are in `ocpp_smart_store`.

Instants are timezone-aware UTC `datetime`s truncated to the whole second, because the schedule itself
counts in whole seconds (``startPeriod``, ``duration``); a time without an offset is read as UTC.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any, TypeVar

__all__ = [
    "DEFAULT_NUMBER_PHASES",
    "RECURRENCE_SECONDS",
    "ChargingProfile",
    "ChargingProfileKind",
    "ChargingProfilePurpose",
    "ChargingRateUnit",
    "ChargingSchedule",
    "ChargingSchedulePeriod",
    "ProfileFormatError",
    "RecurrencyKind",
    "format_datetime",
    "parse_charging_profile",
    "parse_charging_schedule",
    "parse_choice",
    "parse_datetime",
    "parse_integer",
    "read_fields",
]

_T = TypeVar("_T")
_E = TypeVar("_E", bound=StrEnum)

DEFAULT_NUMBER_PHASES = 3
"""ChargingSchedulePeriod.numberPhases: "numberPhases=3 will be assumed unless another number is given"."""


class ProfileFormatError(ValueError):
    """A charging profile (or persisted store) that cannot be read: wrong type, unknown field, bad date."""


class ChargingProfilePurpose(StrEnum):
    """ChargingProfilePurposeType."""

    CHARGE_POINT_MAX_PROFILE = "ChargePointMaxProfile"
    TX_DEFAULT_PROFILE = "TxDefaultProfile"
    TX_PROFILE = "TxProfile"


class ChargingProfileKind(StrEnum):
    """ChargingProfileKindType."""

    ABSOLUTE = "Absolute"
    """Periods count from ``startSchedule``."""
    RECURRING = "Recurring"
    """Periods count from ``startSchedule`` and restart every day or week."""
    RELATIVE = "Relative"
    """Periods count from the start of the transaction."""


class RecurrencyKind(StrEnum):
    """RecurrencyKindType."""

    DAILY = "Daily"
    WEEKLY = "Weekly"


RECURRENCE_SECONDS = {RecurrencyKind.DAILY: 86_400, RecurrencyKind.WEEKLY: 7 * 86_400}
"""A Recurring schedule restarts every 24 h or 7 days after startSchedule, in fixed seconds (no DST)."""


class ChargingRateUnit(StrEnum):
    """ChargingRateUnitType: amperes per phase, or watts for the whole connector."""

    A = "A"
    W = "W"


@dataclass(frozen=True, slots=True, kw_only=True)
class ChargingSchedulePeriod:
    """ChargingSchedulePeriod: from ``start_period`` seconds after the schedule start until the next period begins."""

    start_period: int
    limit: float
    """In the schedule's unit: A per phase, or W."""
    number_phases: int | None = None
    """Phases the limit assumes; absent means `DEFAULT_NUMBER_PHASES`."""

    def to_ocpp(self) -> dict[str, Any]:
        body: dict[str, Any] = {"startPeriod": self.start_period, "limit": self.limit}
        if self.number_phases is not None:
            body["numberPhases"] = self.number_phases
        return body


@dataclass(frozen=True, slots=True, kw_only=True)
class ChargingSchedule:
    """ChargingSchedule type."""

    charging_rate_unit: ChargingRateUnit
    charging_schedule_period: tuple[ChargingSchedulePeriod, ...]
    duration: int | None = None
    """Seconds the schedule lasts; absent means the last period lasts for ever (§3.13.2 NOTE)."""
    start_schedule: datetime | None = None
    min_charging_rate: float | None = None
    """The lowest rate the EV charges efficiently at, in `charging_rate_unit` (advisory)."""

    def to_ocpp(self) -> dict[str, Any]:
        body: dict[str, Any] = {}
        if self.duration is not None:
            body["duration"] = self.duration
        if self.start_schedule is not None:
            body["startSchedule"] = format_datetime(self.start_schedule)
        body["chargingRateUnit"] = self.charging_rate_unit.value
        body["chargingSchedulePeriod"] = [period.to_ocpp() for period in self.charging_schedule_period]
        if self.min_charging_rate is not None:
            body["minChargingRate"] = self.min_charging_rate
        return body


@dataclass(frozen=True, slots=True, kw_only=True)
class ChargingProfile:
    """ChargingProfile type (the ``csChargingProfiles`` of SetChargingProfile.req)."""

    charging_profile_id: int
    stack_level: int
    charging_profile_purpose: ChargingProfilePurpose
    charging_profile_kind: ChargingProfileKind
    charging_schedule: ChargingSchedule
    transaction_id: int | None = None
    recurrency_kind: RecurrencyKind | None = None
    valid_from: datetime | None = None
    valid_to: datetime | None = None

    def to_ocpp(self) -> dict[str, Any]:
        body: dict[str, Any] = {"chargingProfileId": self.charging_profile_id}
        if self.transaction_id is not None:
            body["transactionId"] = self.transaction_id
        body["stackLevel"] = self.stack_level
        body["chargingProfilePurpose"] = self.charging_profile_purpose.value
        body["chargingProfileKind"] = self.charging_profile_kind.value
        if self.recurrency_kind is not None:
            body["recurrencyKind"] = self.recurrency_kind.value
        if self.valid_from is not None:
            body["validFrom"] = format_datetime(self.valid_from)
        if self.valid_to is not None:
            body["validTo"] = format_datetime(self.valid_to)
        body["chargingSchedule"] = self.charging_schedule.to_ocpp()
        return body

    def is_valid_at(self, at: datetime) -> bool:
        """Inside [validFrom, validTo): §3.13.2 "valid ... as determined by their validFrom and validTo"."""
        if self.valid_from is not None and at < self.valid_from:
            return False
        return self.valid_to is None or at < self.valid_to


# --- parsing ----------------------------------------------------------------------------------------

_PERIOD_FIELDS = {"startPeriod": "start_period", "limit": "limit", "numberPhases": "number_phases"}
_SCHEDULE_FIELDS = {
    "duration": "duration",
    "startSchedule": "start_schedule",
    "chargingRateUnit": "charging_rate_unit",
    "chargingSchedulePeriod": "charging_schedule_period",
    "minChargingRate": "min_charging_rate",
}
_PROFILE_FIELDS = {
    "chargingProfileId": "charging_profile_id",
    "transactionId": "transaction_id",
    "stackLevel": "stack_level",
    "chargingProfilePurpose": "charging_profile_purpose",
    "chargingProfileKind": "charging_profile_kind",
    "recurrencyKind": "recurrency_kind",
    "validFrom": "valid_from",
    "validTo": "valid_to",
    "chargingSchedule": "charging_schedule",
}


def parse_charging_profile(payload: object) -> ChargingProfile:
    """Read a ``csChargingProfiles`` object in either key spelling; raises `ProfileFormatError`."""
    fields = read_fields(payload, _PROFILE_FIELDS, "csChargingProfiles")
    _require(fields, ("charging_profile_id", "stack_level", "charging_profile_purpose"), "csChargingProfiles")
    _require(fields, ("charging_profile_kind", "charging_schedule"), "csChargingProfiles")
    recurrency = fields.get("recurrency_kind")
    return ChargingProfile(
        charging_profile_id=parse_integer(fields["charging_profile_id"], "chargingProfileId"),
        stack_level=parse_integer(fields["stack_level"], "stackLevel"),
        charging_profile_purpose=parse_choice(
            ChargingProfilePurpose, fields["charging_profile_purpose"], "chargingProfilePurpose"
        ),
        charging_profile_kind=parse_choice(ChargingProfileKind, fields["charging_profile_kind"], "chargingProfileKind"),
        charging_schedule=parse_charging_schedule(fields["charging_schedule"]),
        transaction_id=_optional(fields, "transaction_id", parse_integer, "transactionId"),
        recurrency_kind=None if recurrency is None else parse_choice(RecurrencyKind, recurrency, "recurrencyKind"),
        valid_from=_optional(fields, "valid_from", parse_datetime, "validFrom"),
        valid_to=_optional(fields, "valid_to", parse_datetime, "validTo"),
    )


def parse_charging_schedule(payload: object) -> ChargingSchedule:
    """Read a ``chargingSchedule`` object in either key spelling; raises `ProfileFormatError`."""
    fields = read_fields(payload, _SCHEDULE_FIELDS, "chargingSchedule")
    _require(fields, ("charging_rate_unit", "charging_schedule_period"), "chargingSchedule")
    raw_periods = fields["charging_schedule_period"]
    if not isinstance(raw_periods, list | tuple):
        raise ProfileFormatError("chargingSchedulePeriod: expected a list")
    return ChargingSchedule(
        charging_rate_unit=parse_choice(ChargingRateUnit, fields["charging_rate_unit"], "chargingRateUnit"),
        charging_schedule_period=tuple(_parse_period(item) for item in raw_periods),
        duration=_optional(fields, "duration", parse_integer, "duration"),
        start_schedule=_optional(fields, "start_schedule", parse_datetime, "startSchedule"),
        min_charging_rate=_optional(fields, "min_charging_rate", _number, "minChargingRate"),
    )


def _parse_period(payload: object) -> ChargingSchedulePeriod:
    fields = read_fields(payload, _PERIOD_FIELDS, "chargingSchedulePeriod")
    _require(fields, ("start_period", "limit"), "chargingSchedulePeriod")
    return ChargingSchedulePeriod(
        start_period=parse_integer(fields["start_period"], "startPeriod"),
        limit=_number(fields["limit"], "limit"),
        number_phases=_optional(fields, "number_phases", parse_integer, "numberPhases"),
    )


def read_fields(payload: object, known: Mapping[str, str], where: str) -> dict[str, object]:
    """Map an object's keys to snake_case through `known` (camelCase -> snake_case); both spellings are
    accepted because the `ocpp` library snake-cases nested keys. Absent and null fields are left out."""
    if not isinstance(payload, Mapping):
        raise ProfileFormatError(f"{where}: expected an object, got {type(payload).__name__}")
    snake_names = set(known.values())
    fields: dict[str, object] = {}
    for key, value in payload.items():
        name = known.get(key) if isinstance(key, str) else None
        if name is None and key in snake_names:
            name = key
        if name is None:
            raise ProfileFormatError(f"{where}: unknown field {key!r}")
        if name in fields:
            raise ProfileFormatError(f"{where}: field {name!r} given in both spellings")
        if value is not None:
            fields[name] = value
    return fields


def _require(fields: Mapping[str, object], names: tuple[str, ...], where: str) -> None:
    missing = [name for name in names if name not in fields]
    if missing:
        raise ProfileFormatError(f"{where}: missing {', '.join(missing)}")


def _optional(fields: Mapping[str, object], name: str, read: Callable[[object, str], _T], label: str) -> _T | None:
    return None if name not in fields else read(fields[name], label)


def parse_integer(value: object, label: str) -> int:
    """An OCPP integer field; whole `float`/`Decimal` values count (the `ocpp` library may give Decimals)."""
    if isinstance(value, bool):
        raise ProfileFormatError(f"{label}: expected an integer, got a boolean")
    if isinstance(value, int):
        return value
    # JSON "3.0" or Decimal("3") from the ocpp library's Decimal parsing are whole numbers too
    if isinstance(value, float | Decimal) and math.isfinite(value) and value == int(value):
        return int(value)
    raise ProfileFormatError(f"{label}: expected an integer, got {value!r}")


def _number(value: object, label: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        raise ProfileFormatError(f"{label}: expected a number, got {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise ProfileFormatError(f"{label}: {value!r} is not finite")
    return number


def parse_choice(enum: type[_E], value: object, label: str) -> _E:
    """One of an enumeration's wire values; raises `ProfileFormatError`."""
    if isinstance(value, str):
        try:
            return enum(value)
        except ValueError:
            pass
    allowed = ", ".join(member.value for member in enum)
    raise ProfileFormatError(f"{label}: {value!r} is not one of {allowed}")


def parse_datetime(value: object, label: str = "dateTime") -> datetime:
    """ISO 8601 text (or a `datetime`) to aware UTC, truncated to the second; no offset means UTC."""
    if isinstance(value, datetime):
        instant = value
    elif isinstance(value, str):
        try:
            instant = datetime.fromisoformat(value)
        except ValueError:
            raise ProfileFormatError(f"{label}: {value!r} is not an ISO 8601 date-time") from None
    else:
        raise ProfileFormatError(f"{label}: expected a date-time string, got {type(value).__name__}")
    if instant.tzinfo is None:
        instant = instant.replace(tzinfo=UTC)
    try:
        return instant.astimezone(UTC).replace(microsecond=0)
    except OverflowError:
        raise ProfileFormatError(f"{label}: {value!r} is out of range") from None


def format_datetime(instant: datetime) -> str:
    """The wire form: UTC with a ``Z``, whole seconds."""
    return instant.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
