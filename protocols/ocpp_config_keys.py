"""The OCPP 1.6 configuration keys as data: every standard key, its type, access and default (pure).

Sources: OCPP 1.6 edition 2 §9 (Core, LocalAuthListManagement, Reservation, SmartCharging) and the
security whitepaper ("Improved security for OCPP 1.6-J", ed. 3: AuthorizationKey, SecurityProfile,
CpoName, AdditionalRootCertificateCheck, CertificateSignedMaxChainSize, CertificateStoreMaxLength).
Three reconnect back-off keys carry the OCPP 2.0.1 names because 1.6 has no standard ones.

A `KeySpec` knows the value syntax of its key (`canonical_value`): booleans are ``true``/``false``,
integers are decimal, a CSL is a comma-separated list of allowed members with a maximum item count.
Values are kept in their canonical wire form, so what is stored is exactly what GetConfiguration
reports. Which optional keys exist, and the values of the read-only ones, come from `StationFacts`:
a key that exists announces a feature (OCPP §9: "If this key exists, the Charge Point supports ...").
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace

__all__ = [
    "MAX_VALUE_LENGTH",
    "Access",
    "FeatureProfile",
    "InvalidValue",
    "KeyGroup",
    "KeySpec",
    "Measurand",
    "Phase",
    "StationFacts",
    "ValueKind",
    "standard_keys",
    "with_defaults",
]

MAX_VALUE_LENGTH = 500  # ChangeConfiguration.req value and KeyValue.value are CiString500Type
_INT32_MAX = 2**31 - 1  # OCPP integers are 32-bit signed


class InvalidValue(ValueError):
    """A value that does not fit its key's syntax or range; the reason is safe to log (never the value)."""


class ValueKind(enum.StrEnum):
    BOOL = "boolean"
    INT = "integer"
    CSL = "CSL"
    STRING = "string"


class Access(enum.StrEnum):
    R = "R"  #: read-only: the CSMS can read it, only the station sets it
    RW = "RW"
    W = "W"  #: write-only (AuthorizationKey): never reported, never logged


class KeyGroup(enum.StrEnum):
    """Where a key is defined; SupportedFeatureProfiles uses `FeatureProfile`, not this."""

    CORE = "Core"
    LOCAL_AUTH_LIST = "LocalAuthListManagement"
    RESERVATION = "Reservation"
    SMART_CHARGING = "SmartCharging"
    SECURITY = "Security"  #: the security whitepaper
    VENDOR = "Vendor"  #: not in 1.6; named as in OCPP 2.0.1


class FeatureProfile(enum.StrEnum):
    CORE = "Core"
    FIRMWARE_MANAGEMENT = "FirmwareManagement"
    LOCAL_AUTH_LIST_MANAGEMENT = "LocalAuthListManagement"
    RESERVATION = "Reservation"
    SMART_CHARGING = "SmartCharging"
    REMOTE_TRIGGER = "RemoteTrigger"


class Measurand(enum.StrEnum):
    """OCPP 1.6 §7.31 Measurand."""

    CURRENT_EXPORT = "Current.Export"
    CURRENT_IMPORT = "Current.Import"
    CURRENT_OFFERED = "Current.Offered"
    ENERGY_ACTIVE_EXPORT_REGISTER = "Energy.Active.Export.Register"
    ENERGY_ACTIVE_IMPORT_REGISTER = "Energy.Active.Import.Register"
    ENERGY_REACTIVE_EXPORT_REGISTER = "Energy.Reactive.Export.Register"
    ENERGY_REACTIVE_IMPORT_REGISTER = "Energy.Reactive.Import.Register"
    ENERGY_ACTIVE_EXPORT_INTERVAL = "Energy.Active.Export.Interval"
    ENERGY_ACTIVE_IMPORT_INTERVAL = "Energy.Active.Import.Interval"
    ENERGY_REACTIVE_EXPORT_INTERVAL = "Energy.Reactive.Export.Interval"
    ENERGY_REACTIVE_IMPORT_INTERVAL = "Energy.Reactive.Import.Interval"
    FREQUENCY = "Frequency"
    POWER_ACTIVE_EXPORT = "Power.Active.Export"
    POWER_ACTIVE_IMPORT = "Power.Active.Import"
    POWER_FACTOR = "Power.Factor"
    POWER_OFFERED = "Power.Offered"
    POWER_REACTIVE_EXPORT = "Power.Reactive.Export"
    POWER_REACTIVE_IMPORT = "Power.Reactive.Import"
    RPM = "RPM"
    SOC = "SoC"
    TEMPERATURE = "Temperature"
    VOLTAGE = "Voltage"


class Phase(enum.StrEnum):
    """OCPP 1.6 §7.34 Phase; a measurand list member may carry one, e.g. ``Voltage.L1`` (§9.1)."""

    L1 = "L1"
    L2 = "L2"
    L3 = "L3"
    N = "N"
    L1_N = "L1-N"
    L2_N = "L2-N"
    L3_N = "L3-N"
    L1_L2 = "L1-L2"
    L2_L3 = "L2-L3"
    L3_L1 = "L3-L1"


_PHASE_ROTATIONS = ("NotApplicable", "Unknown", "RST", "RTS", "SRT", "STR", "TRS", "TSR")
_INTEGER = re.compile(r"-?[0-9]{1,12}")
_HEX = re.compile(r"(?:[0-9A-Fa-f]{2}){16,20}")  # whitepaper: 16..20 bytes, hex-encoded (<= 40 digits)


@dataclass(frozen=True, slots=True, kw_only=True)
class KeySpec:
    """One configuration key. `default` is the canonical wire value; None means "exists, not set"."""

    name: str
    group: KeyGroup
    kind: ValueKind
    access: Access
    default: str | None
    reboot_required: bool = False
    """A change is stored at once but takes effect after a reboot (answered RebootRequired)."""
    minimum: int | None = None
    maximum: int | None = None
    member: Callable[[str], str | None] | None = field(default=None, compare=False)
    """CSL: canonical form of one member, or None if it is not allowed."""
    max_members: int | None = None
    """CSL: the item count announced by the matching ``...MaxLength`` key."""
    check: Callable[[str], str | None] | None = field(default=None, compare=False)
    """STRING: the reason a value is refused, or None."""

    def __repr__(self) -> str:  # a default AuthorizationKey (from the site's settings) must not reach a log
        default = "<hidden>" if self.secret and self.default is not None else repr(self.default)
        return f"KeySpec(name={self.name!r}, kind={self.kind.value}, access={self.access.value}, default={default})"

    @property
    def readonly(self) -> bool:
        return self.access is Access.R

    @property
    def secret(self) -> bool:
        return self.access is Access.W

    def canonical_value(self, raw: str) -> str:
        """`raw` in canonical wire form; `InvalidValue` if it does not fit this key."""
        if len(raw) > MAX_VALUE_LENGTH:
            raise InvalidValue(f"{self.name}: longer than {MAX_VALUE_LENGTH} characters")
        if self.kind is ValueKind.BOOL:
            lowered = raw.lower()  # the spec writes true/false; case is forgiven, output is lower case
            if lowered not in ("true", "false"):
                raise InvalidValue(f"{self.name}: a boolean is 'true' or 'false'")
            return lowered
        if self.kind is ValueKind.INT:
            return str(self._integer(raw))
        if self.kind is ValueKind.CSL:
            return self._csl(raw)
        reason = self.check(raw) if self.check is not None else None
        if reason is not None:
            raise InvalidValue(f"{self.name}: {reason}")
        return raw

    def _integer(self, raw: str) -> int:
        if not _INTEGER.fullmatch(raw):
            raise InvalidValue(f"{self.name}: not a decimal integer")
        value = int(raw)
        low = -_INT32_MAX - 1 if self.minimum is None else self.minimum
        high = _INT32_MAX if self.maximum is None else self.maximum
        if not low <= value <= high:
            raise InvalidValue(f"{self.name}: outside {low}..{high}")
        return value

    def _csl(self, raw: str) -> str:
        if raw.strip() == "":
            return ""
        members: list[str] = []
        for item in raw.split(","):
            canonical = self.member(item.strip()) if self.member is not None else item.strip()
            if not canonical:
                raise InvalidValue(f"{self.name}: member {len(members) + 1} is empty or not allowed")
            if canonical in members:
                raise InvalidValue(f"{self.name}: {canonical} appears twice")
            members.append(canonical)
        if self.max_members is not None and len(members) > self.max_members:
            raise InvalidValue(f"{self.name}: more than {self.max_members} members")
        return ",".join(members)


@dataclass(frozen=True, slots=True, kw_only=True)
class StationFacts:
    """What the station is and supports: decides which optional keys exist and the read-only values."""

    number_of_connectors: int
    feature_profiles: frozenset[FeatureProfile] = frozenset(FeatureProfile)
    measurands: frozenset[Measurand] = frozenset(Measurand)
    """What the meters can deliver; other measurands are refused in ChangeConfiguration (§3.16.4)."""
    measurand_list_max_length: int = 12
    authorization_cache: bool = True
    unknown_offline_authorization: bool = True
    indicator_light: bool = False
    local_auth_list_max_length: int = 1000
    send_local_list_max_length: int = 100
    reserve_connector_zero: bool = True
    charge_profile_max_stack_level: int = 10
    charging_rate_units: tuple[str, ...] = ("Current", "Power")
    charging_schedule_max_periods: int = 24
    max_charging_profiles_installed: int = 20
    connector_switch_3to1_phase: bool = False
    security_extensions: bool = True
    certificate_store_max_length: int = 10
    certificate_signed_max_chain_size: int = 10000
    get_configuration_max_keys: int = 100

    def __post_init__(self) -> None:
        if self.number_of_connectors < 1:
            raise ValueError("a station has at least one connector")
        if FeatureProfile.CORE not in self.feature_profiles:
            raise ValueError("the Core profile is mandatory")
        if not set(self.charging_rate_units) <= {"Current", "Power"}:
            raise ValueError("charging rate units are 'Current' and/or 'Power'")


def _enumerated(values: Iterable[str]) -> Callable[[str], str | None]:
    by_folded = {v.casefold(): v for v in values}
    return lambda item: by_folded.get(item.casefold())


def _measurand_member(supported: frozenset[Measurand]) -> Callable[[str], str | None]:
    measurand = _enumerated(m.value for m in Measurand if m in supported)
    phase = _enumerated(p.value for p in Phase)

    def member(item: str) -> str | None:
        whole = measurand(item)
        if whole is not None:
            return whole
        name, dot, suffix = item.rpartition(".")
        base, ph = measurand(name), phase(suffix)
        return f"{base}.{ph}" if dot and base is not None and ph is not None else None

    return member


def _phase_rotation_member(connectors: int) -> Callable[[str], str | None]:
    rotation = _enumerated(_PHASE_ROTATIONS)

    def member(item: str) -> str | None:  # "<connector>.<rotation>", connector 0 = grid to main meter
        index, dot, value = item.partition(".")
        canonical = rotation(value)
        if not (dot and index.isdigit() and int(index) <= connectors and canonical):
            return None
        return f"{int(index)}.{canonical}"

    return member


def _authorization_key_check(value: str) -> str | None:
    return None if _HEX.fullmatch(value) else "must be 32 to 40 hexadecimal digits (16 to 20 bytes)"


def _bool(name: str, default: str, group: KeyGroup = KeyGroup.CORE, access: Access = Access.RW) -> KeySpec:
    return KeySpec(name=name, group=group, kind=ValueKind.BOOL, access=access, default=default)


def _int(name: str, default: int, group: KeyGroup = KeyGroup.CORE, lo: int = 0, hi: int | None = None) -> KeySpec:
    return KeySpec(
        name=name, group=group, kind=ValueKind.INT, access=Access.RW, default=str(default), minimum=lo, maximum=hi
    )


def _fact(name: str, value: int | bool, group: KeyGroup = KeyGroup.CORE) -> KeySpec:
    if isinstance(value, bool):
        return _bool(name, "true" if value else "false", group, Access.R)
    return KeySpec(name=name, group=group, kind=ValueKind.INT, access=Access.R, default=str(value), minimum=0)


def _csl(
    name: str,
    default: str,
    member: Callable[[str], str | None],
    cap: int,
    *,
    access: Access = Access.RW,
    group: KeyGroup = KeyGroup.CORE,
) -> KeySpec:
    return KeySpec(
        name=name, group=group, kind=ValueKind.CSL, access=access, default=default, member=member, max_members=cap
    )


def _core_keys(station: StationFacts) -> list[KeySpec]:
    n, cap = station.number_of_connectors, station.measurand_list_max_length
    measurands = _measurand_member(station.measurands)
    energy = Measurand.ENERGY_ACTIVE_IMPORT_REGISTER.value
    sampled_default = energy if Measurand.ENERGY_ACTIVE_IMPORT_REGISTER in station.measurands else ""
    profiles = ",".join(p.value for p in FeatureProfile if p in station.feature_profiles)
    keys = [
        _bool("AllowOfflineTxForUnknownId", "false") if station.unknown_offline_authorization else None,
        _bool("AuthorizationCacheEnabled", "true") if station.authorization_cache else None,
        _bool("AuthorizeRemoteTxRequests", "false"),
        _int("BlinkRepeat", 3) if station.indicator_light else None,
        _int("ClockAlignedDataInterval", 0, hi=86400),
        _int("ConnectionTimeOut", 60),
        _csl(
            "ConnectorPhaseRotation",
            ",".join(f"{c}.Unknown" for c in range(1, n + 1)),
            _phase_rotation_member(n),
            n + 1,
        ),
        _fact("ConnectorPhaseRotationMaxLength", n + 1),
        _fact("GetConfigurationMaxKeys", station.get_configuration_max_keys),
        _int("HeartbeatInterval", 300),
        _int("LightIntensity", 100, hi=100) if station.indicator_light else None,
        _bool("LocalAuthorizeOffline", "true"),
        _bool("LocalPreAuthorize", "false"),
        _int("MaxEnergyOnInvalidId", 0),
        _csl("MeterValuesAlignedData", sampled_default, measurands, cap),
        _fact("MeterValuesAlignedDataMaxLength", cap),
        _csl("MeterValuesSampledData", sampled_default, measurands, cap),
        _fact("MeterValuesSampledDataMaxLength", cap),
        _int("MeterValueSampleInterval", 60),
        _int("MinimumStatusDuration", 0),
        _fact("NumberOfConnectors", n),
        _int("ResetRetries", 1),
        _bool("StopTransactionOnEVSideDisconnect", "true"),
        _bool("StopTransactionOnInvalidId", "true"),
        _csl("StopTxnAlignedData", "", measurands, cap),
        _fact("StopTxnAlignedDataMaxLength", cap),
        _csl("StopTxnSampledData", "", measurands, cap),
        _fact("StopTxnSampledDataMaxLength", cap),
        _csl("SupportedFeatureProfiles", profiles, _enumerated(FeatureProfile), len(FeatureProfile), access=Access.R),
        _fact("SupportedFeatureProfilesMaxLength", len(FeatureProfile)),
        _int("TransactionMessageAttempts", 3),
        _int("TransactionMessageRetryInterval", 60),
        _bool("UnlockConnectorOnEVSideDisconnect", "true"),
        _int("WebSocketPingInterval", 30),
    ]
    return [k for k in keys if k is not None]


def _profile_keys(station: StationFacts) -> list[KeySpec]:
    keys: list[KeySpec] = []
    if FeatureProfile.LOCAL_AUTH_LIST_MANAGEMENT in station.feature_profiles:
        group = KeyGroup.LOCAL_AUTH_LIST
        keys += [
            _bool("LocalAuthListEnabled", "true", group),
            _fact("LocalAuthListMaxLength", station.local_auth_list_max_length, group),
            _fact("SendLocalListMaxLength", station.send_local_list_max_length, group),
        ]
    if FeatureProfile.RESERVATION in station.feature_profiles:
        keys.append(_fact("ReserveConnectorZeroSupported", station.reserve_connector_zero, KeyGroup.RESERVATION))
    if FeatureProfile.SMART_CHARGING in station.feature_profiles:
        group = KeyGroup.SMART_CHARGING
        units, rate_units = ",".join(station.charging_rate_units), _enumerated(("Current", "Power"))
        keys += [
            _fact("ChargeProfileMaxStackLevel", station.charge_profile_max_stack_level, group),
            _csl("ChargingScheduleAllowedChargingRateUnit", units, rate_units, 2, access=Access.R, group=group),
            _fact("ChargingScheduleMaxPeriods", station.charging_schedule_max_periods, group),
            _fact("ConnectorSwitch3to1PhaseSupported", station.connector_switch_3to1_phase, group),
            _fact("MaxChargingProfilesInstalled", station.max_charging_profiles_installed, group),
        ]
    return keys


def _security_keys(station: StationFacts) -> list[KeySpec]:
    if not station.security_extensions:
        return []
    group = KeyGroup.SECURITY
    return [
        _fact("AdditionalRootCertificateCheck", False, group),
        KeySpec(
            name="AuthorizationKey",
            group=group,
            kind=ValueKind.STRING,
            access=Access.W,
            default=None,
            check=_authorization_key_check,
        ),
        _fact("CertificateSignedMaxChainSize", min(station.certificate_signed_max_chain_size, 10000), group),
        _fact("CertificateStoreMaxLength", station.certificate_store_max_length, group),
        KeySpec(name="CpoName", group=group, kind=ValueKind.STRING, access=Access.RW, default=None),
        _int("SecurityProfile", 0, group, hi=3),
    ]


def _vendor_keys() -> list[KeySpec]:
    group = KeyGroup.VENDOR
    return [
        _int("RetryBackOffRandomRange", 10, group),
        _int("RetryBackOffRepeatTimes", 5, group),
        _int("RetryBackOffWaitMinimum", 3, group),
    ]


def standard_keys(station: StationFacts) -> tuple[KeySpec, ...]:
    """Every key this station has, in the order of the specification's tables."""
    return tuple(_core_keys(station) + _profile_keys(station) + _security_keys(station) + _vendor_keys())


def with_defaults(keys: Iterable[KeySpec], defaults: Mapping[str, str]) -> tuple[KeySpec, ...]:
    """`keys` with site-specific defaults (e.g. from the topology); a bad name or value raises ValueError."""
    by_name = {k.name: k for k in keys}
    unknown = sorted(set(defaults) - set(by_name))
    if unknown:
        raise ValueError(f"unknown configuration keys: {', '.join(unknown)}")
    for name, value in defaults.items():
        spec = by_name[name]
        by_name[name] = replace(spec, default=spec.canonical_value(value))
    return tuple(by_name.values())
