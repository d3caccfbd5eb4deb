"""Nothing lost, nothing twice: BackendLink's persistent queue through a CSMS outage while charging, a
SIGKILL of the link itself, a SIGKILL of the whole process tree, and CALLERRORs (TransactionMessageAttempts
and TransactionMessageRetryInterval). Our simulator plays the CSMS (it can go offline); the CALLERROR
test runs against both peers.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path
from typing import Any, ClassVar

import pytest
from charger.actors.charging import GetSessionHistory, SessionCompleted, SessionHistory
from charger.sim.csms import CALLERROR, CALLRESULT, Direction, EventKind
from websockets.sync.client import connect

from charger.behaviour import handles
from charger.messages import message
from charger.processes import TOKEN_VARIABLE, kill_all, token_processes, wait_until_gone
from charger.testing import free_port
from tests.actors.test_backend_link_harness import (
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
from tests.support.csms import PEER_KINDS
from tests.support.fake_evse import FakeEvse, FakePlugIn

SAMPLING = {"MeterValueSampleInterval": "1", "MeterValuesSampledData": "Energy.Active.Import.Register"}


def transaction_messages(st: Station, after: int = 0) -> list[Any]:
    """The transaction-related CALLs the CSMS received, in order."""
    wanted = ("StartTransaction", "MeterValues", "StopTransaction")
    return [
        f
        for f in st.csms.frames(CP_ID)
        if f.seq >= after and f.direction is Direction.RECEIVED and f.action in wanted and f.message_type == 2
    ]


def answers(st: Station, frames: list[Any], kind: int) -> list[Any]:
    ids = {f.unique_id for f in frames}
    return [
        f
        for f in st.csms.frames(CP_ID)
        if f.direction is Direction.SENT and f.message_type == kind and f.unique_id in ids
    ]


def assert_delivered_once_in_order(st: Station, sessions: dict[int, dict[str, Any]]) -> None:
    """Every session's Start, samples and Stop were each answered exactly once, in the order they happened."""
    delivered = answers(st, transaction_messages(st), CALLRESULT)
    delivered_ids = [f.unique_id for f in delivered]
    calls = {f.unique_id: f for f in transaction_messages(st)}
    by_content: dict[str, int] = {}
    for unique_id in delivered_ids:
        frame = calls[unique_id]
        stamp = frame.payload.get("timestamp") or frame.payload["meterValue"][0]["timestamp"]
        key = f"{frame.payload.get('connectorId')}:{frame.action}:{stamp}"
        by_content[key] = by_content.get(key, 0) + 1
    assert all(count == 1 for count in by_content.values()), [k for k, c in by_content.items() if c > 1]
    starts = {f.payload["connectorId"]: f for f in (calls[u] for u in delivered_ids) if f.action == "StartTransaction"}
    for connector, bill in sessions.items():
        start = starts[connector]
        result = next(f for f in delivered if f.unique_id == start.unique_id)
        transaction_id = result.payload["transactionId"]
        mine = [calls[u] for u in delivered_ids if calls[u].payload.get("transactionId") == transaction_id]
        assert mine[-1].action == "StopTransaction" and [f.action for f in mine].count("StopTransaction") == 1
        assert all(f.action == "MeterValues" for f in mine[:-1])
        stamps = [start.payload["timestamp"]] + [f.payload["meterValue"][0]["timestamp"] for f in mine[:-1]]
        stamps.append(mine[-1].payload["timestamp"])
        assert stamps == sorted(stamps), stamps  # chronological: the queue kept the order
        assert start.seq < mine[0].seq
        assert mine[-1].payload["meterStop"] - start.payload["meterStart"] == round(bill["meter_stop_wh"]) - round(
            bill["meter_start_wh"]
        )


def test_a_csms_outage_while_charging_delivers_every_message_once_in_order(tmp_path: Path) -> None:
    with station(tmp_path, configuration=SAMPLING) as st:
        st.wait_drained()
        before = {1: len(st.sessions(1)), 2: len(st.sessions(2))}
        st.charge(1, TOKEN_1)
        seen = st.csms.next_seq()
        eventually(lambda: st.answered("MeterValues", seen), "a meter value delivered before the outage")
        st.csms.go_offline()  # type: ignore[attr-defined]
        st.charge(2, TOKEN_2)  # its StartTransaction is queued without a transactionId
        eventually(lambda: st.link().queued_messages >= 6, "meter values piling up offline")
        st.idle(1)
        st.idle(2)
        bills = {n: st.billed(n, before[n]) for n in (1, 2)}
        queued = eventually(lambda: (_q := st.link().queued_messages) if not st.link().online else 0, "offline")
        back = st.csms.next_seq()
        st.csms.go_online()  # type: ignore[attr-defined]
        st.wait_drained(timeout=60)
        after_outage = transaction_messages(st, back)
        assert len(answers(st, after_outage, CALLRESULT)) == len(after_outage) >= queued >= 8
        assert_delivered_once_in_order(st, bills)
        assert st.link().discarded_messages == 0


def test_a_killed_backend_link_with_an_undelivered_start_loses_nothing(tmp_path: Path) -> None:
    with station(tmp_path) as st:
        st.wait_drained()
        before = len(st.sessions(1))
        st.csms.go_offline()  # type: ignore[attr-defined]
        st.charge(1, TOKEN_1)
        eventually(lambda: st.link().queued_messages == 1, "the StartTransaction queued")
        st.kill_backend()
        st.idle(1)
        bill = st.billed(1, before)
        # behind the Start: the restarted link's StartupOfTheDevice security event, then the Stop
        eventually(lambda: st.link().queued_messages == 3, "the StopTransaction queued after the restart")
        st.csms.go_online()  # type: ignore[attr-defined]
        st.wait_drained()
        assert [f.action for f in transaction_messages(st)] == ["StartTransaction", "StopTransaction"]
        assert_delivered_once_in_order(st, {1: bill})


def test_a_killed_backend_link_mid_session_reports_it_once(tmp_path: Path) -> None:
    with station(tmp_path) as st:
        st.wait_drained()
        before = len(st.sessions(2))
        st.charge(2, TOKEN_2)
        eventually(lambda: st.answered("StartTransaction"), "the StartTransaction delivered")
        st.kill_backend()
        st.idle(2)  # while the link restarts: its SessionCompleted may be missed, the history is not
        bill = st.billed(2, before)
        st.wait_drained()
        eventually(lambda: st.answered("StopTransaction"), "the StopTransaction delivered")
        assert [f.action for f in transaction_messages(st)] == ["StartTransaction", "StopTransaction"]
        assert_delivered_once_in_order(st, {2: bill})


@message
class FakeQuietStart:
    """HistoryEvse: start a transaction on the plugged-in car without publishing TransactionStarted, as
    if the backend link had been down at that instant."""

    token: str
    meter_start_wh: float


@message
class FakeBill:
    """HistoryEvse: close the running (or finished) session's bill; `publish` False keeps it quiet."""

    energy_wh: float
    publish: bool = True


class HistoryEvse(FakeEvse):
    """A fake EVSE manager that bills its sessions and keeps a history, so that a session can end without
    the backend link hearing of it (the link is then told only by the history)."""

    config_schema: ClassVar = FakeEvse.config_schema

    def init(self) -> None:
        super().init()
        self.history: list[SessionCompleted] = []
        self.started_at = 0.0

    @handles(FakeBill)
    def on_bill(self, msg: FakeBill) -> None:
        assert self.session is not None
        done = SessionCompleted(
            connector=self.name,
            session_id=self.session,
            token_id=self.token,
            meter_start_wh=self.meter_start_wh or 1000.0,
            meter_stop_wh=(self.meter_start_wh or 1000.0) + msg.energy_wh,
            energy_wh=msg.energy_wh,
            stop_reason="Local",
            started_at=time.time() - 5,
            stopped_at=time.time(),
        )
        self.history.append(done)
        self.state, self.token, self.session = "Idle", None, None
        self.meter_start_wh = self.transaction_started_at = None
        self.publish(self._status())
        if msg.publish:
            self.publish(done)

    @handles(FakeQuietStart)
    def on_quiet_start(self, msg: FakeQuietStart) -> None:
        self.state, self.token = "Charging", msg.token
        self.meter_start_wh, self.transaction_started_at = msg.meter_start_wh, time.time()

    @handles(GetSessionHistory)
    def on_history(self, msg: GetSessionHistory) -> SessionHistory:
        return SessionHistory(sessions=list(self.history))


def test_sessions_that_ended_while_the_link_was_down_are_reported_from_the_history(tmp_path: Path) -> None:
    with station(tmp_path, light=True, evse_type=f"{__name__}:HistoryEvse") as st:
        st.wait_drained()
        st.system.client.call("evse-1", FakePlugIn())
        assert st.call_action("RemoteStartTransaction", {"idTag": "QUIET1", "connectorId": 1}).ok
        eventually(lambda: st.answered("StartTransaction"), "the StartTransaction delivered")
        st.system.client.call("evse-1", FakeBill(energy_wh=250.0, publish=False))  # the link never hears of it
        st.system.client.call("evse-2", FakePlugIn())
        assert st.call_action("RemoteStartTransaction", {"idTag": "QUIET2", "connectorId": 2}).ok
        eventually(lambda: len(st.answered("StartTransaction")) == 2, "the second StartTransaction delivered")
        st.system.client.call("evse-2", FakeBill(energy_wh=40.0, publish=True))  # this one it hears of
        eventually(lambda: st.answered("StopTransaction"), "the heard-of StopTransaction")
        st.kill_backend()
        st.wait_drained()
        eventually(lambda: len(st.answered("StopTransaction")) == 2, "the missed StopTransaction")
        st.kill_backend()  # and again: nothing is reported twice
        st.wait_drained()
        stops = [f.payload for f in st.calls("StopTransaction")]
        assert sorted(s["meterStop"] for s in stops) == [1040, 1250]
        assert len(st.calls("StartTransaction")) == 2


def test_a_transaction_that_began_while_the_link_restarted_is_started_at_once(tmp_path: Path) -> None:
    with station(tmp_path, light=True, evse_type=f"{__name__}:HistoryEvse") as st:
        st.wait_drained()
        st.system.client.call("evse-1", FakePlugIn())
        st.system.client.call("evse-1", FakeQuietStart(token="QUIET1", meter_start_wh=2000.0))
        st.kill_backend()  # the new link learns of the transaction only from the connector's status
        start = st.wait_call("StartTransaction")
        assert (start.payload["connectorId"], start.payload["idTag"], start.payload["meterStart"]) == (
            1,
            "QUIET1",
            2000,
        )
        st.system.client.call("evse-1", FakeBill(energy_wh=300.0))
        eventually(lambda: st.answered("StopTransaction"), "the StopTransaction delivered")
        st.kill_backend()  # and again: neither is reported twice
        st.wait_drained()
        assert [f.action for f in transaction_messages(st)] == ["StartTransaction", "StopTransaction"]
        assert st.calls("StopTransaction")[0].payload["meterStop"] == 2300


@pytest.mark.parametrize("peer", PEER_KINDS)
def test_callerrors_are_retried_then_discarded(tmp_path: Path, peer: str) -> None:
    keys = {"TransactionMessageAttempts": "2", "TransactionMessageRetryInterval": "1"}
    with station(tmp_path, peer, configuration=keys) as st:
        st.wait_drained()
        st.csms.fail_next("StopTransaction", 1)
        before = len(st.sessions(1))
        st.charge(1, TOKEN_1)
        st.idle(1)
        st.billed(1, before)
        st.wait_drained()
        stops = st.calls("StopTransaction")
        assert len(stops) == 2 and stops[0].payload == stops[1].payload  # resent once, the same message
        assert [len(answers(st, [s], k)) for s in stops for k in (CALLERROR, CALLRESULT)] == [1, 0, 0, 1]
        after = st.csms.next_seq()
        st.csms.fail_next("StartTransaction", 2)
        before = len(st.sessions(2))
        st.charge(2, TOKEN_1)
        st.idle(2)
        st.billed(2, before)
        eventually(lambda: st.link().discarded_messages == 2, "the session discarded: Start failed twice")
        assert len(st.calls("StartTransaction", after)) == 2 and st.calls("StopTransaction", after) == []
        assert st.link().queued_messages == 0


def test_the_whole_process_tree_killed_mid_session_loses_nothing(tmp_path: Path) -> None:
    """SIGKILL every process of the station while it charges, then boot it again on the same state
    directory: the transaction is closed (the car is gone) and reported exactly once."""
    port = free_port()
    config = backend_config(f"ws://127.0.0.1:{port}")
    site = tmp_path / "station.yaml"
    site.write_text(
        textwrap.dedent(SIL_STATION).format(
            admin=free_port(),
            modbus1=free_port(),
            modbus2=free_port(),
            token1=TOKEN_1,
            token2=TOKEN_2,
            backend=json.dumps(config),
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
                # the link must be up before the session starts, or it reports the session only at its end
                eventually(lambda: st.answered("BootNotification"), "the backend link's boot", 60)
                st.charge(1, TOKEN_1)
                eventually(lambda: st.answered("StartTransaction"), "the StartTransaction delivered")
            kill_all(token_processes(first[1]))  # the whole box loses power
            first[0].wait(10)
            assert wait_until_gone(lambda: token_processes(first[1])) == []
            (state / "api.port").unlink()
            second = _boot(tmp_path / "second.out", site, state)
            try:
                eventually((state / "api.port").exists, "the second boot", 60)
                eventually(lambda: any(f.action == "StopTransaction" for f in csms.frames(CP_ID)), "the Stop", 60)
                with connect(f"ws://127.0.0.1:{(state / 'api.port').read_text()}") as ws:
                    st = Station(None, csms, state, ws)  # type: ignore[arg-type]
                    (bill,) = st.sessions(1)
                    eventually(
                        lambda: len(answers(st, transaction_messages(st), CALLRESULT)) == 2, "both delivered", 30
                    )
                    assert bill["stop_reason"] == "EVDisconnected"
                    assert [f.action for f in transaction_messages(st)] == ["StartTransaction", "StopTransaction"]
                    assert_delivered_once_in_order(st, {1: bill})
                    assert len(list(csms.events(EventKind.OPEN))) == 2
            finally:
                _stop(second)
    finally:
        _stop(first)


def _boot(out: Path, site: Path, state: Path) -> tuple[subprocess.Popen[bytes], str]:
    token = uuid.uuid4().hex
    env = {**os.environ, TOKEN_VARIABLE: token}
    with out.open("wb") as sink:
        cmd = [sys.executable, "-m", "charger.boot", str(site), "--state-dir", str(state), "--no-view"]
        cmd += ["--admin-port", str(free_port()), "--log-level", "INFO"]
        process = subprocess.Popen(cmd, stdout=sink, stderr=subprocess.STDOUT, env=env)
    return process, token


def _stop(run: tuple[subprocess.Popen[bytes], str]) -> None:
    process, token = run
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
    kill_all(wait_until_gone(lambda: token_processes(token), timeout=10))
