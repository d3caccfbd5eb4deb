"""Names, not addresses: dependents are rebound after a restart, a call to a restarting actor fails
fast, and a killed supervisor takes its whole subtree with it (no orphans)."""

from __future__ import annotations

import os
import signal
import time

from tests.conftest import group, worker
from tests.supervisors.test_strategies import kill_and_wait_restart, settle, wait_for
from tests.support.probes import Relay, read_log


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except FileNotFoundError:
        return False


def test_sigkilled_supervisor_leaves_no_orphans(start_tree, tmp_path):
    sub = group("sub", worker("x"), group("deeper", worker("y")))
    with start_tree(group("root", sub)) as system:
        old = {n: system.pid_of(n) for n in ("sub", "x", "deeper", "y")}
        os.kill(old["sub"], signal.SIGKILL)
        wait_for(lambda: not any(_alive(old[n]) for n in ("x", "deeper", "y")), timeout=5, what="subtree to die")
        settle(system)
        new = {n: system.pid_of(n) for n in old}
        assert all(new[n] != old[n] for n in old)
        everything = set(system.processes())
        assert everything and not everything & set(old.values())


def test_dependent_is_rebound_after_the_peer_restarts(start_tree, tmp_path):
    root = group(
        "root", worker("peer"), worker("caller", actor="tests.support.probes:Caller", requires={"peer": ("peer",)})
    )
    with start_tree(root) as system:
        first = system.client.call("caller", Relay())
        assert first.ok and first.pid == system.pid_of("peer")
        new_pid = kill_and_wait_restart(system, "peer")
        result = wait_for(lambda: (r := system.client.call("caller", Relay())).ok and r, what="rebound call")
        assert result.pid == new_pid


def test_call_to_a_restarting_actor_fails_fast_with_unavailable(start_tree, tmp_path):
    # The peer takes 2 s to start, so after a kill there is a window where it is registered nowhere.
    root = group(
        "root",
        worker("peer", config={"init_delay": 2.0}),
        worker("caller", actor="tests.support.probes:Caller", requires={"peer": ("peer",)}),
    )
    with start_tree(root) as system:
        os.kill(system.pid_of("peer"), signal.SIGKILL)
        wait_for(lambda: "peer" not in system.status().actors, what="peer unregistered")
        started = time.monotonic()
        result = system.client.call("caller", Relay(timeout=30.0))
        answered_in = time.monotonic() - started
        assert not result.ok and result.code == "unavailable"
        # not a timing assertion: a 30 s call timeout would have said "timeout"
        assert answered_in < 30.0
        wait_for(lambda: system.client.call("caller", Relay()).ok, what="peer back")


def test_orderly_shutdown_stops_in_reverse_start_order(start_tree, tmp_path):
    root = group("root", worker("a"), group("g", worker("b"), worker("c")), worker("d"))
    with start_tree(root) as system:
        system.pid_of("d")
    assert read_log(str(tmp_path), "starts.log") == ["a", "b", "c", "d"]
    assert read_log(str(tmp_path), "stops.log") == ["d", "c", "b", "a"]


def test_a_worker_that_ignores_shutdown_is_killed_after_its_timeout(start_tree, tmp_path):
    from tests.support.probes import Sleep

    root = group("root", worker("stuck", shutdown=0.5), worker("after"))
    with start_tree(root) as system:
        stuck = system.pid_of("stuck")
        system.client.cast("stuck", Sleep(seconds=60))
        time.sleep(0.2)
        t0 = time.monotonic()
        system.shutdown(timeout=30)
        assert not _alive(stuck)
        assert time.monotonic() - t0 < 30
