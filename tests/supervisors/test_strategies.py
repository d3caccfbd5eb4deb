"""Supervision against real multiprocTCPBase processes: each strategy restarts exactly the right
siblings, in the right order; intensity escalates; restart types behave as in OTP."""

from __future__ import annotations

import os
import signal
import time

import pytest
from charger.supervisors.spec import Restart, Strategy

from charger.errors import RemoteCrash
from charger.testing import RunningSystem
from tests.conftest import group, worker
from tests.support.probes import Crash, Ping, StopNormally, read_log


def wait_for(predicate, timeout: float = 10.0, what: str = "condition"):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def pids(system: RunningSystem, *names: str) -> dict[str, int]:
    return {n: system.pid_of(n) for n in names}


def kill_and_wait_restart(system: RunningSystem, name: str) -> int:
    old = system.pid_of(name)
    os.kill(old, signal.SIGKILL)
    return wait_for(lambda: (p := system.status().actors.get(name)) not in (None, old) and p, what=f"{name} restart")


def settle(system: RunningSystem) -> None:
    """Wait until no supervisor is between stopping and starting children."""
    last = -1
    while (total := system.status().events_total) != last:
        last = total
        time.sleep(0.3)


def test_sigkilled_child_is_restarted_and_answers(start_tree, tmp_path):
    with start_tree(group("root", worker("a"))) as system:
        old = system.pid_of("a")
        new = kill_and_wait_restart(system, "a")
        assert new != old
        assert system.client.call("a", Ping(payload=b"x")).pid == new
        assert system.status().restarts == {"a": 1}


def test_one_for_one_restarts_only_the_failed_child(start_tree, tmp_path):
    with start_tree(group("root", worker("a"), worker("b"), worker("c"))) as system:
        before = pids(system, "a", "b", "c")
        kill_and_wait_restart(system, "b")
        settle(system)
        after = pids(system, "a", "b", "c")
        assert after["a"] == before["a"] and after["c"] == before["c"] and after["b"] != before["b"]
        assert read_log(str(tmp_path), "starts.log") == ["a", "b", "c", "b"]
        assert read_log(str(tmp_path), "stops.log") == []


def test_one_for_all_stops_the_others_in_reverse_and_restarts_all_in_order(start_tree, tmp_path):
    root = group("root", worker("a"), worker("b"), worker("c"), strategy=Strategy.ONE_FOR_ALL)
    with start_tree(root) as system:
        before = pids(system, "a", "b", "c")
        kill_and_wait_restart(system, "b")
        settle(system)
        after = pids(system, "a", "b", "c")
        assert all(after[n] != before[n] for n in "abc")
        assert read_log(str(tmp_path), "stops.log") == ["c", "a"]
        assert read_log(str(tmp_path), "starts.log") == ["a", "b", "c", "a", "b", "c"]


def test_rest_for_one_restarts_the_failed_child_and_those_after_it(start_tree, tmp_path):
    root = group("root", worker("a"), worker("b"), worker("c"), worker("d"), strategy=Strategy.REST_FOR_ONE)
    with start_tree(root) as system:
        before = pids(system, "a", "b", "c", "d")
        kill_and_wait_restart(system, "b")
        settle(system)
        after = pids(system, "a", "b", "c", "d")
        assert after["a"] == before["a"]
        assert all(after[n] != before[n] for n in "bcd")
        assert read_log(str(tmp_path), "stops.log") == ["d", "c"]
        assert read_log(str(tmp_path), "starts.log") == ["a", "b", "c", "d", "b", "c", "d"]


def test_exceeding_intensity_escalates_to_the_parent(start_tree, tmp_path):
    inner = group("inner", worker("x"), intensity=1, period=30)
    with start_tree(group("root", worker("a"), inner, intensity=5, period=30)) as system:
        a_pid, inner_pid = system.pid_of("a"), system.pid_of("inner")
        kill_and_wait_restart(system, "x")  # 1 restart: within intensity
        assert system.pid_of("inner") == inner_pid
        kill_and_wait_restart(system, "x")  # 2nd within the period: inner gives up, root restarts inner
        settle(system)
        status = system.status()
        assert system.pid_of("inner") != inner_pid
        assert system.pid_of("a") == a_pid
        assert status.restarts == {"x": 1, "inner": 1}
        assert any("inner: x escalated: reached max restart intensity" in e for e in status.events)
        assert not status.halted


def test_root_exceeding_intensity_halts_the_system(start_tree, tmp_path):
    with start_tree(group("root", worker("a"), intensity=0)) as system:
        os.kill(system.pid_of("a"), signal.SIGKILL)
        status = wait_for(lambda: (s := system.status()).halted and s, what="halt")
        assert "reached max restart intensity" in status.reason
        assert "a" not in status.actors and "root" not in status.actors


def test_transient_child_stays_down_after_a_normal_exit(start_tree, tmp_path):
    with start_tree(group("root", worker("t", restart=Restart.TRANSIENT))) as system:
        system.client.call("t", StopNormally())
        wait_for(lambda: "t" not in system.status().actors, what="t gone")
        time.sleep(0.5)
        assert "t" not in system.status().actors
        assert read_log(str(tmp_path), "starts.log") == ["t"]


def test_transient_child_is_restarted_after_a_crash(start_tree, tmp_path):
    with start_tree(group("root", worker("t", restart=Restart.TRANSIENT))) as system:
        old = system.pid_of("t")
        with pytest.raises(RemoteCrash):
            system.client.call("t", Crash())
        wait_for(lambda: system.status().actors.get("t") not in (None, old), what="t restarted")
        assert read_log(str(tmp_path), "starts.log") == ["t", "t"]


def test_temporary_child_is_never_restarted(start_tree, tmp_path):
    with start_tree(group("root", worker("p"), worker("tmp", restart=Restart.TEMPORARY))) as system:
        os.kill(system.pid_of("tmp"), signal.SIGKILL)
        wait_for(lambda: "tmp" not in system.status().actors, what="tmp gone")
        time.sleep(0.5)
        status = system.status()
        assert "tmp" not in status.actors and status.restarts == {}


def test_temporary_sibling_is_not_brought_back_by_one_for_all(start_tree, tmp_path):
    root = group(
        "root", worker("a"), worker("tmp", restart=Restart.TEMPORARY), worker("c"), strategy=Strategy.ONE_FOR_ALL
    )
    with start_tree(root) as system:
        kill_and_wait_restart(system, "a")
        settle(system)
        assert sorted(system.status().actors) == ["a", "c", "root"]
        assert read_log(str(tmp_path), "starts.log") == ["a", "tmp", "c", "a", "c"]


def test_a_failed_restart_still_brings_back_the_later_siblings(start_tree, tmp_path):
    # a's first restart fails in init; rest_for_one must still restart b and c once a is back
    root = group(
        "root", worker("a", config={"fail_on_starts": [2]}), worker("b"), worker("c"), strategy=Strategy.REST_FOR_ONE
    )
    with start_tree(root) as system:
        before = pids(system, "a", "b", "c")
        os.kill(before["a"], signal.SIGKILL)
        wait_for(lambda: {"a", "b", "c"} <= set(system.status().actors), what="all three back")
        settle(system)
        after = pids(system, "a", "b", "c")
        assert all(after[n] != before[n] for n in "abc")
        # one restart for the kill, one for the failed start; the dead instance's late Exiting must not
        # take down its healthy replacement (which would add a third)
        assert system.status().restarts["a"] == 2


# --- supervisors that share their parent's process (own_process: false) ----------------------------------


def test_a_shared_process_supervisor_costs_no_process_and_keeps_its_strategy(start_tree, tmp_path):
    inner = group("inner", worker("x"), worker("y"), strategy=Strategy.REST_FOR_ONE, own_process=False)
    with start_tree(group("root", worker("a"), inner)) as system:
        status = system.status()
        assert sorted(status.actors) == ["a", "root", "x", "y"]
        assert len(system.processes()) == len(status.actors) + 3  # + admin, logger and kernel
        before = pids(system, "a", "x", "y")
        kill_and_wait_restart(system, "x")
        settle(system)
        after = pids(system, "a", "x", "y")
        assert after["a"] == before["a"] and after["x"] != before["x"] and after["y"] != before["y"]
        assert read_log(str(tmp_path), "starts.log") == ["a", "x", "y", "x", "y"]
        assert read_log(str(tmp_path), "stops.log") == ["y"]
        assert any(e == "inner: x restarting: killed" for e in system.status().events)


def test_a_shared_process_supervisor_escalates_to_its_parent(start_tree, tmp_path):
    inner = group("inner", worker("x"), worker("y"), intensity=1, period=30, own_process=False)
    with start_tree(group("root", worker("a"), inner, intensity=5, period=30)) as system:
        a_pid, root_pid = system.pid_of("a"), system.pid_of("root")
        kill_and_wait_restart(system, "x")  # within inner's intensity: only x comes back
        y_pid = system.pid_of("y")
        kill_and_wait_restart(system, "x")  # inner gives up: root restarts the whole of inner
        settle(system)
        status = system.status()
        assert system.pid_of("y") != y_pid
        assert system.pid_of("a") == a_pid and system.pid_of("root") == root_pid
        assert status.restarts == {"x": 1, "inner": 1}  # as with its own process (test above)
        assert any("inner: x escalated: reached max restart intensity" in e for e in status.events)
        assert read_log(str(tmp_path), "starts.log") == ["a", "x", "y", "x", "x", "y"]
        assert not status.halted


def test_nested_shared_process_supervisors_escalate_level_by_level(start_tree, tmp_path):
    leaf = group("leaf", worker("x"), intensity=0, own_process=False)
    mid = group("mid", leaf, worker("m"), intensity=0, own_process=False)
    with start_tree(group("root", worker("a"), mid, intensity=5, period=30)) as system:
        m_pid = system.pid_of("m")
        kill_and_wait_restart(system, "x")
        settle(system)
        status = system.status()
        assert system.pid_of("m") != m_pid  # mid gave up too, so root restarted all of it
        events = status.events
        assert any(e.startswith("leaf: x escalated") for e in events)
        assert any(e.startswith("mid: leaf escalated") for e in events)
        assert any(e.startswith("root: mid restarting") for e in events)
        assert status.restarts == {"mid": 1}
        assert not status.halted
