"""One fault-injection case: drive connector 1's session to a phase, SIGKILL a target, wait for recovery,
finish the session, and check the invariants (docs/faults.md)."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from charger.chaos.invariants import SafetyWindow, billing, dangling_descriptors, fd_counts, safety_violations
from charger.chaos.station import Station, StationError
from charger.chaos.targets import Phase, Target

__all__ = ["CAR_SCRIPT", "CaseResult", "run_case"]

CAR_SCRIPT = "iec_wait_pwr_ready;draw_power_regulated 32,3"
"""The car: waits for PWM, then draws 32 A on three phases for as long as it is plugged in."""
_IDLE = frozenset({"Idle"})
_ENERGY_BEFORE_KILL_WH = 3.0
_ENERGY_AFTER_RECOVERY_WH = 2.0


@dataclass(slots=True)
class CaseResult:
    target: str
    phase: str
    skipped: str = ""
    """Why the case did not run (e.g. ``not in topology``); empty when it ran."""
    killed: str = ""
    recovered: bool = False
    recovery_s: float | None = None
    outcome: str = ""
    energy_error_wh: float | None = None
    missing: int = 0
    duplicate: int = 0
    out_of_order: int = 0
    safety: list[str] = field(default_factory=list)
    billing: list[str] = field(default_factory=list)
    continuity: list[str] = field(default_factory=list)
    cleanliness: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    """Seconds each step of the case took (drive, recover, finish, billing, cleanliness)."""
    descriptors: tuple[int, int] = (0, 0)
    """Change of the system's open descriptors and sockets over the case (information: they grow once
    as connections between actors warm up; what counts as a leak is in `cleanliness`)."""

    @property
    def case(self) -> str:
        return f"{self.target}@{self.phase}"

    @property
    def ok(self) -> bool:
        if self.skipped:
            return True
        return self.recovered and not (self.safety or self.billing or self.continuity or self.cleanliness)

    def as_dict(self) -> dict[str, Any]:
        return {
            "case": self.case,
            **{name: getattr(self, name) for name in self.__dataclass_fields__},
            "ok": self.ok,
        }


def _wait(what: str, check: Callable[[], Any], timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise StationError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _state_in(st: Station, states: frozenset[str], min_wh: float | None = None) -> Callable[[], Any]:
    def check() -> Any:
        status = st.connector()
        if status is None or status["state"] not in states:
            return None
        if min_wh is not None and (status["energy_wh"] or 0.0) < min_wh:
            return None
        return status

    return check


def _idle(st: Station, timeout: float = 30.0) -> None:
    """Connector 1 free, no car: where every case starts and ends."""
    if st.rig()["car_pilot"] != "A":
        st.call("connector.unplug", connector=st.layout.evse)
    _wait("connector 1 to be idle", _state_in(st, _IDLE), timeout)


def _authorize(st: Station, window: SafetyWindow) -> None:
    window.authorized_at = time.monotonic()  # the relays may close from the moment the token is presented
    verdict = st.call("rfid.present", token=st.layout.token, connector=st.layout.evse)
    if verdict.get("status") != "Accepted":
        raise StationError(f"token {st.layout.token} was not accepted: {verdict}")


def _drive(st: Station, phase: Phase, window: SafetyWindow) -> dict[str, Any]:
    """From idle to `phase`; returns the connector's status there."""
    evse = st.layout.evse
    if phase.name == "csms-offline":
        st.relay.set_online(False)
    st.call("connector.plug", connector=evse, script=CAR_SCRIPT)
    waiting = _wait("the car to wait for authorization", _state_in(st, frozenset({"WaitingForAuthentication"})), 20)
    if phase.name == "authorizing":
        return dict(waiting)
    _authorize(st, window)
    charging = _wait("charging", _state_in(st, frozenset({"Charging"}), _ENERGY_BEFORE_KILL_WH), 30)
    if phase.name == "paused":
        window.stop_requested_at.append(time.monotonic())
        st.call("connector.pause", connector=evse)
        return dict(_wait("pause", _state_in(st, phase.settled), 20))
    if phase.name == "stopping":
        window.stop_requested_at.append(time.monotonic())
        st.call("connector.stop", connector=evse, reason="Local")  # the kill follows at once: mid-stop
        return dict(st.connector() or charging)
    return dict(charging)


def _kill(st: Station, target: Target, actor: str) -> tuple[int, float]:
    """SIGKILL the target (the whole box: every process, then boot again); returns the PID killed (the
    kernel's for the whole box) and when."""
    pid = st.pid_of(actor)
    killed_at = time.monotonic()
    if target.whole_box:
        st.kill_box()
        st.boot()
    else:
        os.kill(pid, signal.SIGKILL)
    return pid, killed_at


def _served(st: Station, target: Target, actor: str, *, old_pid: int, phase: Phase, before: dict[str, Any]) -> bool:
    """The killed actor runs again, and connector 1 serves its session (or, after a fault that may end
    it, is ready for the next one)."""
    if not target.whole_box:
        pids = st.pids_of(actor)
        if len(pids) != 1 or pids[0] == old_pid:
            return False
    status = st.connector()
    if status is None:
        return False
    if status["session_id"] == before["session_id"] and status["state"] in phase.settled:
        return True
    return target.safety_critical and status["session_id"] != before["session_id"] and status["state"] in _IDLE


def run_case(st: Station, target: Target, phase: Phase, *, recovery_timeout: float = 30.0) -> CaseResult:
    result = CaseResult(target=target.name, phase=phase.name)
    actor = target.actor(st.layout)
    if actor is None:
        result.skipped = "not in topology"
        return result
    result.killed = "every process" if target.whole_box else actor
    st.relay.set_online(True)
    _idle(st)
    window = SafetyWindow(start=time.monotonic(), authorized_at=None)
    since_wall = time.time()
    register_start = st.rig()["meter_energy_wh"]
    fds_before = fd_counts(st.system_processes())
    mark = time.monotonic()

    def step(name: str) -> None:
        nonlocal mark
        now = time.monotonic()
        result.timings[name] = round(now - mark, 3)
        mark = now

    before = _drive(st, phase, window)
    step("drive")

    old_pid, killed_at = _kill(st, target, actor)
    try:
        _wait(
            "recovery",
            lambda: _served(st, target, actor, old_pid=old_pid, phase=phase, before=before),
            recovery_timeout,
        )
        result.recovered, result.recovery_s = True, time.monotonic() - killed_at
    except StationError:
        result.recovered = False
    status = st.connector() or {}
    continued = status.get("session_id") == before["session_id"] and status.get("state") in phase.settled
    if not continued and not target.safety_critical:
        result.continuity.append(
            f"session {before['session_id']} did not survive: connector {status.get('state', 'not answering')}, "
            f"session {status.get('session_id')}"
        )
    step("recover")
    _finish(st, phase, window, continued)
    st.relay.set_online(True)
    step("finish")
    _check_billing(st, result, since_wall=since_wall, register_start=register_start, phase=phase, continued=continued)
    step("billing")
    window.end = time.monotonic()
    result.safety = safety_violations(st.relay_record(), window)
    result.outcome = _outcome(st, before, continued, result)
    result.cleanliness = _cleanliness(st)
    step("cleanliness")
    fds_after = fd_counts(st.system_processes())
    result.descriptors = (fds_after[0] - fds_before[0], fds_after[1] - fds_before[1])
    return result


def _finish(st: Station, phase: Phase, window: SafetyWindow, continued: bool) -> None:
    """Take the session (or a fresh one, if the fault ended it before it started) to its end."""
    evse = st.layout.evse
    if phase.name == "authorizing":
        if st.rig()["car_pilot"] == "A":  # the car left with the box
            st.call("connector.plug", connector=evse, script=CAR_SCRIPT)
            _wait("the car to wait for authorization", _state_in(st, frozenset({"WaitingForAuthentication"})), 20)
        _authorize(st, window)
        _wait("charging", _state_in(st, frozenset({"Charging"}), _ENERGY_AFTER_RECOVERY_WH), 30)
    elif continued and phase.name == "paused":
        st.call("connector.resume", connector=evse)
        _wait("charging again", _state_in(st, frozenset({"Charging"})), 20)
    if continued and phase.name in ("charging", "paused", "csms-offline"):
        energy = (st.connector() or {}).get("energy_wh") or 0.0
        _wait("energy after recovery", _state_in(st, frozenset({"Charging"}), energy + _ENERGY_AFTER_RECOVERY_WH), 30)
    if phase.name == "stopping":
        _wait("the stop", _state_in(st, frozenset({"Finished", "Idle"})), 20)
    _idle(st)


def _check_billing(
    st: Station, result: CaseResult, *, since_wall: float, register_start: float, phase: Phase, continued: bool
) -> None:
    def settled() -> Any:
        seen = billing(st.frames(), st.layout.charge_point_id, 1, since_wall)
        return seen if seen.starts and len(seen.stops) >= len(seen.starts) else None

    try:
        seen = _wait("the CSMS to receive the StopTransaction", settled, 30)
    except StationError:
        seen = billing(st.frames(), st.layout.charge_point_id, 1, since_wall)
    register = round(st.rig()["meter_energy_wh"]) - round(register_start)
    result.missing, result.duplicate, result.out_of_order = seen.missing, seen.duplicate, len(seen.out_of_order)
    result.billing += seen.out_of_order
    if seen.missing or seen.duplicate:
        result.billing.append(f"{len(seen.starts)} StartTransaction and {len(seen.stops)} StopTransaction")
    if seen.reported_wh is not None:
        result.energy_error_wh = seen.reported_wh - register
        if result.energy_error_wh != 0:
            result.billing.append(f"the CSMS was told {seen.reported_wh} Wh, the meter register moved {register} Wh")
        stop, start = seen.stops[0], seen.starts[0]
        if stop.get("transactionId") != start["_tx"]:
            result.billing.append(f"StopTransaction for {stop.get('transactionId')}, started {start['_tx']}")
        reason = stop.get("reason", "Local")  # OCPP 1.6: no reason means Local
        if continued and reason != phase.stop_reason:
            result.billing.append(f"stop reason {reason}, expected {phase.stop_reason}")
    result.outcome = "; ".join(f"tx {s['_tx']}" for s in seen.starts)
    if seen.stops:
        result.outcome += f" stopped {seen.stops[-1].get('reason', 'Local')}"


def _outcome(st: Station, before: dict[str, Any], continued: bool, result: CaseResult) -> str:
    how = "continued" if continued else "ended by the fault"
    return f"{how}, {result.outcome}" if result.outcome else f"{how}, no transaction"


def _cleanliness(st: Station, settle: float = 10.0) -> list[str]:
    """No process outside the running system, one process per actor, no descriptor left dangling."""
    deadline = time.monotonic() + settle
    while True:
        problems = []
        if orphans := st.orphans():
            problems.append(f"orphaned processes: {orphans}")
        counts: dict[str, int] = {}
        for title in st.titles().values():
            if title.startswith("charger: "):
                name = title.split(" ", 2)[1]
                counts[name] = counts.get(name, 0) + 1
        if doubled := sorted(n for n, c in counts.items() if c > 1):
            problems.append(f"more than one process for {doubled}")
        problems += dangling_descriptors(st.system_processes())
        if not problems or time.monotonic() > deadline:
            return problems
        time.sleep(0.2)
