"""The installed charging profiles of one charge point, and the rules for installing them. No I/O.

`install_profile` checks a parsed profile against OCPP 1.6 ed.2 (§3.13.1 purposes, §5.16
SetChargingProfile, the ChargingProfile and ChargingSchedule types, §9.4 Smart Charging configuration
keys) and returns the new store with Accepted, or the old one with Rejected and the reason.
`ProfileStore` is an immutable value: every change returns a new store, so the backend-link actor can
persist a store before it answers and throw it away if persisting fails. `to_json`/`from_json` give
the form it persists (profiles must survive a reboot).

Install semantics (§5.16.2/§5.16.3, §3.13.2): a new profile replaces an installed one with the same
chargingProfileId, and one with the same stackLevel and purpose on the same connector. A TxDefaultProfile
on connector 0 therefore survives one installed on connector 1; evaluation prefers the connector's own
at equal stack level (§3.13.1: "replaced only for that specific connector").
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from charger.protocols.ocpp_smart_types import (
    ChargingProfile,
    ChargingProfileKind,
    ChargingProfilePurpose,
    ChargingRateUnit,
    ProfileFormatError,
    parse_charging_profile,
    parse_datetime,
    read_fields,
)

__all__ = [
    "STORE_FORMAT_VERSION",
    "ActiveTransaction",
    "ChargingProfileStatus",
    "ClearChargingProfileStatus",
    "InstallResult",
    "InstalledProfile",
    "ProfileStore",
    "SmartChargingConfig",
    "check_profile",
    "install_profile",
]

STORE_FORMAT_VERSION = 1
_MAX_PHASES = 3
_RATE_UNIT_KEYWORDS = {"Current": ChargingRateUnit.A, "Power": ChargingRateUnit.W}

Purpose = ChargingProfilePurpose


class ChargingProfileStatus(StrEnum):
    """ChargingProfileStatus (SetChargingProfile.conf)."""

    ACCEPTED = "Accepted"
    REJECTED = "Rejected"
    NOT_SUPPORTED = "NotSupported"


class ClearChargingProfileStatus(StrEnum):
    """ClearChargingProfileStatus: Unknown when no profile matched."""

    ACCEPTED = "Accepted"
    UNKNOWN = "Unknown"


@dataclass(frozen=True, slots=True, kw_only=True)
class ActiveTransaction:
    """The transaction running on a connector, as the backend link knows it."""

    transaction_id: int
    started_at: datetime
    """When it started: the origin of Relative schedules."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SmartChargingConfig:
    """The configuration keys that bound what may be installed (§9.1 NumberOfConnectors, §9.4)."""

    number_of_connectors: int
    max_stack_level: int
    """ChargeProfileMaxStackLevel: stackLevel runs from 0 to this."""
    max_schedule_periods: int
    """ChargingScheduleMaxPeriods."""
    max_profiles_installed: int
    """MaxChargingProfilesInstalled, counted over every connector and purpose."""
    allowed_rate_units: frozenset[ChargingRateUnit] = frozenset(ChargingRateUnit)
    """ChargingScheduleAllowedChargingRateUnit; see `rate_units_from_key`."""
    allow_absolute_without_start_schedule: bool = False
    """Accept an Absolute profile without startSchedule and start it when it is installed (as EVerest's
    AllowChargingProfileWithoutStartSchedule); by default it is Rejected."""

    @staticmethod
    def rate_units_from_key(value: str) -> frozenset[ChargingRateUnit]:
        """Read the CSL value of ChargingScheduleAllowedChargingRateUnit ("Current", "Power")."""
        units = set()
        for word in value.split(","):
            unit = _RATE_UNIT_KEYWORDS.get(word.strip())
            if unit is None:
                raise ValueError(f"ChargingScheduleAllowedChargingRateUnit: {word.strip()!r} is not Current or Power")
            units.add(unit)
        return frozenset(units)


@dataclass(frozen=True, slots=True, kw_only=True)
class InstalledProfile:
    """A profile and the connector it was set on (0 = the whole charge point)."""

    connector_id: int
    profile: ChargingProfile

    def sort_key(self) -> tuple[int, str, int, int]:
        profile = self.profile
        return (self.connector_id, profile.charging_profile_purpose, profile.stack_level, profile.charging_profile_id)


@dataclass(frozen=True, slots=True)
class ProfileStore:
    """The installed profiles, kept sorted (connector, purpose, stack level, id) so equal stores compare equal."""

    installed: tuple[InstalledProfile, ...] = ()

    @classmethod
    def of(cls, entries: Iterable[InstalledProfile]) -> ProfileStore:
        return cls(tuple(sorted(entries, key=InstalledProfile.sort_key)))

    def __len__(self) -> int:
        return len(self.installed)

    def replaced_by(self, connector_id: int, profile: ChargingProfile) -> tuple[InstalledProfile, ...]:
        """The entries that installing `profile` on `connector_id` would replace (§5.16.2)."""
        return tuple(entry for entry in self.installed if _replaces(connector_id, profile, entry))

    def install(self, connector_id: int, profile: ChargingProfile) -> ProfileStore:
        """Add `profile` with the replacement rule and no other check; `install_profile` checks first."""
        kept = [entry for entry in self.installed if not _replaces(connector_id, profile, entry)]
        return ProfileStore.of([*kept, InstalledProfile(connector_id=connector_id, profile=profile)])

    def clear(
        self,
        *,
        charging_profile_id: int | None = None,
        connector_id: int | None = None,
        purpose: ChargingProfilePurpose | None = None,
        stack_level: int | None = None,
    ) -> tuple[ProfileStore, ClearChargingProfileStatus]:
        """ClearChargingProfile (§5.5). With an id, the profile with that id is cleared and the other
        criteria are ignored (as OCPP 2.0.1 K10 states; 1.6 is silent). Without one, every profile matching all
        given criteria is cleared; no criteria at all clears everything. Unknown when nothing matched."""
        if charging_profile_id is not None:
            kept = [e for e in self.installed if e.profile.charging_profile_id != charging_profile_id]
        else:
            kept = [e for e in self.installed if not _matches(e, connector_id, purpose, stack_level)]
        if len(kept) == len(self.installed):
            return self, ClearChargingProfileStatus.UNKNOWN
        return ProfileStore(tuple(kept)), ClearChargingProfileStatus.ACCEPTED

    def end_transaction(self, connector_id: int) -> ProfileStore:
        """Drop the TxProfiles of a connector whose transaction ended (§3.13.1: "SHOULD be deleted")."""
        kept = [e for e in self.installed if not (e.connector_id == connector_id and _is_tx(e.profile))]
        return self if len(kept) == len(self.installed) else ProfileStore(tuple(kept))

    def purge_expired(self, now: datetime) -> ProfileStore:
        """Drop profiles that can never apply again: past validTo, or Absolute and past startSchedule+duration.
        Frees MaxChargingProfilesInstalled slots; evaluation gives the same result with or without it."""
        kept = [e for e in self.installed if not _expired(e.profile, now)]
        return self if len(kept) == len(self.installed) else ProfileStore(tuple(kept))

    def to_json(self) -> dict[str, Any]:
        """A JSON-able dict: profiles in their OCPP wire form, with the connector each was set on."""
        return {
            "version": STORE_FORMAT_VERSION,
            "profiles": [{"connectorId": e.connector_id, "profile": e.profile.to_ocpp()} for e in self.installed],
        }

    @classmethod
    def from_json(cls, data: object) -> ProfileStore:
        """Read what `to_json` wrote; raises `ProfileFormatError` on anything else."""
        fields = read_fields(data, {"version": "version", "profiles": "profiles"}, "profile store")
        if fields.get("version") != STORE_FORMAT_VERSION:
            raise ProfileFormatError(f"profile store: version {fields.get('version')!r} is not {STORE_FORMAT_VERSION}")
        profiles = fields.get("profiles")
        if not isinstance(profiles, list):
            raise ProfileFormatError("profile store: profiles must be a list")
        entries = []
        for item in profiles:
            entry = read_fields(item, {"connectorId": "connector_id", "profile": "profile"}, "profile store entry")
            connector_id = entry.get("connector_id")
            if isinstance(connector_id, bool) or not isinstance(connector_id, int) or connector_id < 0:
                raise ProfileFormatError(f"profile store entry: bad connectorId {connector_id!r}")
            profile = parse_charging_profile(entry.get("profile"))
            entries.append(InstalledProfile(connector_id=connector_id, profile=profile))
        return cls.of(entries)


@dataclass(frozen=True, slots=True, kw_only=True)
class InstallResult:
    """The answer to SetChargingProfile and the store to keep (unchanged unless Accepted)."""

    status: ChargingProfileStatus
    store: ProfileStore
    reason: str = ""
    """Why it was Rejected, for the log (OCPP 1.6 has no field to send it in)."""


def install_profile(
    store: ProfileStore,
    connector_id: int,
    profile: ChargingProfile,
    *,
    config: SmartChargingConfig,
    transactions: Mapping[int, ActiveTransaction],
    now: datetime,
) -> InstallResult:
    """SetChargingProfile: check, then install with the replacement rule; `now` only fills a missing
    startSchedule when `config.allow_absolute_without_start_schedule` is set."""
    if (
        config.allow_absolute_without_start_schedule
        and profile.charging_profile_kind is ChargingProfileKind.ABSOLUTE
        and profile.charging_schedule.start_schedule is None
    ):
        schedule = dataclasses.replace(profile.charging_schedule, start_schedule=parse_datetime(now))
        profile = dataclasses.replace(profile, charging_schedule=schedule)
    reason = check_profile(profile, connector_id, store=store, config=config, transactions=transactions)
    if reason is not None:
        return InstallResult(status=ChargingProfileStatus.REJECTED, store=store, reason=reason)
    return InstallResult(status=ChargingProfileStatus.ACCEPTED, store=store.install(connector_id, profile))


def check_profile(
    profile: ChargingProfile,
    connector_id: int,
    *,
    store: ProfileStore,
    config: SmartChargingConfig,
    transactions: Mapping[int, ActiveTransaction],
) -> str | None:
    """The reason to reject `profile` on `connector_id`, or None when it may be installed."""
    problems = itertools.chain(
        _target_problems(profile, connector_id, config, transactions),
        _kind_problems(profile),
        _schedule_problems(profile, config),
        _capacity_problems(profile, connector_id, store, config),
    )
    return next(problems, None)


def _target_problems(
    profile: ChargingProfile,
    connector_id: int,
    config: SmartChargingConfig,
    transactions: Mapping[int, ActiveTransaction],
) -> Iterator[str]:
    if not 0 <= connector_id <= config.number_of_connectors:
        yield f"connectorId {connector_id} does not exist (NumberOfConnectors {config.number_of_connectors})"
    if not 0 <= profile.stack_level <= config.max_stack_level:
        yield f"stackLevel {profile.stack_level} outside 0..{config.max_stack_level} (ChargeProfileMaxStackLevel)"
    purpose = profile.charging_profile_purpose
    if purpose is Purpose.CHARGE_POINT_MAX_PROFILE and connector_id != 0:
        yield "ChargePointMaxProfile can only be set at connectorId 0 (§3.13.1)"
    if purpose is Purpose.TX_PROFILE:
        transaction = transactions.get(connector_id)
        if connector_id == 0:
            yield "TxProfile can only be set at a connectorId > 0 (§3.13.1)"
        elif transaction is None:
            yield f"TxProfile without a transaction on connector {connector_id} (§3.13.1)"
        elif profile.transaction_id is not None and profile.transaction_id != transaction.transaction_id:
            yield f"transactionId {profile.transaction_id} is not the active {transaction.transaction_id}"


def _kind_problems(profile: ChargingProfile) -> Iterator[str]:
    kind, start = profile.charging_profile_kind, profile.charging_schedule.start_schedule
    if kind is ChargingProfileKind.ABSOLUTE and start is None:
        yield "an Absolute profile needs startSchedule: its periods count from it (ChargingProfileKindType)"
    if kind is ChargingProfileKind.RECURRING and (start is None or profile.recurrency_kind is None):
        yield "a Recurring profile needs recurrencyKind and startSchedule (ChargingProfileKindType)"
    if kind is ChargingProfileKind.RELATIVE and start is not None:
        yield "a Relative profile has no startSchedule: it starts with the transaction (ChargingProfileKindType)"
    if kind is ChargingProfileKind.RELATIVE and profile.charging_profile_purpose is Purpose.CHARGE_POINT_MAX_PROFILE:
        yield "a ChargePointMaxProfile cannot be Relative: the charge point has no transaction to start it"
    if profile.valid_from is not None and profile.valid_to is not None and profile.valid_to <= profile.valid_from:
        yield "validTo is not after validFrom"


def _schedule_problems(profile: ChargingProfile, config: SmartChargingConfig) -> Iterator[str]:
    schedule = profile.charging_schedule
    periods = schedule.charging_schedule_period
    if schedule.charging_rate_unit not in config.allowed_rate_units:
        yield f"chargingRateUnit {schedule.charging_rate_unit} not in ChargingScheduleAllowedChargingRateUnit"
    if not 1 <= len(periods) <= config.max_schedule_periods:
        yield f"{len(periods)} periods, allowed 1..{config.max_schedule_periods} (ChargingScheduleMaxPeriods)"
    if periods and periods[0].start_period != 0:
        yield "the first period must have startPeriod 0"
    if any(later.start_period <= earlier.start_period for earlier, later in itertools.pairwise(periods)):
        yield "startPeriod values must increase"
    for period in periods:
        if period.limit < 0:
            yield f"negative limit {period.limit}"
        if period.number_phases is not None and not 1 <= period.number_phases <= _MAX_PHASES:
            yield f"numberPhases {period.number_phases} outside 1..{_MAX_PHASES}"
    if schedule.duration is not None and schedule.duration < 0:
        yield f"negative duration {schedule.duration}"
    if schedule.min_charging_rate is not None and schedule.min_charging_rate < 0:
        yield f"negative minChargingRate {schedule.min_charging_rate}"


def _capacity_problems(
    profile: ChargingProfile, connector_id: int, store: ProfileStore, config: SmartChargingConfig
) -> Iterator[str]:
    after = len(store) - len(store.replaced_by(connector_id, profile)) + 1
    if after > config.max_profiles_installed:
        yield f"MaxChargingProfilesInstalled {config.max_profiles_installed} reached"


def _replaces(connector_id: int, profile: ChargingProfile, entry: InstalledProfile) -> bool:
    old = entry.profile
    if old.charging_profile_id == profile.charging_profile_id:
        return True
    return (
        entry.connector_id == connector_id
        and old.stack_level == profile.stack_level
        and old.charging_profile_purpose == profile.charging_profile_purpose
    )


def _matches(
    entry: InstalledProfile,
    connector_id: int | None,
    purpose: ChargingProfilePurpose | None,
    stack_level: int | None,
) -> bool:
    return (
        (connector_id is None or entry.connector_id == connector_id)
        and (purpose is None or entry.profile.charging_profile_purpose == purpose)
        and (stack_level is None or entry.profile.stack_level == stack_level)
    )


def _is_tx(profile: ChargingProfile) -> bool:
    return profile.charging_profile_purpose is Purpose.TX_PROFILE


def _expired(profile: ChargingProfile, now: datetime) -> bool:
    if profile.valid_to is not None and profile.valid_to <= now:
        return True
    schedule = profile.charging_schedule
    if profile.charging_profile_kind is not ChargingProfileKind.ABSOLUTE or schedule.start_schedule is None:
        return False
    return schedule.duration is not None and (now - schedule.start_schedule).total_seconds() >= schedule.duration
