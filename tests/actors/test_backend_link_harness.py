"""The harness of the backend-link tests: a real SIL station (rig, board and meter drivers, EVSE managers,
auth, control API) or a light one (fake EVSE managers), plus a `BackendLink`, in a real actor system,
talking to a CSMS peer from `tests.support.csms` (our simulator on a thread, or ocpp-rpc in strict mode).

Imported by the other ``test_backend_link_*`` modules; its own tests check the harness's helpers.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from charger.actors.ocpp_messages import BackendLinkStatus, GetBackendLinkStatus
from charger.sim.csms import (
    CALLRESULT,
    Direction,
    Frame,
    answer_matcher,
    frame_matcher,
)
from websockets.sync.client import ClientConnection, connect

from charger.ctl import request
from charger.errors import Unavailable
from charger.testing import RunningSystem, free_port, running_system
from charger.topology import load_topology
from tests.support.csms import CsmsPeer, NodeCsms, PeerOptions, SimCsms, require_node_peer, simulator_for

CP_ID = "CP1"
FAKE_EVSE = "tests.support.fake_evse:FakeEvse"
TOKEN_1, TOKEN_2 = "04A1B2C3D4", "04F5E6D7C8"
CHARGE = "iec_wait_pwr_ready;draw_power_regulated 16,3"
FAST_KEYS = {
    # fast reconnects and no background chatter unless a test asks for it
    "RetryBackOffWaitMinimum": "0",
    "RetryBackOffRandomRange": "1",
    "RetryBackOffRepeatTimes": "1",
    "MeterValueSampleInterval": "0",
    "HeartbeatInterval": "0",
}

SIL_STATION = """
site: backend-link
system: {{admin_port: {admin}, bind: 127.0.0.1}}
actors:
  rig:
    type: SilRig
    config:
      connectors:
        - {{board_link: board-1.pty, modbus_port: {modbus1}}}
        - {{board_link: board-2.pty, modbus_port: {modbus2}}}
  board-1: {{type: BoardDriver, config: {{port: board-1.pty}}}}
  meter-1: {{type: PowerMeter, config: {{transport: tcp, port: {modbus1}, poll_s: 0.5}}}}
  evse-1:
    type: EvseManager
    config: {{connector_id: 1, connection_timeout_s: 30, c1_power_off_s: 1}}
    connections: {{board: [board-1], meter: [meter-1]}}
  board-2: {{type: BoardDriver, config: {{port: board-2.pty}}}}
  meter-2: {{type: PowerMeter, config: {{transport: tcp, port: {modbus2}, poll_s: 0.5}}}}
  evse-2:
    type: EvseManager
    config: {{connector_id: 2, connection_timeout_s: 30, c1_power_off_s: 1}}
    connections: {{board: [board-2], meter: [meter-2]}}
  auth:
    type: Auth
    config: {{allow: [{token1}, {token2}], connection_timeout_s: 30}}
    connections: {{evse: [evse-1, evse-2]{auth_backend}}}
  api:
    type: ControlApi
    config: {{port: 0, port_file: api.port}}
    connections: {{evse: [evse-1, evse-2], rig: [rig], auth: [auth]}}
  backend:
    type: BackendLink
    config: {backend}
    connections: {{evse: [evse-1, evse-2], meter: [meter-1, meter-2]}}
supervision:
  name: root
  intensity: 20
  period: 10
  children:
    - supervisor: sil
      children: [rig]
    - supervisor: connector-1
      children: [board-1, meter-1, evse-1]
    - supervisor: connector-2
      children: [board-2, meter-2, evse-2]
    - auth
    - api
    - backend
"""

LIGHT_STATION = """
site: backend-link-light
system: {{admin_port: {admin}, bind: 127.0.0.1}}
actors:
  evse-1: {{type: '{evse_type}', config: {{connector_id: 1}}}}
  evse-2: {{type: '{evse_type}', config: {{connector_id: 2}}}}
  backend:
    type: BackendLink
    config: {backend}
    connections: {{evse: [evse-1, evse-2]}}
supervision:
  name: root
  intensity: 20
  period: 10
  children: [evse-1, evse-2, backend]
"""


def backend_config(url: str, **extra: Any) -> dict[str, Any]:
    """A BackendLink config for CP1 at `url`; `configuration` entries are merged over `FAST_KEYS`."""
    configuration = {**FAST_KEYS, **extra.pop("configuration", {})}
    return {"csms_url": url, "charge_point_id": CP_ID, "configuration": configuration, **extra}


def eventually(check: Callable[[], Any], what: str, timeout: float = 20.0, step: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while not (result := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout} s")
        time.sleep(step)
    return result


class Station:
    """A running system with a backend link, and its CSMS."""

    def __init__(self, system: RunningSystem, csms: CsmsPeer, state: Path, ws: ClientConnection | None) -> None:
        self.system, self.csms, self.state, self.ws = system, csms, state, ws

    # -- the station -----------------------------------------------------------------------------------

    def api(self, method: str, **params: Any) -> Any:
        assert self.ws is not None, "the light station has no control API"
        return request(self.ws, method, params)

    def connector(self, n: int) -> dict[str, Any]:
        statuses: list[dict[str, Any]] = self.api("connectors.status")
        return statuses[n - 1]

    def wait(self, n: int, what: Callable[[dict[str, Any]], bool], timeout: float = 30.0) -> dict[str, Any]:
        last: dict[str, Any] = {}

        def check() -> bool:
            nonlocal last
            last = self.connector(n)
            return what(last)

        try:
            eventually(check, f"connector {n} reaching the expected status", timeout)
        except AssertionError:
            raise AssertionError(f"connector {n} never got there; last status {last}") from None
        return last

    def sessions(self, n: int) -> list[dict[str, Any]]:
        sessions: list[dict[str, Any]] = self.api("connector.sessions", connector=n)
        return sessions

    def link(self) -> BackendLinkStatus:
        """The link's status now. Raises `Unavailable` while the link restarts: use `link_when` to wait."""
        status = self.system.client.call("backend", GetBackendLinkStatus(), timeout=10.0)
        assert isinstance(status, BackendLinkStatus)
        return status

    def link_when(self, ok: Callable[[BackendLinkStatus], bool], what: str, timeout: float = 30.0) -> BackendLinkStatus:
        """Poll the link's status until `ok` holds, through a restart of the link. The CSMS may see the new
        instance (its BootNotification) before the supervisor has registered it, and a call meanwhile
        fails fast with `Unavailable`: that counts as "not yet". Any other error is raised; a link that
        never comes back still fails, with its last answer in the message."""
        last: object = None

        def check() -> BackendLinkStatus | None:
            nonlocal last
            try:
                last = self.link()
            except Unavailable as exc:
                last = exc
                return None
            return last if ok(last) else None

        try:
            found: BackendLinkStatus = eventually(check, what, timeout)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; the link last answered {last!r}") from None
        return found

    def wait_drained(self, timeout: float = 30.0) -> BackendLinkStatus:
        """Online, accepted, and every queued message delivered (waiting through a restart of the link)."""
        return self.link_when(
            lambda s: s.online and s.registration == "Accepted" and s.queued_messages == 0,
            "the queue draining",
            timeout,
        )

    def charge(self, n: int, token: str) -> dict[str, Any]:
        """Plug in first, then the card (through auth): a transaction drawing power."""
        self.api("connector.plug", connector=n, script=CHARGE)
        self.wait(n, lambda s: s["state"] == "WaitingForAuthentication")
        self.api("rfid.present", token=token, connector=n)
        return self.wait(n, lambda s: s["state"] == "Charging" and (s["energy_wh"] or 0) > 1.0)

    def billed(self, n: int, before: int) -> dict[str, Any]:
        sessions = eventually(lambda: len(s := self.sessions(n)) > before and s, "the session being billed")
        assert len(sessions) == before + 1, sessions
        bill: dict[str, Any] = sessions[-1]
        return bill

    def idle(self, n: int) -> None:
        self.api("connector.unplug", connector=n)
        self.wait(n, lambda s: s["state"] == "Idle")

    # -- what the CSMS saw -----------------------------------------------------------------------------

    def calls(self, action: str, after: int = 0) -> list[Frame]:
        """The CALLs of `action` the CSMS received from the station since seq `after`."""
        match = frame_matcher(action, cp_id=CP_ID)
        return [f for f in self.csms.frames(CP_ID) if f.seq >= after and match(f)]

    def answered(self, action: str, after: int = 0) -> list[Frame]:
        """The station's CALLs of `action` the CSMS answered with a CALLRESULT (delivered ones)."""
        calls = {f.unique_id: f for f in self.calls(action, after)}
        results = [
            f
            for f in self.csms.frames(CP_ID)
            if f.seq >= after and f.direction is Direction.SENT and f.message_type == CALLRESULT
        ]
        return [calls[r.unique_id] for r in results if r.unique_id in calls]

    def wait_call(
        self, action: str, after: int = 0, where: Callable[[Frame], bool] | None = None, timeout: float = 30.0
    ) -> Frame:
        return self.csms.wait_for(frame_matcher(action, cp_id=CP_ID, where=where), after=after, timeout=timeout)

    def call_action(self, action: str, payload: dict[str, Any], timeout: float = 30.0) -> Any:
        return self.csms.call_action(CP_ID, action, payload, timeout=timeout)

    def raw_call(self, text: str, timeout: float = 15.0) -> Frame:
        """Send any text as a frame; it must be a CALL with a readable id: return the station's answer."""
        unique_id = json.loads(text)[1]
        after = self.csms.next_seq()
        self.csms.send_raw(CP_ID, text)
        return self.csms.wait_for(answer_matcher(CP_ID, unique_id), after=after, timeout=timeout)

    def kill_backend(self) -> None:
        """SIGKILL the backend link's process and wait until its supervisor has started a new one."""
        pid = self.system.pid_of("backend")
        os.kill(pid, signal.SIGKILL)
        eventually(lambda: self.system.status().actors.get("backend") not in (None, pid), "the backend restarting")


def _config_yaml(config: dict[str, Any]) -> str:
    return json.dumps(config)  # YAML is a superset of JSON: the config goes in as one flow mapping


@contextlib.contextmanager
def csms_on(kind: str, port: int, directory: Path, options: PeerOptions | None = None) -> Iterator[CsmsPeer]:
    """A CSMS peer on a given port (`tests.support.csms.csms_peer` picks its own).

    Start it only after the actor system: a listening socket that exists when the system forks its
    processes stays open in them, so closing it (an outage) would leave a port that accepts and never
    answers, and cannot be bound again."""
    options = options or PeerOptions()
    if kind == "sim":
        with (
            (directory / "csms-sim.jsonl").open("a", encoding="utf-8") as sink,
            SimCsms(simulator_for(options, port, sink)) as sim,
        ):
            yield sim
    elif kind == "ocpp-rpc":
        require_node_peer()
        node = NodeCsms(port, directory / "csms-ocpp-rpc.jsonl", options)
        try:
            node.start()
            yield node
        finally:
            node.stop()
    else:
        raise ValueError(f"unknown CSMS peer {kind!r}")


@contextlib.contextmanager
def station(
    tmp_path: Path,
    peer: str = "sim",
    *,
    options: PeerOptions | None = None,
    light: bool = False,
    evse_type: str = FAKE_EVSE,
    url_scheme: str = "ws",
    auth_asks_backend: bool = False,
    **backend: Any,
) -> Iterator[Station]:
    """A station (the SIL one, or the `light` one with fake EVSE managers) whose backend link talks to a
    CSMS peer of kind `peer`; `backend` goes into `backend_config`."""
    port = free_port()
    config = backend_config(f"{url_scheme}://127.0.0.1:{port}", **backend)
    system_cm = light_system(tmp_path, config, evse_type) if light else sil_system(tmp_path, config, auth_asks_backend)
    with system_cm as (system, state, ws), csms_on(peer, port, tmp_path, options) as csms:
        yield Station(system, csms, state, ws)


@contextlib.contextmanager
def sil_system(
    tmp_path: Path, backend: dict[str, Any], auth_asks_backend: bool = False
) -> Iterator[tuple[RunningSystem, Path, ClientConnection | None]]:
    """The real SIL station with a backend link configured by `backend` (and wired to `Auth`, if asked)."""
    state = tmp_path / "state"
    state.mkdir(exist_ok=True)
    path = tmp_path / "station.yaml"
    path.write_text(
        textwrap.dedent(SIL_STATION).format(
            admin=free_port(),
            modbus1=free_port(),
            modbus2=free_port(),
            token1=TOKEN_1,
            token2=TOKEN_2,
            backend=_config_yaml(backend),
            auth_backend=", backend: [backend]" if auth_asks_backend else "",
        )
    )
    topology = load_topology(path)
    with running_system(topology.root, free_port(), str(state), log_file=str(tmp_path / "system.log")) as system:
        port_file = state / "api.port"
        eventually(port_file.exists, "the control API coming up", 30)
        with connect(f"ws://127.0.0.1:{port_file.read_text()}") as ws:
            for n in (1, 2):
                Station(system, None, state, ws).wait(  # type: ignore[arg-type]
                    n, lambda s: s["state"] == "Idle" and s["pilot"] == "A" and not s["faults"]
                )
            yield system, state, ws


@contextlib.contextmanager
def light_system(
    tmp_path: Path, backend: dict[str, Any], evse_type: str = "tests.support.fake_evse:FakeEvse"
) -> Iterator[tuple[RunningSystem, Path, ClientConnection | None]]:
    """Two fake EVSE managers and a backend link: for tests of the link alone (boot, configuration...)."""
    state = tmp_path / "state"
    state.mkdir(exist_ok=True)
    path = tmp_path / "light.yaml"
    text = textwrap.dedent(LIGHT_STATION).format(admin=free_port(), backend=_config_yaml(backend), evse_type=evse_type)
    path.write_text(text)
    topology = load_topology(path)
    with running_system(topology.root, free_port(), str(state), log_file=str(tmp_path / "system.log")) as system:
        yield system, state, None


def test_backend_config_merges_the_fast_keys() -> None:
    config = backend_config("ws://127.0.0.1:1", configuration={"HeartbeatInterval": "5"}, security_profile=1)
    assert config["configuration"]["HeartbeatInterval"] == "5"
    assert config["configuration"]["RetryBackOffWaitMinimum"] == "0"
    assert config["security_profile"] == 1 and config["charge_point_id"] == CP_ID


class _Restarting:
    """Stands in for a `RunningSystem` whose backend link restarts: `Unavailable` for the first `down`
    calls (or every call), then `status`."""

    def __init__(self, down: int | None, status: BackendLinkStatus) -> None:
        self.client, self.down, self.status, self.calls = self, down, status, 0

    def call(self, name: str, message: object, timeout: float) -> BackendLinkStatus:
        self.calls += 1
        if self.down is None or self.calls <= self.down:
            raise Unavailable(f"{name} is not running")
        return self.status


def _link_status(queued: int) -> BackendLinkStatus:
    return BackendLinkStatus(
        csms_url="ws://127.0.0.1:1",
        charge_point_id=CP_ID,
        security_profile=0,
        online=True,
        registration="Accepted",
        connections=1,
        queued_messages=queued,
        discarded_messages=0,
        last_error=None,
    )


def test_waiting_on_the_link_goes_through_a_restart_but_not_through_a_link_that_never_comes_back() -> None:
    restarting = _Restarting(3, _link_status(0))
    st = Station(restarting, None, Path("."), None)  # type: ignore[arg-type]
    assert st.wait_drained(timeout=10).queued_messages == 0
    assert restarting.calls == 4
    gone = Station(_Restarting(None, _link_status(0)), None, Path("."), None)  # type: ignore[arg-type]
    with pytest.raises(AssertionError, match=r"the queue draining did not happen.*not running"):
        gone.wait_drained(timeout=0.5)
    stuck = Station(_Restarting(0, _link_status(2)), None, Path("."), None)  # type: ignore[arg-type]
    with pytest.raises(AssertionError, match="queued_messages=2"):
        stuck.wait_drained(timeout=0.5)
    with pytest.raises(Unavailable):
        Station(_Restarting(None, _link_status(0)), None, Path("."), None).link()  # type: ignore[arg-type]
