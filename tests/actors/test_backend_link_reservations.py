"""OCPP 1.6 reservations end to end, on the real SIL station (boards on ptys, Modbus meters, EVSE
managers, Auth asking the backend link), against both CSMS peers: ReserveNow and its answers, the
reserved card starting (its StartTransaction carries the reservationId) while any other card is
refused, parent idTags from the local list, expiry and cancellation (Reserved -> Available at the
CSMS), connector 0 keeping the last free connector, and a reservation outliving a SIGKILL of the link
and of the whole process tree.
"""

from __future__ import annotations

import json
import textwrap
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from charger.actors.charging import AuthorizeSession
from websockets.sync.client import connect

from charger.errors import CallError
from charger.processes import kill_all, token_processes, wait_until_gone
from charger.testing import free_port
from tests.actors.test_backend_link_harness import (
    CHARGE,
    SIL_STATION,
    TOKEN_1,
    TOKEN_2,
    Station,
    backend_config,
    csms_on,
    eventually,
    station,
)
from tests.actors.test_backend_link_offline import _boot, _stop
from tests.support.csms import PEER_KINDS

WRONG = "WRONGCARD1"
MEMBER, FLEET = "MEMBER01", "FLEET01"
KEYS = {"LocalPreAuthorize": "true"}  # a listed idTag is decided from the local list, with its parent


@pytest.fixture(scope="module", params=PEER_KINDS)
def st(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Station]:
    directory = tmp_path_factory.mktemp(f"reservations-{request.param}")
    with station(directory, request.param, auth_asks_backend=True, configuration=KEYS) as running:
        eventually(lambda: running.link().registration == "Accepted", "the boot")
        yield running
        assert running.csms.invalid_inbound() == []


def expiry(seconds: float) -> str:
    return datetime.fromtimestamp(time.time() + seconds, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def reserve(st: Station, reservation_id: int, connector: int, id_tag: str = TOKEN_1, **extra: Any) -> str:
    payload = {
        "connectorId": connector,
        "expiryDate": expiry(extra.pop("for_s", 600)),
        "idTag": id_tag,
        "reservationId": reservation_id,
        **extra,
    }
    answer = st.call_action("ReserveNow", payload)
    assert answer.ok, answer
    status: str = answer.payload["status"]
    return status


def cancel(st: Station, reservation_id: int) -> str:
    answer = st.call_action("CancelReservation", {"reservationId": reservation_id})
    assert answer.ok, answer
    status: str = answer.payload["status"]
    return status


def statuses(st: Station, connector: int, after: int) -> list[str]:
    return [f.payload["status"] for f in st.calls("StatusNotification", after) if f.payload["connectorId"] == connector]


def wait_status(st: Station, connector: int, wanted: str, after: int, timeout: float = 30.0) -> None:
    eventually(lambda: wanted in statuses(st, connector, after), f"StatusNotification {wanted} of {connector}", timeout)


def present(st: Station, connector: int, token: str) -> dict[str, Any]:
    verdict: dict[str, Any] = st.api("rfid.present", token=token, connector=connector)
    return verdict


def start_with(st: Station, connector: int, token: str, after: int) -> dict[str, Any]:
    """Plug in and present `token`: the transaction runs and its StartTransaction is delivered."""
    st.api("connector.plug", connector=connector, script=CHARGE)
    st.wait(connector, lambda s: s["state"] == "WaitingForAuthentication")
    assert present(st, connector, token)["status"] == "Accepted"
    st.wait(connector, lambda s: s["state"] == "Charging" and s["token_id"] == token)
    eventually(lambda: st.answered("StartTransaction", after), "the StartTransaction delivered")
    (start,) = st.calls("StartTransaction", after)
    payload: dict[str, Any] = start.payload
    return payload


def finish(st: Station, connector: int) -> None:
    before = len(st.sessions(connector))
    st.idle(connector)
    st.billed(connector, before)
    st.wait_drained()


def direct_authorize_refused(st: Station, connector: int, token: str) -> None:
    """The EVSE manager itself refuses: a card cannot get round the reservation by another path."""
    with pytest.raises(CallError, match="reserved"):
        st.system.client.call(f"evse-{connector}", AuthorizeSession(token_id=token), timeout=10.0)


def test_the_reserved_card_starts_and_ends_the_reservation_a_wrong_one_is_refused(st: Station) -> None:
    after = st.csms.next_seq()
    assert reserve(st, 11, 1) == "Accepted"
    wait_status(st, 1, "Reserved", after)
    assert st.connector(1)["reservations"][0]["reservation_id"] == 11
    st.api("connector.plug", connector=1, script=CHARGE)
    st.wait(1, lambda s: s["state"] == "WaitingForAuthentication")
    verdict = present(st, 1, WRONG)
    assert verdict["status"] == "NoConnector" and "reserved" in verdict["detail"], verdict
    direct_authorize_refused(st, 1, WRONG)
    assert st.call_action("RemoteStartTransaction", {"idTag": WRONG, "connectorId": 1}).payload == {
        "status": "Rejected"
    }
    assert st.connector(1)["state"] == "WaitingForAuthentication"
    assert present(st, 1, TOKEN_1)["status"] == "Accepted"
    st.wait(1, lambda s: s["state"] == "Charging" and s["token_id"] == TOKEN_1)
    eventually(lambda: st.answered("StartTransaction", after), "the StartTransaction delivered")
    (start,) = st.calls("StartTransaction", after)
    assert start.payload["reservationId"] == 11 and start.payload["idTag"] == TOKEN_1
    assert cancel(st, 11) == "Rejected"  # the transaction ended it
    finish(st, 1)
    seen = statuses(st, 1, after)
    assert seen[0] == "Reserved" and seen[-1] == "Available", seen
    assert st.connector(1)["reservations"] == []


def test_an_id_tag_of_the_reservations_group_may_use_it(st: Station) -> None:
    entry = {"idTag": MEMBER, "idTagInfo": {"status": "Accepted", "parentIdTag": FLEET}}
    sent = st.call_action("SendLocalList", {"listVersion": 5, "updateType": "Full", "localAuthorizationList": [entry]})
    assert sent.payload == {"status": "Accepted"}
    after = st.csms.next_seq()
    assert reserve(st, 12, 2, "FLEETBOSS", parentIdTag=FLEET) == "Accepted"
    wait_status(st, 2, "Reserved", after)
    start = start_with(st, 2, MEMBER, after)
    assert start["reservationId"] == 12 and start["idTag"] == MEMBER
    finish(st, 2)


def test_expiry_returns_the_connector_to_available(st: Station) -> None:
    after = st.csms.next_seq()
    assert reserve(st, 13, 1, for_s=4) == "Accepted"
    wait_status(st, 1, "Reserved", after)
    wait_status(st, 1, "Available", after, timeout=30)
    assert statuses(st, 1, after)[-2:] == ["Reserved", "Available"]
    assert cancel(st, 13) == "Rejected"  # expired: the station no longer holds it
    st.wait(1, lambda s: s["reservations"] == [])
    start = start_with(st, 1, WRONG, after)  # anyone may charge there again
    assert "reservationId" not in start
    finish(st, 1)


def test_cancel_frees_the_connector_and_an_unknown_id_is_rejected(st: Station) -> None:
    after = st.csms.next_seq()
    assert reserve(st, 14, 2) == "Accepted"
    wait_status(st, 2, "Reserved", after)
    assert cancel(st, 999) == "Rejected"
    assert cancel(st, 14) == "Accepted"
    wait_status(st, 2, "Available", after)
    assert statuses(st, 2, after)[-2:] == ["Reserved", "Available"]
    assert cancel(st, 14) == "Rejected"


def test_occupied_unavailable_and_faulted(st: Station) -> None:
    assert reserve(st, 15, 1) == "Accepted"
    assert reserve(st, 16, 1) == "Occupied"  # reserved already, for the same idTag
    assert reserve(st, 16, 1, WRONG) == "Occupied"
    assert reserve(st, 15, 1, WRONG) == "Accepted"  # the same id replaces it
    assert st.connector(1)["reservations"][0]["id_tag"] == WRONG
    assert cancel(st, 15) == "Accepted"
    st.api("connector.plug", connector=2, script=CHARGE)
    st.wait(2, lambda s: s["state"] == "WaitingForAuthentication")
    assert reserve(st, 17, 2) == "Occupied"  # a car is there
    st.idle(2)
    assert st.call_action("ChangeAvailability", {"connectorId": 2, "type": "Inoperative"}).payload == {
        "status": "Accepted"
    }
    assert reserve(st, 17, 2) == "Unavailable"
    assert st.call_action("ChangeAvailability", {"connectorId": 2, "type": "Operative"}).payload == {
        "status": "Accepted"
    }
    faulted_after = st.csms.next_seq()
    st.api("connector.fault", connector=2, fault="meter_offline")
    try:
        st.wait(2, lambda s: s["state"] == "Inoperative")
        # the link answers from the status it has heard: once it reported Faulted, a reservation is refused
        wait_status(st, 2, "Faulted", faulted_after)
        assert reserve(st, 17, 2) == "Faulted"
    finally:  # a fault left behind would fail every later test of this station
        st.api("connector.fault", connector=2, fault="meter_offline", active=False)
        st.wait(2, lambda s: s["state"] == "Idle" and not s["faults"])
    assert reserve(st, 99, 3) == "Rejected"  # no such connector
    assert reserve(st, 17, 2, for_s=-5) == "Rejected"  # already expired
    assert st.connector(2)["reservations"] == []


def test_a_remote_start_for_the_reserved_id_tag_uses_the_reservation(st: Station) -> None:
    after = st.csms.next_seq()
    assert reserve(st, 23, 2) == "Accepted"
    wait_status(st, 2, "Reserved", after)
    assert st.call_action("RemoteStartTransaction", {"idTag": WRONG}).payload == {"status": "Accepted"}
    assert st.connector(1)["token_id"] == WRONG  # the station chose the connector that is not reserved
    st.api("connector.plug", connector=1, script=CHARGE)
    st.wait(1, lambda s: s["state"] == "Charging")
    assert st.call_action("RemoteStartTransaction", {"idTag": TOKEN_1, "connectorId": 2}).payload == {
        "status": "Accepted"
    }
    st.api("connector.plug", connector=2, script=CHARGE)
    st.wait(2, lambda s: s["state"] == "Charging" and s["token_id"] == TOKEN_1)
    eventually(lambda: len(st.answered("StartTransaction", after)) == 2, "both StartTransactions delivered")
    starts = {f.payload["connectorId"]: f.payload for f in st.calls("StartTransaction", after)}
    assert "reservationId" not in starts[1] and starts[2]["reservationId"] == 23
    finish(st, 1)
    finish(st, 2)


def test_change_availability_ends_the_reservation(st: Station) -> None:
    after = st.csms.next_seq()
    assert reserve(st, 24, 2) == "Accepted"
    wait_status(st, 2, "Reserved", after)
    inoperative = {"connectorId": 2, "type": "Inoperative"}
    assert st.call_action("ChangeAvailability", inoperative).payload == {"status": "Accepted"}
    wait_status(st, 2, "Unavailable", after)
    st.wait(2, lambda s: s["reservations"] == [])
    assert cancel(st, 24) == "Rejected"
    operative = {"connectorId": 2, "type": "Operative"}
    assert st.call_action("ChangeAvailability", operative).payload == {"status": "Accepted"}
    st.wait(2, lambda s: s["state"] == "Idle")
    wait_status(st, 2, "Available", st.calls("StatusNotification", after)[-1].seq)


def test_connector_zero_keeps_the_last_free_connector(st: Station) -> None:
    after = st.csms.next_seq()
    assert reserve(st, 18, 0) == "Accepted"
    assert st.connector(1)["reservations"] == [] and st.connector(2)["reservations"] == []
    assert reserve(st, 19, 0, WRONG) == "Accepted"  # two connectors, two reservations on connector 0
    wait_status(st, 1, "Reserved", after)
    wait_status(st, 2, "Reserved", after)
    assert reserve(st, 20, 0, "THIRD01") == "Occupied"
    assert reserve(st, 20, 1, "THIRD01") == "Occupied"  # both are kept for the reservations on 0
    assert cancel(st, 19) == "Accepted"
    wait_status(st, 1, "Available", after)
    st.wait(2, lambda s: s["reservations"] == [])
    # one free connector may still go to anyone; the last one is then kept for TOKEN_1
    taken = st.csms.next_seq()
    other = start_with(st, 2, "OTHER002", after)
    assert "reservationId" not in other
    wait_status(st, 1, "Reserved", taken)
    st.api("connector.plug", connector=1, script=CHARGE)
    st.wait(1, lambda s: s["state"] == "WaitingForAuthentication")
    assert present(st, 1, WRONG)["status"] == "NoConnector"
    direct_authorize_refused(st, 1, WRONG)
    assert present(st, 1, TOKEN_1)["status"] == "Accepted"
    st.wait(1, lambda s: s["state"] == "Charging")
    eventually(lambda: len(st.answered("StartTransaction", after)) == 2, "the second StartTransaction")
    mine = next(f.payload for f in st.calls("StartTransaction", after) if f.payload["connectorId"] == 1)
    assert mine["reservationId"] == 18 and mine["idTag"] == TOKEN_1
    assert cancel(st, 18) == "Rejected"
    finish(st, 1)
    finish(st, 2)


def test_a_reservation_survives_a_sigkill_of_the_backend_link(st: Station) -> None:
    assert reserve(st, 21, 2) == "Accepted"
    st.wait(2, lambda s: [r["reservation_id"] for r in s["reservations"]] == [21])
    st.kill_backend()
    st.link_when(lambda s: s.online and s.registration == "Accepted", "the link back")
    assert reserve(st, 22, 2, WRONG) == "Occupied"  # the restarted link knows it
    direct_authorize_refused(st, 2, WRONG)
    after = st.csms.next_seq()
    start = start_with(st, 2, TOKEN_1, after)
    assert start["reservationId"] == 21
    finish(st, 2)


def test_reservation_is_announced(tmp_path: Path) -> None:
    with station(tmp_path, "sim", light=True, configuration={"ReserveConnectorZeroSupported": "false"}) as lt:
        eventually(lambda: lt.link().registration == "Accepted", "the boot")
        wanted = ["SupportedFeatureProfiles", "ReserveConnectorZeroSupported"]
        keys = lt.call_action("GetConfiguration", {"key": wanted})
        values = {kv["key"]: kv.get("value") for kv in keys.payload["configurationKey"]}
        assert "Reservation" in values["SupportedFeatureProfiles"].split(",")
        assert values["ReserveConnectorZeroSupported"] == "false"
        assert reserve(lt, 1, 0) == "Rejected"  # connector 0 is not supported here
        assert reserve(lt, 2, 1) == "Accepted"  # the fake connectors hold it
        bad = lt.call_action("ReserveNow", {"connectorId": 1, "expiryDate": "soon", "idTag": "X", "reservationId": 3})
        assert bad.error_code == "FormationViolation", bad


def test_a_reservation_survives_a_sigkill_of_the_whole_box(tmp_path: Path) -> None:
    """SIGKILL every process of the station while a connector is reserved, boot it again on the same
    state directory: the connector still refuses other cards, the CSMS is told Reserved again, and the
    link still holds the reservation."""
    port = free_port()
    site = tmp_path / "station.yaml"
    template = textwrap.dedent(SIL_STATION)
    site.write_text(
        template.format(
            admin=free_port(),
            modbus1=free_port(),
            modbus2=free_port(),
            token1=TOKEN_1,
            token2=TOKEN_2,
            backend=json.dumps(backend_config(f"ws://127.0.0.1:{port}")),
            auth_backend="",
        )
    )
    state = tmp_path / "state"
    first = _boot(tmp_path / "first.out", site, state)
    try:
        with csms_on("sim", port, tmp_path) as csms:
            eventually((state / "api.port").exists, "the first boot", 60)
            with connect(f"ws://127.0.0.1:{(state / 'api.port').read_text()}") as ws:
                st = Station(None, csms, state, ws)  # type: ignore[arg-type]
                st.wait(1, lambda s: s["state"] == "Idle" and not s["faults"])
                eventually(lambda: st.calls("BootNotification"), "the boot", 60)
                eventually(lambda: reserve(st, 31, 1) == "Accepted", "the reservation accepted", 30)
                st.wait(1, lambda s: [r["reservation_id"] for r in s["reservations"]] == [31])
            kill_all(token_processes(first[1]))  # the whole box loses power
            first[0].wait(10)
            assert wait_until_gone(lambda: token_processes(first[1])) == []
            (state / "api.port").unlink()
            after = csms.next_seq()
            second = _boot(tmp_path / "second.out", site, state)
            try:
                eventually((state / "api.port").exists, "the second boot", 60)
                with connect(f"ws://127.0.0.1:{(state / 'api.port').read_text()}") as ws:
                    st = Station(None, csms, state, ws)  # type: ignore[arg-type]
                    assert [r["reservation_id"] for r in st.connector(1)["reservations"]] == [31]
                    wait_status(st, 1, "Reserved", after, timeout=60)  # the link is back and accepted
                    st.wait(1, lambda s: s["state"] == "Idle" and not s["faults"])
                    verdict = present(st, 1, TOKEN_2)  # on the allow list, but not the reserved card
                    assert verdict["status"] == "NoConnector" and "reserved" in verdict["detail"], verdict
                    assert reserve(st, 32, 1, TOKEN_2) == "Occupied"
                    assert cancel(st, 31) == "Accepted"
                    st.wait(1, lambda s: s["reservations"] == [])
            finally:
                _stop(second)
    finally:
        _stop(first)
