"""OCPP 1.6 configuration: GetConfiguration, ChangeConfiguration and typed access to the values (pure).

The keys themselves (types, access, defaults) are data in `ocpp_config_keys`; this module applies the
rules of OCPP 1.6 §5.3 and §5.8 to them:

- GetConfiguration without keys reports every key; with keys it reports the known ones and lists the
  rest as unknownKey. Key names are CiString50, so they match case-insensitively. More keys than
  GetConfigurationMaxKeys raise `TooManyKeys` (the link answers with a CALLERROR). The write-only
  AuthorizationKey is left out of a full report and reported without a value when asked for by name.
- ChangeConfiguration answers NotSupported for an unknown key, Rejected for a read-only key or a value
  that does not fit, RebootRequired for a key that only takes effect after a reboot, else Accepted.
  SecurityProfile may only go up (whitepaper: no downgrade), and only when its prerequisites hold.

A change is planned, then applied: `plan_change` decides the answer and the canonical value without
changing anything, the backend link stores the value durably, then calls `apply` and answers. So a
value the CSMS was told is Accepted is on disk first. Typed access (`integer`, `boolean`, `csl`,
`text`) reads the values in force: a RebootRequired change is reported and stored at once, but used
only after the restart. The AuthorizationKey is only available through `authorization_password`.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from charger.protocols.ocpp_config_keys import (
    Access,
    FeatureProfile,
    InvalidValue,
    KeyGroup,
    KeySpec,
    Measurand,
    Phase,
    StationFacts,
    ValueKind,
    standard_keys,
    with_defaults,
)

__all__ = [
    "Access",
    "ConfigChange",
    "ConfigurationReport",
    "ConfigurationStatus",
    "FeatureProfile",
    "KeyGroup",
    "KeySpec",
    "KeyValue",
    "Measurand",
    "OcppConfiguration",
    "Phase",
    "SecurityProfileReady",
    "StationFacts",
    "TooManyKeys",
    "ValueKind",
    "standard_keys",
    "with_defaults",
]

SecurityProfileReady = Callable[[int], bool]
"""Whether the station has what profile N needs (CA certificate for 2, client certificate for 3)."""

_SECURITY_PROFILE = "SecurityProfile"
_AUTHORIZATION_KEY = "AuthorizationKey"


class ConfigurationStatus(enum.StrEnum):
    """ChangeConfiguration.conf status (OCPP 1.6 §7.11)."""

    ACCEPTED = "Accepted"
    REJECTED = "Rejected"
    REBOOT_REQUIRED = "RebootRequired"
    NOT_SUPPORTED = "NotSupported"


class TooManyKeys(ValueError):
    """A GetConfiguration.req asked for more keys than GetConfigurationMaxKeys allows.

    The specification names no answer; a CALLERROR OccurenceConstraintViolation (1.6J spelling) fits."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ConfigChange:
    """The answer to one ChangeConfiguration.req, and the value to store when it is accepted."""

    status: ConfigurationStatus
    key: str
    """The key's canonical name; the name as received when the key is unknown."""
    value: str | None = None
    """Canonical value to store; set only when `stores` is true."""
    reason: str = ""
    """Why it was rejected (never contains the value)."""
    secret: bool = False

    @property
    def stores(self) -> bool:
        return self.status in (ConfigurationStatus.ACCEPTED, ConfigurationStatus.REBOOT_REQUIRED)

    def __repr__(self) -> str:  # a ChangeConfiguration of the AuthorizationKey must never reach a log
        shown = "<hidden>" if self.secret and self.value is not None else repr(self.value)
        return f"ConfigChange(status={self.status.value}, key={self.key!r}, value={shown}, reason={self.reason!r})"


@dataclass(frozen=True, slots=True)
class KeyValue:
    """One entry of GetConfiguration.conf configurationKey."""

    key: str
    readonly: bool
    value: str | None

    def to_wire(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"key": self.key, "readonly": self.readonly}
        if self.value is not None:
            entry["value"] = self.value
        return entry


@dataclass(frozen=True, slots=True)
class ConfigurationReport:
    """GetConfiguration.conf."""

    configuration_key: tuple[KeyValue, ...]
    unknown_key: tuple[str, ...]

    def to_wire(self) -> dict[str, Any]:
        """The payload; both lists are always present (empty lists are valid)."""
        return {
            "configurationKey": [kv.to_wire() for kv in self.configuration_key],
            "unknownKey": list(self.unknown_key),
        }


class OcppConfiguration:
    """The configuration keys of one station and their current values."""

    def __init__(self, keys: Iterable[KeySpec], stored: Mapping[str, str] | None = None) -> None:
        """`keys` from `standard_keys`; `stored` are values persisted earlier by ChangeConfiguration.

        A stored value for an unknown or read-only key, or one that no longer fits its key (say, a
        measurand the new meter cannot deliver), is ignored; `ignored_stored` says why, by key name.
        """
        self._specs: dict[str, KeySpec] = {}
        for spec in keys:
            if spec.name.casefold() in self._specs:
                raise ValueError(f"duplicate configuration key {spec.name}")
            self._specs[spec.name.casefold()] = spec
        self._values: dict[str, str | None] = {spec.name: spec.default for spec in self._specs.values()}
        self.ignored_stored: dict[str, str] = {}
        for name, raw in (stored or {}).items():
            known = self.spec(name)
            if known is None or known.readonly:
                self.ignored_stored[name] = "unknown key" if known is None else "read-only key"
                continue
            try:
                self._values[known.name] = known.canonical_value(raw)
            except InvalidValue as exc:
                self.ignored_stored[name] = str(exc)
        self._in_force = dict(self._values)

    # --- GetConfiguration / ChangeConfiguration -------------------------------------------------

    def spec(self, name: str) -> KeySpec | None:
        return self._specs.get(name.casefold())

    def get_configuration(self, keys: Sequence[str] | None = None) -> ConfigurationReport:
        if not keys:
            every = tuple(self._key_value(s) for s in self._specs.values() if not s.secret)
            return ConfigurationReport(every, ())
        limit = self._specs.get("getconfigurationmaxkeys")
        if limit is not None and len(keys) > self.integer(limit.name):
            raise TooManyKeys(f"{len(keys)} keys asked for, GetConfigurationMaxKeys is {self.integer(limit.name)}")
        known: dict[str, KeyValue] = {}
        unknown: list[str] = []
        for name in keys:
            spec = self.spec(name)
            if spec is None:
                if name not in unknown:
                    unknown.append(name)
            else:
                known.setdefault(spec.name, self._key_value(spec))
        return ConfigurationReport(tuple(known.values()), tuple(unknown))

    def plan_change(
        self, key: str, value: str, *, security_profile_ready: SecurityProfileReady | None = None
    ) -> ConfigChange:
        """The answer to ChangeConfiguration.req(`key`, `value`); changes nothing (see `apply`)."""
        spec = self.spec(key)
        if spec is None:
            return ConfigChange(status=ConfigurationStatus.NOT_SUPPORTED, key=key, reason="unknown key")
        rejected = ConfigChange(status=ConfigurationStatus.REJECTED, key=spec.name, secret=spec.secret)
        if spec.readonly:
            return _with_reason(rejected, "read-only key")
        try:
            canonical = spec.canonical_value(value)
        except InvalidValue as exc:
            return _with_reason(rejected, str(exc))
        if spec.name == _SECURITY_PROFILE:
            refusal = self._security_profile_refusal(int(canonical), security_profile_ready)
            if refusal:
                return _with_reason(rejected, refusal)
        later = spec.reboot_required and canonical != self._in_force[spec.name]
        status = ConfigurationStatus.REBOOT_REQUIRED if later else ConfigurationStatus.ACCEPTED
        return ConfigChange(status=status, key=spec.name, value=canonical, secret=spec.secret)

    def apply(self, change: ConfigChange) -> None:
        """Take a planned change into use (after it was stored). Changes that store nothing are ignored."""
        if not change.stores or change.value is None:
            return
        spec = self._require(change.key)
        self._values[spec.name] = change.value
        if change.status is ConfigurationStatus.ACCEPTED:
            self._in_force[spec.name] = change.value

    @property
    def pending_reboot(self) -> frozenset[str]:
        """Keys whose stored value differs from the value in force until the next start."""
        return frozenset(name for name, value in self._values.items() if self._in_force[name] != value)

    # --- typed access to the values in force -----------------------------------------------------

    def has(self, name: str) -> bool:
        return self.spec(name) is not None

    def boolean(self, name: str) -> bool:
        return self._raw(name, ValueKind.BOOL) == "true"

    def flag(self, name: str) -> bool:
        """A boolean feature key, False when the station does not have the key at all."""
        return self.has(name) and self.boolean(name)

    def integer(self, name: str) -> int:
        return int(self._raw(name, ValueKind.INT))

    def csl(self, name: str) -> tuple[str, ...]:
        raw = self._raw(name, ValueKind.CSL)
        return tuple(raw.split(",")) if raw else ()

    def text(self, name: str) -> str | None:
        """A string key's value, None when it is not set."""
        spec = self._require(name)
        if spec.kind is not ValueKind.STRING or spec.secret:
            raise TypeError(f"{spec.name} is not a readable string key")
        return self._in_force[spec.name]

    def authorization_password(self) -> bytes | None:
        """The HTTP Basic password for security profiles 1 and 2: AuthorizationKey, hex-decoded."""
        spec = self.spec(_AUTHORIZATION_KEY)
        value = None if spec is None else self._in_force[spec.name]
        return None if value is None else bytes.fromhex(value)

    # --- internals ---------------------------------------------------------------------------------

    def _key_value(self, spec: KeySpec) -> KeyValue:
        return KeyValue(spec.name, spec.readonly, None if spec.secret else self._values[spec.name])

    def _require(self, name: str) -> KeySpec:
        spec = self.spec(name)
        if spec is None:
            raise KeyError(f"no configuration key {name}")
        return spec

    def _raw(self, name: str, kind: ValueKind) -> str:
        spec = self._require(name)
        if spec.kind is not kind:
            raise TypeError(f"{spec.name} is a {spec.kind.value} key, not {kind.value}")
        value = self._in_force[spec.name]
        if value is None:
            raise ValueError(f"{spec.name} is not set")
        return value

    def _security_profile_refusal(self, wanted: int, ready: SecurityProfileReady | None) -> str:
        current = int(self._values[_SECURITY_PROFILE] or 0)
        if wanted < current:
            return f"security profile {current} cannot be lowered"
        if wanted == current:
            return ""
        if wanted in (1, 2) and self._values.get(_AUTHORIZATION_KEY) is None:
            return f"security profile {wanted} needs an AuthorizationKey"
        if ready is None:
            return "" if wanted < 2 else f"no check of the certificates for security profile {wanted}"
        return "" if ready(wanted) else f"prerequisites of security profile {wanted} are not met"


def _with_reason(change: ConfigChange, reason: str) -> ConfigChange:
    return ConfigChange(status=change.status, key=change.key, reason=reason, secret=change.secret)
