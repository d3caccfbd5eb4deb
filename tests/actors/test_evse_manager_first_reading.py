"""A (re)started EVSE manager reads its meter at once, not at the meter's next poll.

The meter here polls once an hour, so every reading the EVSE manager has after its start must come
from asking: without it, a fresh manager would hold METER_OFFLINE (no start value, no charging), and a
restarted one could not report the power of the session it resumed.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from charger.chaos.cases import CAR_SCRIPT, to_idle, wait_for
from charger.chaos.station import Station

SITE = Path(__file__).resolve().parents[2] / "topology" / "site.yaml"


@pytest.fixture(scope="module")
def station(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Station]:
    work = tmp_path_factory.mktemp("first-reading")
    doc = yaml.safe_load(SITE.read_text())
    doc["actors"]["meter-1"]["config"]["poll_s"] = 3600
    topology = work / "site-slow-meter.yaml"
    topology.write_text(yaml.safe_dump(doc, sort_keys=False))
    st = Station(topology, work)
    try:
        st.boot()
        yield st
    finally:
        st.stop()
    assert st.titles() == {}


def _charging(st: Station) -> dict[str, Any] | None:
    status = st.connector()
    return status if status and status["state"] == "Charging" and status["relays_closed"] else None


def test_a_restarted_evse_manager_reports_the_power_of_the_session_it_resumed(station: Station) -> None:
    st = station
    to_idle(st)
    st.call("connector.plug", connector=st.layout.evse, script=CAR_SCRIPT)
    wait_for("the car", lambda: (st.connector() or {}).get("state") == "WaitingForAuthentication", 30)
    st.call("rfid.present", token=st.layout.token, connector=st.layout.evse)
    # a start value came from asking the meter at start-up (its one poll may have come before anyone listened)
    charging = wait_for("charging", lambda: _charging(st), 30)
    assert charging["power_w"] == 0  # read when no car was there, and not polled since
    wait_for("the car to draw", lambda: st.rig()["draw_current_a"] > 0 and st.rig()["meter_energy_wh"] >= 1, 30)
    pid = st.pid_of(st.layout.evse)
    os.kill(pid, signal.SIGKILL)
    st.pid_of(st.layout.evse, timeout=20, not_pid=pid)

    def resumed_with_power() -> dict[str, Any] | None:
        status = st.connector()
        if status is None or status["session_id"] != charging["session_id"] or status["state"] != "Charging":
            return None
        return status if (status["power_w"] or 0) > 0 else None

    status = wait_for("the resumed session's power", resumed_with_power, 30)
    assert status["relays_closed"] and not status["faults"]
    st.call("connector.unplug", connector=st.layout.evse)
    wait_for("idle", lambda: (st.connector() or {}).get("state") == "Idle", 30)
