"""BackendLink boot rules (OCPP 1.6 §4.2) against both CSMS peers: Accepted, Pending and Rejected, the
heartbeat, and a plain reconnect that does not boot again. Two fake EVSE managers stand in for the
connectors: nothing here needs a car.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from charger.sim.csms import CALL, Direction, EventKind

from tests.actors.test_backend_link_harness import CP_ID, eventually, station
from tests.support.csms import PEER_KINDS, CsmsPeer, PeerOptions


def cp_calls(csms: CsmsPeer, after: int = 0) -> list[str | None]:
    """The actions of every CALL the CSMS received from CP1, in order."""
    frames = csms.frames(CP_ID)
    return [f.action for f in frames if f.seq >= after and f.direction is Direction.RECEIVED and f.message_type == CALL]


@pytest.mark.parametrize("peer", PEER_KINDS)
def test_accepted_boot_then_every_status_then_heartbeats(tmp_path: Path, peer: str) -> None:
    options = PeerOptions(boot_interval=1)  # the CSMS sets the heartbeat interval
    with station(tmp_path, peer, options=options, light=True) as st:
        csms = st.csms
        boot = st.wait_call("BootNotification")
        assert boot.payload == {"chargePointVendor": "charger", "chargePointModel": "charger-ac"}
        eventually(lambda: cp_calls(csms).count("Heartbeat") >= 2, "two heartbeats")
        actions = cp_calls(csms)
        assert actions[0] == "BootNotification" and actions.count("BootNotification") == 1
        statuses = [f.payload for f in st.calls("StatusNotification")]
        assert {(s["connectorId"], s["status"]) for s in statuses} >= {(0, "Available"), (1, "Available")}
        assert st.call_action("GetConfiguration", {"key": ["HeartbeatInterval"]}).payload["configurationKey"] == [
            {"key": "HeartbeatInterval", "readonly": False, "value": "1"}
        ]
        assert csms.invalid_inbound() == []


@pytest.mark.parametrize("peer", PEER_KINDS)
def test_pending_sends_nothing_but_boot_answers_the_csms_and_boots_again(tmp_path: Path, peer: str) -> None:
    options = PeerOptions(boot_status="Pending", boot_interval=1)
    with station(tmp_path, peer, options=options, light=True) as st:
        csms = st.csms
        eventually(lambda: cp_calls(csms).count("BootNotification") >= 2, "a second boot after the interval")
        # While Pending the CSMS may configure the station (OCPP 1.6 §4.2.1).
        answer = st.call_action("ChangeConfiguration", {"key": "MeterValueSampleInterval", "value": "7"})
        assert answer.ok and answer.payload == {"status": "Accepted"}
        assert set(cp_calls(csms)) == {"BootNotification"}
        csms.set_behaviour(boot_status="Accepted", boot_interval=300)
        eventually(lambda: "StatusNotification" in cp_calls(csms), "statuses once accepted")
        actions = cp_calls(csms)
        first_status = actions.index("StatusNotification")
        assert set(actions[:first_status]) == {"BootNotification"}
        assert st.link().registration == "Accepted"
        assert csms.invalid_inbound() == []


@pytest.mark.parametrize("peer", PEER_KINDS)
def test_rejected_is_silent_until_the_interval_has_passed(tmp_path: Path, peer: str) -> None:
    options = PeerOptions(boot_status="Rejected", boot_interval=2)
    with station(tmp_path, peer, options=options, light=True) as st:
        csms = st.csms
        eventually(lambda: cp_calls(csms).count("BootNotification") >= 3, "boots after each interval")
        boots = list(st.calls("BootNotification"))
        assert all(later.at - earlier.at >= 1.9 for earlier, later in itertools.pairwise(boots)), [b.at for b in boots]
        assert set(cp_calls(csms)) == {"BootNotification"}
        assert st.link().registration == "Rejected"
        csms.set_behaviour(boot_status="Accepted")
        eventually(lambda: st.link().registration == "Accepted", "acceptance")
        eventually(lambda: "StatusNotification" in cp_calls(csms), "statuses once accepted")


def test_a_plain_reconnect_does_not_boot_again(tmp_path: Path) -> None:
    with station(tmp_path, light=True) as st:
        csms = st.csms
        st.wait_call("BootNotification")
        eventually(lambda: st.link().registration == "Accepted", "acceptance")
        after = csms.next_seq()
        csms.go_offline(duration=1.0)  # type: ignore[attr-defined]
        eventually(lambda: st.link().connections == 2 and st.link().online, "the reconnect")
        eventually(lambda: len(st.calls("StatusNotification", after)) >= 3, "statuses again after the reconnect")
        assert "BootNotification" not in cp_calls(csms, after)


def test_an_orderly_stop_closes_the_connection_as_going_away(tmp_path: Path) -> None:
    with station(tmp_path, light=True) as st:
        csms = st.csms
        eventually(lambda: st.link().registration == "Accepted", "acceptance")
        st.system.shutdown()  # terminate() of every actor, the backend link first
        close = csms.wait_for_event(EventKind.CLOSE, where=lambda e: e.cp_id == CP_ID)
        assert close.fields["code"] == 1001  # "going away", sent by the link: not a dropped TCP connection
        assert [e.cp_id for e in csms.events(EventKind.OPEN)] == [CP_ID]
