"""OCPP 1.6 configuration keys: the table matches the specification's names, GetConfiguration and
ChangeConfiguration answer as §5.3/§5.8 and the security whitepaper require, and no value crashes it."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import jsonschema
import ocpp.v16
import ocpp.v16.enums as lib_enums
import pytest
from charger.protocols.ocpp_config import (
    Access,
    ConfigurationStatus,
    FeatureProfile,
    KeyGroup,
    KeySpec,
    Measurand,
    OcppConfiguration,
    Phase,
    StationFacts,
    TooManyKeys,
    ValueKind,
    standard_keys,
    with_defaults,
)
from hypothesis import given
from hypothesis import strategies as st

_SCHEMAS = Path(ocpp.v16.__file__).parent / "schemas"
KEY_HEX = "0123456789abcdef0123456789abcdef"  # 16 bytes, the shortest AuthorizationKey
FULL = StationFacts(number_of_connectors=2, indicator_light=True)


def config(station: StationFacts = FULL, **stored: str) -> OcppConfiguration:
    return OcppConfiguration(standard_keys(station), stored)


def schema(name: str) -> dict[str, object]:
    return json.loads((_SCHEMAS / f"{name}.json").read_text())  # type: ignore[no-any-return]


def reported(cfg: OcppConfiguration, key: str) -> str | None:
    [kv] = cfg.get_configuration([key]).configuration_key
    return kv.value


# --- the table ---------------------------------------------------------------------------------------


def test_every_standard_key_of_the_spec_and_the_security_whitepaper_is_there() -> None:
    plug_and_charge = {  # from the 1.6 Plug & Charge application note, not in scope here
        "CentralContractValidationAllowed",
        "CertSigningWaitMinimum",
        "CertSigningRepeatTimes",
        "ContractValidationOffline",
        "ISO15118PnCEnabled",
    }
    names = {k.name for k in standard_keys(FULL)}
    expected = {k.value for k in lib_enums.ConfigurationKey} - plug_and_charge
    assert expected <= names
    assert names - expected == {"RetryBackOffRandomRange", "RetryBackOffRepeatTimes", "RetryBackOffWaitMinimum"}


def test_enumerations_match_the_ocpp_library() -> None:
    assert {m.value for m in Measurand} == {m.value for m in lib_enums.Measurand}
    assert {p.value for p in Phase} == {p.value for p in lib_enums.Phase}
    assert {s.value for s in ConfigurationStatus} == {s.value for s in lib_enums.ConfigurationStatus}


@pytest.mark.parametrize(
    "name, kind, access, group",
    [
        ("HeartbeatInterval", ValueKind.INT, Access.RW, KeyGroup.CORE),
        ("NumberOfConnectors", ValueKind.INT, Access.R, KeyGroup.CORE),
        ("LocalPreAuthorize", ValueKind.BOOL, Access.RW, KeyGroup.CORE),
        ("MeterValuesSampledData", ValueKind.CSL, Access.RW, KeyGroup.CORE),
        ("SupportedFeatureProfiles", ValueKind.CSL, Access.R, KeyGroup.CORE),
        ("LocalAuthListMaxLength", ValueKind.INT, Access.R, KeyGroup.LOCAL_AUTH_LIST),
        ("ReserveConnectorZeroSupported", ValueKind.BOOL, Access.R, KeyGroup.RESERVATION),
        ("ChargingScheduleAllowedChargingRateUnit", ValueKind.CSL, Access.R, KeyGroup.SMART_CHARGING),
        ("AuthorizationKey", ValueKind.STRING, Access.W, KeyGroup.SECURITY),
        ("SecurityProfile", ValueKind.INT, Access.RW, KeyGroup.SECURITY),
        ("CpoName", ValueKind.STRING, Access.RW, KeyGroup.SECURITY),
    ],
)
def test_types_and_access_as_in_the_spec(name: str, kind: ValueKind, access: Access, group: KeyGroup) -> None:
    spec = config().spec(name)
    assert spec is not None and (spec.kind, spec.access, spec.group) == (kind, access, group)


def test_optional_keys_exist_only_with_their_feature() -> None:
    bare = StationFacts(
        number_of_connectors=1,
        feature_profiles=frozenset({FeatureProfile.CORE}),
        authorization_cache=False,
        unknown_offline_authorization=False,
        security_extensions=False,
    )
    cfg = config(bare)
    for absent in ("AuthorizationCacheEnabled", "AllowOfflineTxForUnknownId", "LocalAuthListEnabled", "BlinkRepeat"):
        assert not cfg.has(absent)
    for absent in ("ReserveConnectorZeroSupported", "ChargeProfileMaxStackLevel", "SecurityProfile"):
        assert not cfg.has(absent)
    assert cfg.csl("SupportedFeatureProfiles") == ("Core",)
    assert not cfg.flag("AuthorizationCacheEnabled")  # a missing feature key reads as off
    assert cfg.integer("NumberOfConnectors") == 1


def test_station_facts_are_checked() -> None:
    with pytest.raises(ValueError, match="connector"):
        StationFacts(number_of_connectors=0)
    with pytest.raises(ValueError, match="Core"):
        StationFacts(number_of_connectors=1, feature_profiles=frozenset({FeatureProfile.SMART_CHARGING}))


def test_site_defaults_are_validated() -> None:
    keys = with_defaults(standard_keys(FULL), {"HeartbeatInterval": "0060", "LocalPreAuthorize": "TRUE"})
    cfg = OcppConfiguration(keys)
    assert cfg.integer("HeartbeatInterval") == 60 and cfg.boolean("LocalPreAuthorize")
    with pytest.raises(ValueError, match="HeartbeatInterval"):
        with_defaults(standard_keys(FULL), {"HeartbeatInterval": "soon"})
    secret = with_defaults(standard_keys(FULL), {"AuthorizationKey": KEY_HEX})
    assert KEY_HEX not in repr(secret) and OcppConfiguration(secret).authorization_password() == bytes.fromhex(KEY_HEX)
    with pytest.raises(ValueError, match="unknown configuration keys: Nope"):
        with_defaults(standard_keys(FULL), {"Nope": "1"})


# --- GetConfiguration ----------------------------------------------------------------------------------


def test_get_all_reports_every_key_but_the_write_only_one_and_is_schema_valid() -> None:
    cfg = config()
    cfg.apply(cfg.plan_change("AuthorizationKey", KEY_HEX))
    report = cfg.get_configuration()
    names = [kv.key for kv in report.configuration_key]
    assert "AuthorizationKey" not in names and report.unknown_key == ()
    assert len(names) == len(standard_keys(FULL)) - 1
    assert KEY_HEX not in json.dumps(report.to_wire())
    jsonschema.validate(report.to_wire(), schema("GetConfigurationResponse"))
    readonly = {kv.key for kv in report.configuration_key if kv.readonly}
    assert {"NumberOfConnectors", "SupportedFeatureProfiles", "GetConfigurationMaxKeys"} <= readonly
    assert "HeartbeatInterval" not in readonly


def test_get_named_keys_matches_case_insensitively_and_lists_unknown_keys() -> None:
    cfg = config()
    report = cfg.get_configuration(["heartbeatinterval", "Nope", "HEARTBEATINTERVAL", "Nope", "AuthorizationKey"])
    assert [kv.to_wire() for kv in report.configuration_key] == [
        {"key": "HeartbeatInterval", "readonly": False, "value": "300"},
        {"key": "AuthorizationKey", "readonly": False},  # known, never its value
    ]
    assert report.unknown_key == ("Nope",)
    jsonschema.validate(report.to_wire(), schema("GetConfigurationResponse"))


def test_more_keys_than_get_configuration_max_keys_is_an_error() -> None:
    cfg = config(replace(FULL, get_configuration_max_keys=2))
    assert len(cfg.get_configuration(["HeartbeatInterval", "ResetRetries"]).configuration_key) == 2
    with pytest.raises(TooManyKeys):
        cfg.get_configuration(["HeartbeatInterval", "ResetRetries", "ConnectionTimeOut"])


# --- ChangeConfiguration ---------------------------------------------------------------------------------


def test_unknown_key_is_not_supported_and_read_only_key_is_rejected() -> None:
    cfg = config()
    assert cfg.plan_change("Testing", "true").status is ConfigurationStatus.NOT_SUPPORTED  # OCTT TC_040_1
    change = cfg.plan_change("NumberOfConnectors", "3")
    assert change.status is ConfigurationStatus.REJECTED and change.reason == "read-only key"


@pytest.mark.parametrize(
    "key, value",
    [
        ("MeterValueSampleInterval", "-1"),  # OCTT TC_040_2
        ("MeterValueSampleInterval", "1.5"),
        ("MeterValueSampleInterval", "+5"),
        ("MeterValueSampleInterval", " 5"),
        ("MeterValueSampleInterval", "99999999999"),
        ("ClockAlignedDataInterval", "86401"),
        ("LocalPreAuthorize", "yes"),
        ("LocalPreAuthorize", "1"),
        ("MeterValuesSampledData", "Energy.Active.Import.Register,Bogus"),
        ("MeterValuesSampledData", "Voltage.L4"),
        ("MeterValuesSampledData", "Voltage,,Current.Import"),
        ("MeterValuesSampledData", "Voltage,voltage"),
        ("MeterValuesSampledData", ",".join(m.value for m in Measurand)),  # more than MaxLength (12)
        ("ConnectorPhaseRotation", "3.RST"),  # only connectors 0..2
        ("ConnectorPhaseRotation", "1.XYZ"),
        ("ConnectorPhaseRotation", "RST"),
        ("LightIntensity", "101"),
        ("SecurityProfile", "4"),
        ("CpoName", "x" * 501),
    ],
)
def test_bad_values_are_rejected(key: str, value: str) -> None:
    cfg = config()
    before = cfg.get_configuration().to_wire()
    change = cfg.plan_change(key, value)
    assert change.status is ConfigurationStatus.REJECTED and change.reason and change.value is None
    cfg.apply(change)
    assert cfg.get_configuration().to_wire() == before


@pytest.mark.parametrize(
    "key, value, canonical",
    [
        ("LocalPreAuthorize", "TRUE", "true"),
        ("MeterValueSampleInterval", "007", "7"),
        ("MeterValuesSampledData", "voltage.l1, Current.Import ,SoC", "Voltage.L1,Current.Import,SoC"),
        ("MeterValuesSampledData", "Current.Import.L2-N", "Current.Import.L2-N"),
        ("MeterValuesAlignedData", " ", ""),
        ("ConnectorPhaseRotation", "0.RST, 1.rts, 2.NotApplicable", "0.RST,1.RTS,2.NotApplicable"),
        ("CpoName", "Charge & Co", "Charge & Co"),
    ],
)
def test_good_values_are_stored_in_canonical_form(key: str, value: str, canonical: str) -> None:
    cfg = config()
    change = cfg.plan_change(key, value)
    assert change.status is ConfigurationStatus.ACCEPTED and change.value == canonical
    assert reported(cfg, key) != canonical  # planning changes nothing
    cfg.apply(change)
    assert reported(cfg, key) == canonical


def test_measurands_the_meter_cannot_deliver_are_rejected() -> None:
    cfg = config(replace(FULL, measurands=frozenset({Measurand.ENERGY_ACTIVE_IMPORT_REGISTER, Measurand.VOLTAGE})))
    assert cfg.plan_change("MeterValuesAlignedData", "Voltage.L1").status is ConfigurationStatus.ACCEPTED
    assert cfg.plan_change("MeterValuesAlignedData", "SoC").status is ConfigurationStatus.REJECTED


def test_typed_access_reads_the_values_in_force() -> None:
    cfg = config()
    for key, value in [("HeartbeatInterval", "45"), ("LocalPreAuthorize", "true"), ("MeterValuesSampledData", "")]:
        cfg.apply(cfg.plan_change(key, value))
    assert cfg.integer("HeartbeatInterval") == 45
    assert cfg.boolean("LocalPreAuthorize") is True
    assert cfg.csl("MeterValuesSampledData") == ()
    assert cfg.csl("SupportedFeatureProfiles")[0] == "Core"
    assert cfg.text("CpoName") is None
    with pytest.raises(TypeError):
        cfg.integer("LocalPreAuthorize")
    with pytest.raises(KeyError):
        cfg.integer("Nope")
    with pytest.raises(TypeError):
        cfg.text("AuthorizationKey")


def test_reboot_required_key_is_reported_at_once_and_used_after_the_restart() -> None:
    reboot = KeySpec(
        name="GridCode", group=KeyGroup.VENDOR, kind=ValueKind.INT, access=Access.RW, default="1", reboot_required=True
    )
    keys = (*standard_keys(FULL), reboot)
    cfg = OcppConfiguration(keys)
    change = cfg.plan_change("GridCode", "2")
    assert change.status is ConfigurationStatus.REBOOT_REQUIRED and change.stores
    cfg.apply(change)
    assert reported(cfg, "GridCode") == "2" and cfg.integer("GridCode") == 1
    assert cfg.pending_reboot == {"GridCode"}
    assert cfg.plan_change("GridCode", "1").status is ConfigurationStatus.ACCEPTED  # back to the value in force
    restarted = OcppConfiguration(keys, {"GridCode": "2"})
    assert restarted.integer("GridCode") == 2 and restarted.pending_reboot == frozenset()


# --- security whitepaper -----------------------------------------------------------------------------------


def test_authorization_key_is_hex_of_16_to_20_bytes_and_never_shown() -> None:
    cfg = config()
    for bad in ("short", KEY_HEX[:-1], KEY_HEX + "a", "zz" * 16, "ab" * 21):
        change = cfg.plan_change("AuthorizationKey", bad)
        assert change.status is ConfigurationStatus.REJECTED and bad not in repr(change) + change.reason
    change = cfg.plan_change("AuthorizationKey", KEY_HEX.upper())
    assert change.status is ConfigurationStatus.ACCEPTED and change.secret
    assert KEY_HEX.upper() not in repr(change) and "<hidden>" in repr(change)
    cfg.apply(change)
    assert cfg.authorization_password() == bytes.fromhex(KEY_HEX)
    assert reported(cfg, "AuthorizationKey") is None
    assert config().authorization_password() is None


def test_security_profile_never_goes_down_and_goes_up_only_when_ready() -> None:
    cfg = config()
    need_key = cfg.plan_change("SecurityProfile", "1")
    assert need_key.status is ConfigurationStatus.REJECTED and "AuthorizationKey" in need_key.reason
    cfg.apply(cfg.plan_change("AuthorizationKey", KEY_HEX))
    cfg.apply(cfg.plan_change("SecurityProfile", "1"))
    assert cfg.integer("SecurityProfile") == 1
    assert cfg.plan_change("SecurityProfile", "2").status is ConfigurationStatus.REJECTED  # no certificate check
    assert cfg.plan_change("SecurityProfile", "2", security_profile_ready=lambda p: False).status is (
        ConfigurationStatus.REJECTED
    )
    asked: list[int] = []

    def ready(profile: int) -> bool:
        asked.append(profile)
        return True

    up = cfg.plan_change("SecurityProfile", "3", security_profile_ready=ready)
    assert up.status is ConfigurationStatus.ACCEPTED and asked == [3]
    cfg.apply(up)
    down = cfg.plan_change("SecurityProfile", "2", security_profile_ready=lambda p: True)  # OCTT TC_084
    assert down.status is ConfigurationStatus.REJECTED and "lowered" in down.reason
    assert cfg.plan_change("SecurityProfile", "3").status is ConfigurationStatus.ACCEPTED


# --- stored values -------------------------------------------------------------------------------------


def test_stored_values_that_no_longer_fit_are_ignored_with_a_reason() -> None:
    cfg = config(HeartbeatInterval="90", NumberOfConnectors="9", Gone="1", MeterValueSampleInterval="-3")
    assert cfg.integer("HeartbeatInterval") == 90 and cfg.integer("NumberOfConnectors") == 2
    assert set(cfg.ignored_stored) == {"NumberOfConnectors", "Gone", "MeterValueSampleInterval"}
    assert cfg.integer("MeterValueSampleInterval") == 60


# --- nothing crashes -------------------------------------------------------------------------------------

_NAMES = [k.name for k in standard_keys(FULL)]
_MEMBERS = [m.value for m in Measurand] + [f"{m.value}.{p.value}" for m in Measurand for p in Phase] + ["x", ""]
values = st.one_of(
    st.text(max_size=60),
    st.integers(-(2**40), 2**40).map(str),
    st.sampled_from(["true", "false", "True", "FALSE", "0", "1", KEY_HEX, "ab" * 20]),
    st.lists(st.sampled_from(_MEMBERS), max_size=14).map(", ".join),
    st.text(alphabet="0123456789abcdefXYZ", min_size=30, max_size=42),
)
keys = st.one_of(st.sampled_from(_NAMES), st.sampled_from(_NAMES).map(str.swapcase), st.text(max_size=52))


@given(changes=st.lists(st.tuples(keys, values), max_size=12))
def test_any_change_is_answered_and_an_accepted_value_reads_back(changes: list[tuple[str, str]]) -> None:
    cfg = config()
    request_schema = schema("ChangeConfigurationResponse")
    for key, value in changes:
        before = cfg.get_configuration().to_wire()
        change = cfg.plan_change(key, value, security_profile_ready=lambda p: True)
        jsonschema.validate({"status": change.status.value}, request_schema)
        cfg.apply(change)
        if not change.stores:
            assert change.value is None and cfg.get_configuration().to_wire() == before
            continue
        spec = cfg.spec(key)
        assert spec is not None and change.value is not None and spec.canonical_value(change.value) == change.value
        if not spec.secret:
            assert reported(cfg, key) == change.value
    jsonschema.validate(cfg.get_configuration().to_wire(), schema("GetConfigurationResponse"))
