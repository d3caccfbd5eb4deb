"""BackendLink with a real SIL station (boards on ptys, Modbus meters, EVSE managers, auth), against both
CSMS peers: charging sessions as the CSMS sees them (one StartTransaction, meter values, one
StopTransaction billed exactly, the status sequence), remote start and stop, unlock, the idTag checks
of StartTransaction.conf, and reset.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from charger.ctl import ApiError
from tests.actors.test_backend_link_harness import CHARGE, TOKEN_1, TOKEN_2, Station, eventually, station
from tests.support.csms import PEER_KINDS, PeerOptions

ACCEPTED = {"status": "Accepted"}
REJECTED = {"status": "Rejected"}
OPTIONS = PeerOptions(id_tags={TOKEN_2: "Invalid", "BLOCKED9": "Blocked"})


@pytest.fixture(scope="module", params=PEER_KINDS)
def st(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Station]:
    directory = tmp_path_factory.mktemp(f"sessions-{request.param}")
    keys = {
        "MeterValueSampleInterval": "1",
        "MeterValuesSampledData": "Energy.Active.Import.Register,Current.Import",
        "StopTxnSampledData": "Energy.Active.Import.Register",
    }
    with station(directory, request.param, options=OPTIONS, configuration=keys) as running:
        eventually(lambda: running.link().registration == "Accepted", "the boot")
        yield running
        assert running.csms.invalid_inbound() == []


def statuses(st: Station, connector: int, after: int) -> list[str]:
    return [f.payload["status"] for f in st.calls("StatusNotification", after) if f.payload["connectorId"] == connector]


def is_subsequence(wanted: list[str], seen: list[str]) -> bool:
    remaining = iter(seen)
    return all(any(s == w for s in remaining) for w in wanted)


def transaction_id_of(st: Station, start_after: int) -> int:
    start = st.answered("StartTransaction", start_after)[-1]
    result = st.csms.wait_for(
        lambda f: f.unique_id == start.unique_id and f.direction.value == "tx" and f.message_type == 3
    )
    transaction_id: int = result.payload["transactionId"]
    return transaction_id


def session_frames(st: Station, after: int) -> tuple[list[Any], list[Any], list[Any]]:
    return st.calls("StartTransaction", after), st.calls("MeterValues", after), st.calls("StopTransaction", after)


def test_a_session_is_one_start_meter_values_and_one_stop_billed_exactly(st: Station) -> None:
    after = st.csms.next_seq()
    before = len(st.sessions(1))
    st.charge(1, TOKEN_1)
    eventually(lambda: len(st.answered("MeterValues", after)) >= 2, "sampled meter values")
    st.idle(1)
    bill = st.billed(1, before)
    st.wait_drained()
    starts, samples, stops = session_frames(st, after)
    assert len(starts) == 1 and len(stops) == 1, (starts, stops)
    start, stop = starts[0].payload, stops[0].payload
    assert start["connectorId"] == 1 and start["idTag"] == TOKEN_1
    assert start["meterStart"] == round(bill["meter_start_wh"]) and stop["meterStop"] == round(bill["meter_stop_wh"])
    assert abs((stop["meterStop"] - start["meterStart"]) - bill["energy_wh"]) <= 1.0
    assert stop["reason"] == "EVDisconnected" and stop["transactionId"] == transaction_id_of(st, after)
    assert starts[0].seq < min(f.seq for f in samples) and max(f.seq for f in samples) < stops[0].seq
    registers = []
    for frame in samples:
        assert frame.payload["transactionId"] == stop["transactionId"]
        for sample in frame.payload["meterValue"][0]["sampledValue"]:
            assert sample["context"] == "Sample.Periodic"
            if sample["measurand"] == "Energy.Active.Import.Register":
                registers.append(float(sample["value"]))
            else:
                assert sample["measurand"] == "Current.Import" and sample["phase"] in ("L1", "L2", "L3")
    assert registers == sorted(registers) and start["meterStart"] - 1 <= registers[0] <= stop["meterStop"] + 1
    kept = [s for value in stop["transactionData"] for s in value["sampledValue"]]  # StopTxnSampledData
    assert {(s["measurand"], s["context"]) for s in kept} == {("Energy.Active.Import.Register", "Sample.Periodic")}
    in_stop = [float(s["value"]) for s in kept]
    assert len(in_stop) >= 2 and in_stop == sorted(in_stop)
    assert start["meterStart"] - 1 <= in_stop[0] and in_stop[-1] <= stop["meterStop"] + 1
    seen = statuses(st, 1, after)
    assert is_subsequence(["Preparing", "Charging", "Finishing", "Available"], seen), seen
    assert seen[-1] == "Available"
    finishing = max(f.seq for f in st.calls("StatusNotification", after) if f.payload["status"] == "Finishing")
    assert finishing < stops[0].seq < st.calls("StatusNotification", after)[-1].seq  # Available after the Stop


def test_remote_start_on_a_waiting_car_and_remote_stop(st: Station) -> None:
    after = st.csms.next_seq()
    before = len(st.sessions(2))
    st.api("connector.plug", connector=2, script=CHARGE)
    st.wait(2, lambda s: s["state"] == "WaitingForAuthentication")
    assert st.call_action("RemoteStartTransaction", {"idTag": "REMOTE2", "connectorId": 2}).payload == ACCEPTED
    st.wait(2, lambda s: s["state"] == "Charging" and s["token_id"] == "REMOTE2")
    eventually(lambda: st.answered("StartTransaction", after), "the StartTransaction delivered")
    transaction_id = transaction_id_of(st, after)
    assert st.call_action("RemoteStopTransaction", {"transactionId": transaction_id + 1000}).payload == REJECTED
    assert st.call_action("RemoteStopTransaction", {"transactionId": transaction_id}).payload == ACCEPTED
    st.wait(2, lambda s: s["state"] == "Finished")
    assert st.billed(2, before)["stop_reason"] == "Remote"
    st.wait_drained()
    (stop,) = st.calls("StopTransaction", after)
    assert stop.payload["reason"] == "Remote" and stop.payload["transactionId"] == transaction_id
    st.idle(2)


def test_remote_start_before_the_plug_and_refusals(st: Station) -> None:
    after = st.csms.next_seq()
    before = len(st.sessions(1))
    assert st.call_action("RemoteStartTransaction", {"idTag": "REMOTE3"}).payload == ACCEPTED  # picks connector 1
    assert st.call_action("RemoteStartTransaction", {"idTag": "REMOTE4", "connectorId": 1}).payload == REJECTED
    st.api("connector.plug", connector=1, script=CHARGE)
    st.wait(1, lambda s: s["state"] == "Charging" and s["token_id"] == "REMOTE3")
    assert st.call_action("RemoteStartTransaction", {"idTag": "REMOTE4", "connectorId": 1}).payload == REJECTED
    st.idle(1)
    st.billed(1, before)
    st.wait_drained()
    (start,) = st.calls("StartTransaction", after)
    assert start.payload["idTag"] == "REMOTE3" and start.payload["connectorId"] == 1


def test_unlock_connector_ends_the_transaction(st: Station) -> None:
    after = st.csms.next_seq()
    before = len(st.sessions(1))
    assert st.call_action("UnlockConnector", {"connectorId": 1}).payload == {"status": "Unlocked"}  # nothing held
    st.charge(1, TOKEN_1)
    eventually(lambda: st.answered("StartTransaction", after), "the StartTransaction delivered")
    assert st.call_action("UnlockConnector", {"connectorId": 1}).payload == {"status": "Unlocked"}
    finished = st.wait(1, lambda s: s["state"] == "Finished")
    assert not finished["relays_closed"]
    assert st.billed(1, before)["stop_reason"] == "UnlockCommand"
    st.wait_drained()
    assert [f.payload["reason"] for f in st.calls("StopTransaction", after)] == ["UnlockCommand"]
    st.idle(1)


def test_unlock_connector_ends_a_session_waiting_for_authorization(st: Station) -> None:
    """The plug is locked in B while the car waits (lock_connector_in_state_b): the EVSE manager's
    UnlockConnectorNow ends the waiting session, Finished (unlocked) until unplug, no transaction."""
    after = st.csms.next_seq()
    before = len(st.sessions(2))
    st.api("connector.plug", connector=2, script=CHARGE)
    st.wait(2, lambda s: s["state"] == "WaitingForAuthentication")
    assert st.call_action("UnlockConnector", {"connectorId": 2}).payload == {"status": "Unlocked"}
    finished = st.wait(2, lambda s: s["state"] == "Finished")
    assert finished["session_id"] is not None and not finished["relays_closed"]
    st.idle(2)
    assert len(st.sessions(2)) == before  # no transaction, nothing billed
    assert st.calls("StartTransaction", after) == []
    # the same through the control API; with a transaction it is refused
    st.api("connector.plug", connector=2, script=CHARGE)
    st.wait(2, lambda s: s["state"] == "WaitingForAuthentication")
    assert st.api("connector.unlock", connector=2) == {"ok": True}
    st.wait(2, lambda s: s["state"] == "Finished")
    st.idle(2)
    st.charge(2, TOKEN_1)
    with pytest.raises(ApiError, match="stop it first"):
        st.api("connector.unlock", connector=2)
    assert st.connector(2)["state"] == "Charging"
    st.idle(2)
    assert st.billed(2, before)["stop_reason"] == "EVDisconnected"  # billed before the next test counts


def test_an_invalid_id_tag_in_start_transaction_conf_stops_the_transaction(st: Station) -> None:
    after = st.csms.next_seq()
    before = len(st.sessions(2))
    st.api("connector.plug", connector=2, script=CHARGE)
    st.wait(2, lambda s: s["state"] == "WaitingForAuthentication")
    st.api("rfid.present", token=TOKEN_2, connector=2)  # auth's allow list takes it; the CSMS says Invalid
    st.wait(2, lambda s: s["state"] == "Finished", timeout=30)
    assert st.billed(2, before)["stop_reason"] == "DeAuthorized"
    st.wait_drained()
    assert [f.payload["reason"] for f in st.calls("StopTransaction", after)] == ["DeAuthorized"]
    st.idle(2)


def test_authorize_remote_tx_requests_asks_the_csms_first(st: Station) -> None:
    assert st.call_action("ChangeConfiguration", {"key": "AuthorizeRemoteTxRequests", "value": "true"}).payload == (
        ACCEPTED
    )
    try:
        after = st.csms.next_seq()
        st.api("connector.plug", connector=2, script=CHARGE)
        st.wait(2, lambda s: s["state"] == "WaitingForAuthentication")
        assert st.call_action("RemoteStartTransaction", {"idTag": "BLOCKED9", "connectorId": 2}).payload == ACCEPTED
        st.wait_call("Authorize", after, where=lambda f: f.payload == {"idTag": "BLOCKED9"})
        assert st.connector(2)["state"] == "WaitingForAuthentication"  # Blocked: not started
        before = len(st.sessions(2))
        assert st.call_action("RemoteStartTransaction", {"idTag": "REMOTE5", "connectorId": 2}).payload == ACCEPTED
        st.wait(2, lambda s: s["state"] == "Charging" and s["token_id"] == "REMOTE5")
        assert [f.payload["idTag"] for f in st.calls("Authorize", after)] == ["BLOCKED9", "REMOTE5"]
        st.idle(2)
        st.billed(2, before)
    finally:
        st.call_action("ChangeConfiguration", {"key": "AuthorizeRemoteTxRequests", "value": "false"})


def test_soft_reset_stops_the_transaction_and_boots_again(st: Station) -> None:
    after = st.csms.next_seq()
    before = len(st.sessions(1))
    pid = st.system.pid_of("backend")
    st.charge(1, TOKEN_1)
    eventually(lambda: st.answered("StartTransaction", after), "the StartTransaction delivered")
    assert st.call_action("Reset", {"type": "Soft"}).payload == ACCEPTED
    assert st.billed(1, before)["stop_reason"] == "SoftReset"
    boot = st.wait_call("BootNotification", after)
    eventually(lambda: st.system.status().actors.get("backend") not in (None, pid), "the backend link restarting")
    st.wait_drained()
    stops = st.calls("StopTransaction", after)
    assert [f.payload["reason"] for f in stops] == ["SoftReset"] and stops[0].seq < boot.seq
    st.idle(1)
    assert st.call_action("Reset", {"type": "Hard"}).payload == ACCEPTED  # no transaction: straight to the reboot
    st.wait_call("BootNotification", boot.seq + 1)
    st.wait_drained()


def test_clock_aligned_and_triggered_meter_values(st: Station) -> None:
    aligned = {
        "ClockAlignedDataInterval": "1",
        "MeterValuesAlignedData": "Energy.Active.Import.Register,Voltage",
        "StopTxnAlignedData": "Power.Active.Import",
    }
    for key, value in aligned.items():
        assert st.call_action("ChangeConfiguration", {"key": key, "value": value}).payload == ACCEPTED
    try:
        after = st.csms.next_seq()
        before = len(st.sessions(1))
        st.charge(1, TOKEN_1)
        eventually(lambda: st.answered("StartTransaction", after), "the StartTransaction delivered")
        transaction_id = transaction_id_of(st, after)
        since = st.csms.next_seq()

        def clock_values(connector: int) -> list[dict[str, Any]]:
            return [
                f.payload
                for f in st.answered("MeterValues", since)
                if f.payload["connectorId"] == connector
                and f.payload["meterValue"][0]["sampledValue"][0]["context"] == "Sample.Clock"
            ]

        eventually(lambda: len(clock_values(1)) >= 2 and len(clock_values(2)) >= 2, "clock-aligned values")
        assert all(p.get("transactionId") == transaction_id for p in clock_values(1))  # in the transaction
        assert all("transactionId" not in p for p in clock_values(2))  # idle: outside any transaction
        idle = clock_values(2)[-1]["meterValue"][0]
        assert idle["timestamp"].endswith(".000Z")  # stamped with the aligned instant
        measured = {(v["measurand"], v.get("phase")) for v in idle["sampledValue"]}
        assert measured == {
            ("Energy.Active.Import.Register", None),
            ("Voltage", "L1-N"),
            ("Voltage", "L2-N"),
            ("Voltage", "L3-N"),
        }
        trigger_after = st.csms.next_seq()
        assert st.call_action("TriggerMessage", {"requestedMessage": "MeterValues", "connectorId": 1}).payload == (
            ACCEPTED
        )
        triggered = st.wait_call(
            "MeterValues",
            trigger_after,
            where=lambda f: f.payload["meterValue"][0]["sampledValue"][0]["context"] == "Trigger",
        )
        assert triggered.payload["connectorId"] == 1 and triggered.payload["transactionId"] == transaction_id
        st.idle(1)
        st.billed(1, before)
        st.wait_drained()
        (stop,) = st.calls("StopTransaction", after)
        kept = [(v["timestamp"], s) for v in stop.payload["transactionData"] for s in v["sampledValue"]]
        clock = [(stamp, s) for stamp, s in kept if s["context"] == "Sample.Clock"]
        assert len(clock) >= 2 and all(stamp.endswith(".000Z") for stamp, _ in clock)
        assert {s["measurand"] for _, s in clock} == {"Power.Active.Import"}
        assert {s["measurand"] for _, s in kept if s["context"] == "Sample.Periodic"} <= {
            "Energy.Active.Import.Register"  # StopTxnSampledData of the module's keys
        }
    finally:
        st.call_action("ChangeConfiguration", {"key": "ClockAlignedDataInterval", "value": "0"})
        st.call_action("ChangeConfiguration", {"key": "StopTxnAlignedData", "value": ""})
    st.wait_drained()


def test_change_availability_is_scheduled_behind_a_running_transaction(st: Station) -> None:
    after = st.csms.next_seq()
    assert st.call_action("ChangeAvailability", {"connectorId": 2, "type": "Inoperative"}).payload == ACCEPTED
    st.wait(2, lambda s: s["state"] == "Disabled")
    before = len(st.sessions(1))
    st.charge(1, TOKEN_1)
    assert st.call_action("ChangeAvailability", {"connectorId": 1, "type": "Inoperative"}).payload == {
        "status": "Scheduled"
    }
    assert st.connector(1)["state"] == "Charging"  # the transaction goes on
    st.api("connector.unplug", connector=1)
    assert st.billed(1, before)["stop_reason"] == "EVDisconnected"  # not stopped by the change
    st.wait(1, lambda s: s["state"] == "Disabled")
    eventually(lambda: statuses(st, 1, after)[-1:] == ["Unavailable"], "connector 1 reported Unavailable")
    assert statuses(st, 2, after)[-1] == "Unavailable"
    assert st.call_action("ChangeAvailability", {"connectorId": 0, "type": "Operative"}).payload == ACCEPTED
    for n in (1, 2):
        st.wait(n, lambda s: s["state"] == "Idle")
    eventually(lambda: statuses(st, 1, after)[-1:] == ["Available"], "connector 1 back")
    st.wait_drained()
