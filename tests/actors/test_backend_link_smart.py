"""BackendLink's Smart Charging with a real SIL station (EVSE managers taking leases), against both CSMS
peers: profiles become each connector's lease (TxDefaultProfile, a lower ChargePointMaxProfile, a
TxProfile of a running transaction, RemoteStartTransaction's profile), a schedule's period boundary moves
the limit, ClearChargingProfile releases the lease, GetCompositeSchedule, and the profiles surviving a
SIGKILL of the link.
"""

from __future__ import annotations

import json
import textwrap
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import connect

from charger.processes import kill_all, token_processes, wait_until_gone
from charger.testing import free_port
from tests.actors.test_backend_link_harness import (
    CHARGE,
    CP_ID,
    SIL_STATION,
    TOKEN_1,
    TOKEN_2,
    Station,
    backend_config,
    csms_on,
    eventually,
    station,
)
from tests.actors.test_backend_link_offline import _boot as boot_box
from tests.actors.test_backend_link_offline import _stop as stop_box
from tests.support.csms import PEER_KINDS

GRANTOR = "backend"
ACCEPTED = {"status": "Accepted"}
REJECTED = {"status": "Rejected"}
UNKNOWN = {"status": "Unknown"}
LEASE_S = 4.0


@pytest.fixture(scope="module", params=PEER_KINDS)
def st(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Station]:
    directory = tmp_path_factory.mktemp(f"smart-{request.param}")
    # short leases: every test also sees them renewed
    with station(directory, request.param, smart_charging={"lease_s": LEASE_S}) as running:
        eventually(lambda: running.link().registration == "Accepted", "the boot")
        yield running
        assert running.csms.invalid_inbound() == []


@pytest.fixture(autouse=True)
def no_profiles_left(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "st" not in request.fixturenames:
        return
    st: Station = request.getfixturevalue("st")
    st.call_action("ClearChargingProfile", {})  # every test starts without profiles
    for n in (1, 2):
        st.wait(n, lambda s: GRANTOR not in s["leases"])


def stamp(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


def profile(
    profile_id: int,
    purpose: str,
    periods: list[tuple[int, float]],
    *,
    stack: int = 0,
    unit: str = "A",
    kind: str = "Absolute",
    start: datetime | None = None,
    **extra: Any,
) -> dict[str, Any]:
    schedule: dict[str, Any] = {
        "chargingRateUnit": unit,
        "chargingSchedulePeriod": [{"startPeriod": s, "limit": limit} for s, limit in periods],
    }
    if kind != "Relative":
        schedule["startSchedule"] = stamp(start or datetime.now(UTC) - timedelta(minutes=1))
    return {
        "chargingProfileId": profile_id,
        "stackLevel": stack,
        "chargingProfilePurpose": purpose,
        "chargingProfileKind": kind,
        "chargingSchedule": schedule,
        **extra,
    }


def set_profile(st: Station, connector: int, body: dict[str, Any]) -> dict[str, Any]:
    answer = st.call_action("SetChargingProfile", {"connectorId": connector, "csChargingProfiles": body})
    assert answer.ok, answer
    return dict(answer.payload)


def limited(st: Station, n: int, amps: float) -> dict[str, Any]:
    return st.wait(n, lambda s: s["leases"].get(GRANTOR) == pytest.approx(amps) and s["current_limit_a"] == amps)


def test_tx_default_limits_every_connector_a_lower_station_max_wins_and_clearing_releases(st: Station) -> None:
    baseline = st.connector(1)["current_limit_a"]
    assert GRANTOR not in st.connector(1)["leases"]
    assert set_profile(st, 0, profile(1, "TxDefaultProfile", [(0, 10)])) == ACCEPTED
    for n in (1, 2):
        limited(st, n, 10)
    assert set_profile(st, 0, profile(2, "ChargePointMaxProfile", [(0, 8)])) == ACCEPTED
    limited(st, 1, 8)
    assert set_profile(st, 0, profile(3, "ChargePointMaxProfile", [(0, 20)], stack=1)) == ACCEPTED
    limited(st, 2, 10)  # the higher stack level prevails, and the TxDefaultProfile is lower than it
    assert st.call_action("ClearChargingProfile", {"chargingProfilePurpose": "ChargePointMaxProfile"}).payload == (
        ACCEPTED
    )
    limited(st, 1, 10)
    assert st.call_action("ClearChargingProfile", {"id": 1}).payload == ACCEPTED
    for n in (1, 2):
        status = st.wait(n, lambda s: GRANTOR not in s["leases"])
        assert status["current_limit_a"] == baseline
    assert st.call_action("ClearChargingProfile", {"id": 1}).payload == UNKNOWN
    assert st.call_action("ClearChargingProfile", {"connectorId": 2, "stackLevel": 3}).payload == UNKNOWN


def test_the_limit_moves_at_a_period_boundary_and_the_composite_schedule_shows_it(st: Station) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    run = now - timedelta(seconds=2)  # today's run of a daily schedule that began yesterday
    boundary = run + timedelta(seconds=12)
    body = profile(
        5, "TxDefaultProfile", [(0, 12), (12, 7)], kind="Recurring", recurrencyKind="Daily", start=run - timedelta(1)
    )
    assert set_profile(st, 1, body) == ACCEPTED
    seen_before = limited(st, 1, 12)
    assert time.time() < boundary.timestamp(), "the station was too slow to see the first period"
    assert seen_before["leases"][GRANTOR] == 12
    answer = st.call_action("GetCompositeSchedule", {"connectorId": 1, "duration": 60})
    assert answer.ok and answer.payload["status"] == "Accepted", answer
    start = datetime.fromisoformat(answer.payload["scheduleStart"].replace("Z", "+00:00"))
    periods = answer.payload["chargingSchedule"]["chargingSchedulePeriod"]
    assert [p["limit"] for p in periods] == [12, 7]
    assert start + timedelta(seconds=periods[1]["startPeriod"]) == boundary
    assert answer.payload["chargingSchedule"]["chargingRateUnit"] == "A"
    limited(st, 1, 7)
    assert time.time() >= boundary.timestamp()
    assert GRANTOR not in st.connector(2)["leases"]  # set on connector 1 only

    watts = st.call_action("GetCompositeSchedule", {"connectorId": 1, "duration": 30, "chargingRateUnit": "W"})
    assert watts.payload["chargingSchedule"]["chargingRateUnit"] == "W"
    assert watts.payload["chargingSchedule"]["chargingSchedulePeriod"][0]["limit"] == pytest.approx(7 * 230 * 3)
    assert st.call_action("GetCompositeSchedule", {"connectorId": 3, "duration": 60}).payload == REJECTED


def test_a_lease_is_renewed_before_it_lapses(st: Station) -> None:
    assert set_profile(st, 0, profile(4, "TxDefaultProfile", [(0, 14)])) == ACCEPTED
    first = limited(st, 1, 14)["lease_until"]
    renewed = st.wait(1, lambda s: s["lease_until"] > first + LEASE_S, timeout=60)  # two renewals later
    assert renewed["leases"][GRANTOR] == 14 and renewed["current_limit_a"] == 14


def test_a_power_profile_is_granted_in_watts(st: Station) -> None:
    assert set_profile(st, 2, profile(6, "TxDefaultProfile", [(0, 11000)], unit="W")) == ACCEPTED
    status = st.wait(2, lambda s: GRANTOR in s["leases"])
    assert status["leases"][GRANTOR] == pytest.approx(11000 / (230 * 3))  # converted by the EVSE manager


def test_invalid_profiles_are_rejected(st: Station) -> None:
    assert set_profile(st, 1, profile(7, "TxProfile", [(0, 10)])) == REJECTED  # no transaction on connector 1
    assert set_profile(st, 1, profile(8, "ChargePointMaxProfile", [(0, 10)])) == REJECTED  # connector 0 only
    assert set_profile(st, 0, profile(9, "TxDefaultProfile", [(0, 10)], stack=99)) == REJECTED  # stack level
    assert set_profile(st, 3, profile(10, "TxDefaultProfile", [(0, 10)])) == REJECTED  # no connector 3
    assert set_profile(st, 0, profile(11, "TxDefaultProfile", [(5, 10)])) == REJECTED  # first period not at 0
    assert st.call_action("ClearChargingProfile", {}).payload == UNKNOWN  # nothing was installed


def test_a_tx_profile_limits_its_transaction_and_ends_with_it(st: Station) -> None:
    assert set_profile(st, 0, profile(20, "TxDefaultProfile", [(0, 16)])) == ACCEPTED
    st.charge(1, TOKEN_1)
    limited(st, 1, 16)
    assert set_profile(st, 1, profile(21, "TxProfile", [(0, 9)], kind="Relative")) == ACCEPTED
    limited(st, 1, 9)
    limited(st, 2, 16)
    st.idle(1)
    limited(st, 1, 16)  # back to the default: the TxProfile went with its transaction
    assert st.call_action("ClearChargingProfile", {"id": 21}).payload == UNKNOWN


def test_two_cars_share_the_charge_point_maximum_and_one_leaving_frees_it(st: Station) -> None:
    assert set_profile(st, 0, profile(25, "ChargePointMaxProfile", [(0, 20)])) == ACCEPTED
    for n in (1, 2):
        limited(st, n, 20)  # no transaction: nothing flows, each may be offered all of it
    st.charge(1, TOKEN_1)
    st.wait(2, lambda s: s["current_limit_a"] == 0)  # connector 1 takes it all: nothing left
    limited(st, 1, 20)
    st.api("connector.plug", connector=2, script=CHARGE)
    st.wait(2, lambda s: s["state"] == "WaitingForAuthentication")
    st.api("rfid.present", token=TOKEN_2, connector=2)
    for n in (1, 2):
        st.wait(n, lambda s: s["current_limit_a"] == 10 and s["state"] == "Charging")
    seen = [st.connector(n)["current_limit_a"] for n in (1, 2)]
    assert sum(seen) <= 20, seen
    answer = st.call_action("GetCompositeSchedule", {"connectorId": 2, "duration": 60})
    assert [p["limit"] for p in answer.payload["chargingSchedule"]["chargingSchedulePeriod"]] == [10]
    whole = st.call_action("GetCompositeSchedule", {"connectorId": 0, "duration": 60})
    assert [p["limit"] for p in whole.payload["chargingSchedule"]["chargingSchedulePeriod"]] == [20]
    st.idle(1)
    limited(st, 2, 20)  # the car that stays gets all of it
    assert st.connector(1)["current_limit_a"] == 0
    st.idle(2)
    for n in (1, 2):
        limited(st, n, 20)


def test_remote_start_with_a_charging_profile(st: Station) -> None:
    st.api("connector.plug", connector=2, script="iec_wait_pwr_ready;draw_power_regulated 16,3")
    st.wait(2, lambda s: s["state"] == "WaitingForAuthentication")
    wrong = {"idTag": "REMOTE7", "connectorId": 2, "chargingProfile": profile(30, "TxDefaultProfile", [(0, 11)])}
    assert st.call_action("RemoteStartTransaction", wrong).payload == REJECTED  # must be a TxProfile
    body = profile(31, "TxProfile", [(0, 11)], kind="Relative")
    request = {"idTag": "REMOTE7", "connectorId": 2, "chargingProfile": body}
    assert st.call_action("RemoteStartTransaction", request).payload == ACCEPTED
    st.wait(2, lambda s: s["state"] == "Charging")
    limited(st, 2, 11)
    st.idle(2)
    st.wait(2, lambda s: GRANTOR not in s["leases"])
    assert st.call_action("ClearChargingProfile", {"id": 31}).payload == UNKNOWN


def test_profiles_and_leases_survive_a_kill_of_the_link(st: Station) -> None:
    assert set_profile(st, 0, profile(40, "TxDefaultProfile", [(0, 13)])) == ACCEPTED
    before = limited(st, 1, 13)["lease_until"]
    st.kill_backend()
    st.link_when(lambda s: s.registration == "Accepted" and s.online, "the link back")
    st.wait(1, lambda s: s["lease_until"] > before and s["leases"].get(GRANTOR) == 13)  # renewed by the new link
    answer = st.call_action("GetCompositeSchedule", {"connectorId": 2, "duration": 10})
    assert [p["limit"] for p in answer.payload["chargingSchedule"]["chargingSchedulePeriod"]] == [13]
    assert set_profile(st, 0, profile(41, "TxDefaultProfile", [(0, 12)], stack=1)) == ACCEPTED
    limited(st, 2, 12)  # the new incarnation's leases are taken: its fence is higher
    assert st.call_action("ClearChargingProfile", {"chargingProfilePurpose": "TxDefaultProfile"}).payload == ACCEPTED
    st.wait(1, lambda s: GRANTOR not in s["leases"])


def test_smart_charging_is_announced_with_its_keys(st: Station) -> None:
    answer = st.call_action("GetConfiguration", {"key": ["SupportedFeatureProfiles", "ChargeProfileMaxStackLevel"]})
    keys = {kv["key"]: kv["value"] for kv in answer.payload["configurationKey"]}
    assert "SmartCharging" in keys["SupportedFeatureProfiles"].split(",")
    assert keys["ChargeProfileMaxStackLevel"] == "10"


def test_profiles_survive_a_kill_of_the_whole_box(tmp_path: Path) -> None:
    """SIGKILL every process of the station, boot it again on the same state directory: the profile is
    still installed and the new link grants its lease again."""
    port = free_port()
    config = backend_config(f"ws://127.0.0.1:{port}", smart_charging={"lease_s": LEASE_S})
    site = tmp_path / "station.yaml"
    text = textwrap.dedent(SIL_STATION).format(
        admin=free_port(),
        modbus1=free_port(),
        modbus2=free_port(),
        token1=TOKEN_1,
        token2=TOKEN_2,
        backend=json.dumps(config),
        auth_backend="",
    )
    site.write_text(text)
    state = tmp_path / "state"
    first = boot_box(tmp_path / "first.out", site, state)
    try:
        with csms_on("sim", port, tmp_path) as csms:
            eventually((state / "api.port").exists, "the first boot", 60)
            with connect(f"ws://127.0.0.1:{(state / 'api.port').read_text()}") as ws:
                st = Station(None, csms, state, ws)  # type: ignore[arg-type]
                eventually(lambda: csms.frames(CP_ID), "the link connecting", 60)
                st.wait(1, lambda s: s["state"] == "Idle" and not s["faults"])
                body = profile(50, "TxDefaultProfile", [(0, 10)])
                eventually(lambda: set_profile(st, 0, body) == ACCEPTED, "the profile installed", 30)
                before = limited(st, 1, 10)["lease_until"]
            kill_all(token_processes(first[1]))  # the whole box loses power
            first[0].wait(10)
            assert wait_until_gone(lambda: token_processes(first[1])) == []
            (state / "api.port").unlink()
            second = boot_box(tmp_path / "second.out", site, state)
            try:
                eventually((state / "api.port").exists, "the second boot", 60)
                with connect(f"ws://127.0.0.1:{(state / 'api.port').read_text()}") as ws:
                    st = Station(None, csms, state, ws)  # type: ignore[arg-type]
                    for n in (1, 2):
                        st.wait(n, lambda s: s["lease_until"] and s["lease_until"] > before + LEASE_S, timeout=60)
                        limited(st, n, 10)
            finally:
                stop_box(second)
    finally:
        stop_box(first)
