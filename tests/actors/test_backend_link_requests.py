"""BackendLink answering the CSMS, against both peers: Get/ChangeConfiguration (persisted, read-only, bad
values, unknown keys), the local list and the cache, DataTransfer, TriggerMessage, ChangeAvailability,
authorization of idTags, and the CALLERRORs the specification asks for where the `ocpp` library
deviates. Fake EVSE managers stand in for the connectors.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any, ClassVar

import pytest
from charger.actors.charging import ConnectorStatus, GetConnectorStatus, SetAvailability
from charger.actors.ocpp_messages import AuthorizeToken, TokenAuthorization

from charger.behaviour import handles
from charger.errors import Rejected
from tests.actors.test_backend_link_harness import CP_ID, Station, eventually, station
from tests.support.csms import PEER_KINDS, PeerOptions
from tests.support.fake_evse import FakeEvse, FakePlugIn

AUTH_KEY_HEX = "30313233343536373839616263646566"  # b"0123456789abcdef"
_GET_STATUS = GetConnectorStatus()
ACCEPTED = {"status": "Accepted"}


class AvailabilityEvse(FakeEvse):
    """A fake EVSE manager that takes `SetAvailability` and says when it is out of service."""

    config_schema: ClassVar = FakeEvse.config_schema

    @handles(SetAvailability)
    def on_availability(self, msg: SetAvailability) -> None:
        if self.state == "Charging":  # the real one would stop the transaction: the link must not ask
            raise Rejected("the backend link asked while a transaction runs")
        self.state = "Idle" if msg.available else "Disabled"
        self.publish(self._status())


def configuration(st: Station, *keys: str) -> dict[str, Any]:
    answer = st.call_action("GetConfiguration", {"key": list(keys)} if keys else {})
    assert answer.ok, answer
    payload: dict[str, Any] = dict(answer.payload)
    return payload


def values(st: Station, *keys: str) -> dict[str, str | None]:
    return {kv["key"]: kv.get("value") for kv in configuration(st, *keys)["configurationKey"]}


def change(st: Station, key: str, value: str) -> str:
    answer = st.call_action("ChangeConfiguration", {"key": key, "value": value})
    assert answer.ok, answer
    status: str = answer.payload["status"]
    return status


def accepted(st: Station) -> Station:
    eventually(lambda: st.link().registration == "Accepted" and st.link().online, "the boot")
    return st


@pytest.mark.parametrize("peer", PEER_KINDS)
def test_configuration_is_reported_changed_refused_and_kept_across_a_kill(tmp_path: Path, peer: str) -> None:
    with station(tmp_path, peer, light=True, authorization_key=AUTH_KEY_HEX) as st:
        accepted(st)
        report = configuration(st)
        names = {kv["key"] for kv in report["configurationKey"]}
        assert {"HeartbeatInterval", "NumberOfConnectors", "SupportedFeatureProfiles", "SecurityProfile"} <= names
        assert "AuthorizationKey" not in names  # write-only: never reported
        everything = {kv["key"]: kv for kv in report["configurationKey"]}
        assert everything["NumberOfConnectors"] == {"key": "NumberOfConnectors", "readonly": True, "value": "2"}
        assert set(everything["SupportedFeatureProfiles"]["value"].split(",")) == {
            "Core",
            "FirmwareManagement",
            "LocalAuthListManagement",
            "Reservation",
            "RemoteTrigger",
            "SmartCharging",
        }
        asked = configuration(st, "MeterValueSampleInterval", "NoSuchKey", "AuthorizationKey")
        assert asked["unknownKey"] == ["NoSuchKey"]
        assert {"key": "AuthorizationKey", "readonly": False} in asked["configurationKey"]

        assert change(st, "NoSuchKey", "1") == "NotSupported"
        assert change(st, "NumberOfConnectors", "5") == "Rejected"  # read-only
        assert change(st, "MeterValueSampleInterval", "soon") == "Rejected"  # not an integer
        assert change(st, "MeterValuesSampledData", "Energy.Active.Import.Register,SoC") == "Rejected"  # no SoC
        assert change(st, "MeterValueSampleInterval", "17") == "Accepted"
        assert change(st, "LocalPreAuthorize", "TRUE") == "Accepted"
        assert change(st, "AuthorizationKey", "00" * 20) == "Accepted"
        assert change(st, "SecurityProfile", "0") == "Accepted"  # unchanged
        st.kill_backend()
        accepted(st)
        assert values(st, "MeterValueSampleInterval", "LocalPreAuthorize") == {
            "MeterValueSampleInterval": "17",
            "LocalPreAuthorize": "true",
        }
        assert st.csms.invalid_inbound() == []
    assert "00" * 20 not in (tmp_path / "system.log").read_text()


@pytest.mark.parametrize("peer", PEER_KINDS)
def test_too_many_keys_is_an_occurence_constraint_violation(tmp_path: Path, peer: str) -> None:
    with station(tmp_path, peer, light=True, configuration={}) as st:
        accepted(st)
        answer = st.call_action("GetConfiguration", {"key": [f"Key{i}" for i in range(101)]})
        assert not answer.ok and answer.error_code == "OccurenceConstraintViolation"


@pytest.mark.parametrize("peer", PEER_KINDS)
def test_local_list_versions_and_the_cache(tmp_path: Path, peer: str) -> None:
    with station(tmp_path, peer, light=True) as st:
        accepted(st)
        assert st.call_action("GetLocalListVersion", {}).payload == {"listVersion": 0}
        full = {
            "listVersion": 3,
            "updateType": "Full",
            "localAuthorizationList": [
                {"idTag": "LISTED", "idTagInfo": {"status": "Accepted"}},
                {"idTag": "BLOCKED", "idTagInfo": {"status": "Blocked"}},
            ],
        }
        assert st.call_action("SendLocalList", full).payload == ACCEPTED
        stale = {"listVersion": 3, "updateType": "Differential", "localAuthorizationList": []}
        assert st.call_action("SendLocalList", stale).payload == {"status": "VersionMismatch"}
        delta = {"listVersion": 4, "updateType": "Differential", "localAuthorizationList": [{"idTag": "BLOCKED"}]}
        assert st.call_action("SendLocalList", delta).payload == ACCEPTED
        st.kill_backend()
        accepted(st)
        assert st.call_action("GetLocalListVersion", {}).payload == {"listVersion": 4}
        assert st.call_action("ClearCache", {}).payload == ACCEPTED


@pytest.mark.parametrize("peer", PEER_KINDS)
def test_data_transfer_and_trigger_message(tmp_path: Path, peer: str) -> None:
    with station(tmp_path, peer, light=True) as st:
        accepted(st)
        assert st.call_action("DataTransfer", {"vendorId": "com.example"}).payload == {"status": "UnknownVendorId"}
        assert st.call_action("DataTransfer", {"vendorId": "charger", "messageId": "x"}).payload == {
            "status": "UnknownMessageId"
        }
        after = st.csms.next_seq()
        assert st.call_action("TriggerMessage", {"requestedMessage": "Heartbeat"}).payload == ACCEPTED
        st.wait_call("Heartbeat", after)
        after = st.csms.next_seq()
        trigger = {"requestedMessage": "StatusNotification", "connectorId": 2}
        assert st.call_action("TriggerMessage", trigger).payload == ACCEPTED
        assert st.wait_call("StatusNotification", after).payload["connectorId"] == 2
        after = st.csms.next_seq()
        assert st.call_action("TriggerMessage", {"requestedMessage": "BootNotification"}).payload == ACCEPTED
        st.wait_call("BootNotification", after)
        after = st.csms.next_seq()
        firmware = {"requestedMessage": "FirmwareStatusNotification"}
        assert st.call_action("TriggerMessage", firmware).payload == ACCEPTED
        assert st.wait_call("FirmwareStatusNotification", after).payload == {"status": "Idle"}
        nowhere = {"requestedMessage": "StatusNotification", "connectorId": 9}
        assert st.call_action("TriggerMessage", nowhere).payload == {"status": "Rejected"}
        assert st.csms.invalid_inbound() == []


def _call(action: str, payload: Any) -> str:
    return json.dumps([2, str(uuid.uuid4()), action, payload])


@pytest.mark.parametrize("peer", PEER_KINDS)
def test_callerrors_where_the_library_deviates(tmp_path: Path, peer: str) -> None:
    with station(tmp_path, peer, light=True) as st:
        accepted(st)
        cases = {
            _call("FlyToTheMoon", {}): "NotImplemented",  # not an OCPP 1.6 action
            _call("SetChargingProfile", {"connectorId": 1, "csChargingProfiles": {}}): "ProtocolError",
            _call("GetDiagnostics", {}): "ProtocolError",  # served: an incomplete payload is a ProtocolError
            _call("BootNotification", {"chargePointVendor": "x", "chargePointModel": "y"}): "NotSupported",
            _call("Reset", {"type": "Soft", "extra": 1}): "FormationViolation",  # not FormatViolation
            _call("Reset", {"type": "Warm"}): "FormationViolation",
            _call("Reset", {}): "ProtocolError",
            _call("UnlockConnector", {"connectorId": "one"}): "TypeConstraintViolation",
            _call("GetConfiguration", []): "FormationViolation",  # the payload is not an object
            json.dumps([2, "x" * 37, "Heartbeat", {}]): "FormationViolation",  # over-long unique id
            json.dumps([2, "short-call", "ClearCache"]): "FormationViolation",  # a CALL has 4 elements
            json.dumps([7, "unknown-type", "ClearCache", {}]): "FormationViolation",
        }
        for text, code in cases.items():
            answer = st.raw_call(text)
            assert answer.error_code == code, (text, answer.text)
        for garbage in ("not json", "{}", "[]", '[2, 5, "Reset", {}]', '[3, "nobody-asked", {}]'):
            st.csms.send_raw(CP_ID, garbage)
        assert st.call_action("GetLocalListVersion", {}).payload == {"listVersion": 0}  # the link carries on
        assert st.link().connections == 1
        # ocpp-rpc flags our answers to its untracked raw CALLs, and nothing else
        assert all("unrecognised message ID" in e.fields["error"] for e in st.csms.invalid_inbound())


def authorize(st: Station, id_tag: str) -> TokenAuthorization:
    verdict = st.system.client.call("backend", AuthorizeToken(id_tag=id_tag), timeout=35.0)
    assert isinstance(verdict, TokenAuthorization)
    return verdict


def test_authorization_online_from_the_cache_and_offline(tmp_path: Path) -> None:
    options = PeerOptions(id_tags={"BLOCKED1": "Blocked"})
    with station(tmp_path, light=True, options=options, configuration={"AllowOfflineTxForUnknownId": "false"}) as st:
        accepted(st)
        assert (authorize(st, "CARD1").status, authorize(st, "CARD1").source) == ("Accepted", "csms")
        assert authorize(st, "BLOCKED1").status == "Blocked"
        assert len(st.calls("Authorize")) == 3
        assert authorize(st, "x" * 21).status == "Invalid"  # not an IdToken: never asked
        change(st, "LocalPreAuthorize", "true")
        cached = authorize(st, "CARD1")
        assert (cached.status, cached.source) == ("Accepted", "cache") and len(st.calls("Authorize")) == 3
        st.csms.go_offline()  # type: ignore[attr-defined]
        eventually(lambda: not st.link().online, "the link noticing the outage")
        assert (authorize(st, "CARD1").status, authorize(st, "CARD1").source) == ("Accepted", "cache")
        assert authorize(st, "BLOCKED1").status == "Blocked"  # known and not valid: refused offline too
        assert (authorize(st, "STRANGER").status, authorize(st, "STRANGER").source) == ("Invalid", "offline")
        st.csms.go_online()  # type: ignore[attr-defined]
        accepted(st)
        assert change(st, "AllowOfflineTxForUnknownId", "true") == "Accepted"
        assert st.call_action("ClearCache", {}).payload == ACCEPTED
        st.csms.go_offline()  # type: ignore[attr-defined]
        eventually(lambda: not st.link().online, "the link noticing the outage")
        assert (authorize(st, "CARD1").status, authorize(st, "CARD1").source) == ("Accepted", "offline")


def test_change_availability_at_once_or_scheduled_behind_a_transaction(tmp_path: Path) -> None:
    evse_type = f"{__name__}:AvailabilityEvse"
    with station(tmp_path, light=True, evse_type=evse_type) as st:
        accepted(st)
        after = st.csms.next_seq()
        assert st.call_action("ChangeAvailability", {"connectorId": 2, "type": "Inoperative"}).payload == ACCEPTED
        # the boot's own StatusNotifications may still be on their way: wait for the one that matters
        st.wait_call(
            "StatusNotification",
            after,
            where=lambda f: f.payload["connectorId"] == 2 and f.payload["status"] == "Unavailable",
        )
        assert st.call_action("ChangeAvailability", {"connectorId": 3, "type": "Inoperative"}).payload == {
            "status": "Rejected"
        }
        st.system.client.call("evse-1", FakePlugIn())
        assert st.call_action("RemoteStartTransaction", {"idTag": "REMOTE1", "connectorId": 1}).payload == ACCEPTED
        start = st.wait_call("StartTransaction")
        assert start.payload["idTag"] == "REMOTE1" and start.payload["connectorId"] == 1
        eventually(lambda: st.link().queued_messages == 0, "the StartTransaction delivered")
        after = st.csms.next_seq()
        assert st.call_action("ChangeAvailability", {"connectorId": 0, "type": "Inoperative"}).payload == {
            "status": "Scheduled"
        }
        station_status = st.wait_call("StatusNotification", after, where=lambda f: f.payload["connectorId"] == 0)
        assert station_status.payload["status"] == "Unavailable"
        status = st.system.client.call("evse-1", _GET_STATUS)
        assert isinstance(status, ConnectorStatus) and status.state == "Charging"  # not interrupted
        stop = st.call_action("RemoteStopTransaction", {"transactionId": _transaction_id(st)})
        assert stop.payload == ACCEPTED
        eventually(lambda: st.system.client.call("evse-1", _GET_STATUS).state == "Disabled", "the scheduled change")
        eventually(
            lambda: (
                [f.payload["status"] for f in st.calls("StatusNotification", after) if f.payload["connectorId"] == 1][
                    -1:
                ]
                == ["Unavailable"]
            ),
            "connector 1 reported Unavailable",
        )
        st.kill_backend()  # availability is kept across restarts (OCPP 1.6 §5.2)
        accepted(st)
        assert st.call_action("ChangeAvailability", {"connectorId": 0, "type": "Operative"}).payload == ACCEPTED
        eventually(lambda: st.system.client.call("evse-1", _GET_STATUS).state == "Idle", "back in service")


def _transaction_id(st: Station) -> int:
    results = [
        f
        for f in st.csms.frames(CP_ID)
        if f.direction.value == "tx" and f.message_type == 3 and f.action == "StartTransaction"
    ]
    transaction_id: int = results[-1].payload["transactionId"]
    return transaction_id
