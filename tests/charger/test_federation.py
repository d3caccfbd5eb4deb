"""A park of three actor systems on loopback (leader + two cabinets), each with its own admin port and
the same site secret: the leader's energy manager leases EVSEs on the other hosts through the
convention; a cabinet killed outright is noticed by the heartbeat and planned without, comes back
and is leased again; after a leader restart only the new energy-manager instance drives the EVSEs."""

from __future__ import annotations

import contextlib
import secrets
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from charger.actors.charging import (
    ConnectorStatus,
    EnergyPlan,
    GetConnectorStatus,
    GetEnergyPlan,
    GrantLimitLease,
    PlugCar,
)

from charger.errors import CallError, Rejected, Unavailable
from charger.journal import Journal
from charger.lifecycle import HostLost, HostNames
from charger.runtime import Attached
from charger.testing import RunningSystem, free_port, running_host
from charger.topology import Topology, load_topology
from tests.conftest import group, worker

T = TypeVar("T")
STALE_A = 7.5
"""A current the plan never grants here (it plans whole amperes)."""

PARK = """
site: park-test
hosts:
  leader: {{address: 127.0.0.1, admin_port: {leader}, leader: true}}
  box-a: {{address: 127.0.0.1, admin_port: {box_a}}}
  box-b: {{address: 127.0.0.1, admin_port: {box_b}}}
federation: {{heartbeat_s: 0.5, dead_after_s: 3}}
actors:
  energy:
    type: EnergyManager
    config:
      nodes: [{{name: grid, current_limit_a: 63}}]
      evses: {{evse-a: {{node: grid}}, evse-b: {{node: grid}}}}
      horizon_slots: 4
      period_s: 1
    connections: {{evse: [evse-a, evse-b]}}
  rig-a: {{type: SilRig, config: {{connectors: [{{board_link: board-a.pty}}]}}}}
  board-a: {{type: BoardDriver, config: {{port: board-a.pty}}}}
  evse-a:
    type: EvseManager
    config: {{connector_id: 1, failsafe_current_a: 6}}
    connections: {{board: [board-a]}}
  rig-b: {{type: SilRig, config: {{connectors: [{{board_link: board-b.pty}}]}}}}
  board-b: {{type: BoardDriver, config: {{port: board-b.pty}}}}
  evse-b:
    type: EvseManager
    config: {{connector_id: 1, failsafe_current_a: 6}}
    connections: {{board: [board-b]}}
supervision:
  name: root
  intensity: 10
  period: 10
  children:
    - {{actor: energy, host: leader}}
    - {{supervisor: cabinet-a, host: box-a, children: [rig-a, board-a, evse-a]}}
    - {{supervisor: cabinet-b, host: box-b, children: [rig-b, board-b, evse-b]}}
"""


def wait(check: Callable[[], T | None], what: str, timeout: float = 60.0) -> T:
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(CallError):
            result = check()
            if result:
                return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(0.2)


class Park:
    """The park's three hosts, each an actor system of its own, started and stopped by the test."""

    def __init__(self, topology: Topology, state: Path, secret: Path) -> None:
        self.topology, self.state, self.secret = topology, state, secret
        self.hosts: dict[str, RunningSystem] = {}
        self._stacks: dict[str, contextlib.ExitStack] = {}

    def start(self, host: str) -> RunningSystem:
        stack = contextlib.ExitStack()
        log = str(self.state / f"{host}.log")
        self.hosts[host] = stack.enter_context(
            running_host(self.topology, host, state_dir=str(self.state / host), log_file=log, site_secret=self.secret)
        )
        self._stacks[host] = stack
        return self.hosts[host]

    def stop(self, host: str) -> None:
        self._stacks.pop(host).close()  # also proves that none of its processes survived

    def close(self) -> None:
        for host in reversed(list(self._stacks)):
            self.stop(host)

    @property
    def leader(self) -> RunningSystem:
        return self.hosts["leader"]

    def status(self, evse: str) -> ConnectorStatus:
        answer = self.leader.client.call(evse, GetConnectorStatus())  # from the leader, across the convention
        assert isinstance(answer, ConnectorStatus)
        return answer

    def plan(self) -> EnergyPlan:
        answer = self.leader.client.call("energy", GetEnergyPlan())
        assert isinstance(answer, EnergyPlan)
        return answer

    def amps(self, evse: str) -> float | None:
        return next((a.amps for a in self.plan().allocations if a.evse == evse), None)

    def fence(self) -> int:
        journal = Journal(str(self.state / "leader" / "energy.energy.db"))
        try:
            return int(journal.get("fence", 0))
        finally:
            journal.close()


@pytest.fixture
def park(tmp_path: Path) -> Iterator[Park]:
    text = PARK.format(leader=free_port(), box_a=free_port(), box_b=free_port())
    (tmp_path / "park.yaml").write_text(textwrap.dedent(text))
    secret = tmp_path / "site.key"
    secret.write_text(secrets.token_hex(32))
    secret.chmod(0o600)
    park = Park(load_topology(tmp_path / "park.yaml"), tmp_path, secret)
    try:
        yield park
    finally:
        park.close()


def test_a_park_leases_remote_evses_loses_a_dead_cabinet_and_fences_a_restarted_leader(park: Park) -> None:
    for host in ("leader", "box-a", "box-b"):
        park.start(host)
    remote = wait(lambda: (r := park.leader.status().remote).get("evse-b") and r, "the members' names at the leader")
    assert remote["evse-a"] == "box-a" and remote["evse-b"] == "box-b"
    assert "energy" not in remote  # the leader's own names are local there
    assert wait(lambda: park.hosts["box-a"].status().remote.get("energy"), "the leader's names at box-a") == "leader"

    for rig in ("rig-a", "rig-b"):  # a car on each cabinet, plugged from the leader
        park.leader.client.call(rig, PlugCar())
    for evse in ("evse-a", "evse-b"):
        wait(lambda e=evse: "energy" in park.status(e).leases, f"a lease from the leader's energy manager at {evse}")
        wait(lambda e=evse: (park.amps(e) or 0) > 0, f"{evse} planned with a car")

    # box-b loses power: every process of its actor system dies at once
    killed_at = time.monotonic()
    park.hosts["box-b"].kill()
    wait(lambda: "evse-b" not in park.leader.status().remote, "box-b's EVSE unbound at the leader", timeout=30)
    detected_s = time.monotonic() - killed_at
    with pytest.raises(Unavailable):
        park.status("evse-b")  # fails fast: no call waits on a dead host
    wait(lambda: park.amps("evse-b") == 0, "the plan without box-b's car")
    park.stop("box-b")

    rejoin_from = time.monotonic()
    park.start("box-b")  # the same state: its EVSE resumes from its journal
    wait(lambda: park.leader.status().remote.get("evse-b") == "box-b", "box-b back at the leader")
    rejoined_s = time.monotonic() - rejoin_from
    wait(lambda: "energy" in park.status("evse-b").leases, "box-b's EVSE leased again")
    print(f"\ndead cabinet noticed after {detected_s:.1f} s; restarted cabinet bound again after {rejoined_s:.1f} s")

    # The leader restarts (killed outright): its energy manager comes back with a higher fence.
    old_fence = park.fence()
    park.leader.kill()
    wait(lambda: "energy" not in park.hosts["box-a"].status().remote, "the lost leader noticed at box-a", 30)
    park.stop("leader")
    restarted_at = time.time()
    park.start("leader")
    assert park.fence() == old_fence + 1
    wait(lambda: park.leader.status().remote.get("evse-a") == "box-a", "box-a back under the new leader")
    # two decisions of the new instance, so its first leases have reached both EVSEs
    wait(lambda: park.plan().decided_at > restarted_at, "a decision of the new energy manager")
    first = park.plan().decided_at
    wait(lambda: park.plan().decided_at > first, "a second decision of the new energy manager")
    for evse in ("evse-a", "evse-b"):
        assert "energy" in park.status(evse).leases
        # what the old instance would still send (e.g. from behind a partition) is refused
        stale = GrantLimitLease(valid_until=time.time() + 60, amps=STALE_A, grantor="energy", fence=old_fence)
        with pytest.raises(Rejected, match="superseded"):
            park.leader.client.call(evse, stale)
        assert park.status(evse).leases["energy"] != STALE_A  # still the new instance's grant


def test_only_the_hosts_federation_actor_may_speak_for_other_hosts(start_tree: Any) -> None:
    """Anyone else telling the registry what another host runs would hijack a name: refused, nothing bound."""
    with start_tree(group("root", worker("probe"))) as system:
        probe = system.client.resolve("probe")
        claim = Attached(HostNames(host="box-z", names=["evse-z"]), {"evse-z": probe})
        with pytest.raises(Rejected, match="only federation"):
            system.client.call_address(system.kernel, claim)
        with pytest.raises(Rejected):
            system.client.call_address(system.kernel, HostLost(host="box-z"))
        with pytest.raises(Unavailable):
            system.client.resolve("evse-z")
        assert system.status().remote == {}
