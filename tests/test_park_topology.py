"""Park topologies: hosts and what each runs, and every mistake in them reported as file:line:col."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from charger.boot import main
from charger.federation import HOST_CAPABILITY, host_plan
from charger.topology import Problem, TopologyError, load_topology

PARK = Path(__file__).parents[1] / "topology" / "park.yaml"

# A small park: the energy manager on the leader, one connector on box-a. Lines matter below.
BASE = """\
site: p
hosts:
  leader: {address: 127.0.0.1, admin_port: 1950, leader: true}
  box-a: {address: 127.0.0.1, admin_port: 1951}
actors:
  rig: {type: SilRig}
  board: {type: BoardDriver, config: {port: b.pty}}
  evse:
    type: EvseManager
    connections: {board: [board]}
  energy:
    type: EnergyManager
    config: {nodes: [{name: grid, current_limit_a: 32}], evses: {evse: {node: grid}}}
    connections: {evse: [evse]}
supervision:
  name: root
  children:
    - energy
    - {supervisor: cab, host: box-a, children: [rig, board, evse]}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "park.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def problems(path: Path) -> list[Problem]:
    with pytest.raises(TopologyError) as info:
        load_topology(path)
    return info.value.problems


def assert_problems(path: Path, expected: list[tuple[int, int, str]]) -> None:
    found = problems(path)
    listing = "\n".join(map(str, found))
    assert len(found) == len(expected), listing
    for problem, (line, col, phrase) in zip(found, expected, strict=True):
        assert str(problem).startswith(f"{path}:{line}:{col}: "), listing
        assert phrase in problem.message, listing


def test_the_shipped_park_puts_the_energy_manager_on_the_leader_and_stations_on_their_boxes() -> None:
    park = load_topology(PARK)
    assert list(park.hosts) == ["leader", "box-a", "box-b"]
    assert park.leader is not None and park.leader.name == "leader"
    assert park.actors_on("leader") == ["energy", "api"]
    assert {"evse-a1", "evse-a2", "board-a1", "rig-a"} <= set(park.actors_on("box-a"))
    assert park.host_of("evse-b2") == "box-b" and park.host_of("energy") == "leader"
    assert {a for h in park.hosts for a in park.actors_on(h)} == set(park.actors)  # each actor on exactly one host
    box = park.tree_for("box-a")
    assert box.id == "root" and [c.id for c in box.children] == ["cabinet-a"]
    ports = {(h.address, h.admin_port) for h in park.hosts.values()}
    assert len(ports) == 3


def test_a_member_joins_the_leaders_convention_and_the_leader_invites_every_member(tmp_path: Path) -> None:
    park = load_topology(write(tmp_path, BASE))
    member = host_plan(park, "box-a", state_dir=str(tmp_path / "a"))
    assert member.capabilities["Convention Address.IPv4"] == ("127.0.0.1", 1950)
    assert member.capabilities[HOST_CAPABILITY] == "box-a"
    assert member.capabilities["AllowRemoteActorSources"] == "No"
    assert (member.admin_port, member.bind) == (1951, "127.0.0.1")
    leader = host_plan(park, "leader")
    assert "Convention Address.IPv4" not in leader.capabilities
    assert leader.federation is not None
    assert leader.federation.children[0].config["members"] == {"box-a": "127.0.0.1:1951"}
    assert leader.state_dir.endswith("/leader")  # boxes sharing a disk never share a journal


def test_connections_may_cross_hosts_only_where_the_requirement_allows_it(tmp_path: Path) -> None:
    text = BASE.replace(
        "- {supervisor: cab, host: box-a, children: [rig, board, evse]}",
        "- {supervisor: cab, host: box-a, children: [rig, evse]}\n    - board",
    )
    path = write(tmp_path, text)
    assert_problems(
        path,
        [(10, 27, "evse runs on host box-a and board on leader, but EvseManager's 'board' must be on the same host")],
    )


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            "host: box-a, children",
            "host: box-c, children",
            [(19, 31, "there is no host named 'box-c' (hosts: leader, box-a)")],
        ),
        (
            "children: [rig, board, evse]}",
            "children: [rig, board, {actor: evse, host: box-a}]}",
            [(19, 81, "host can only be set on the root supervisor's children")],
        ),
        (
            "box-a: {address: 127.0.0.1, admin_port: 1951}",
            "box-a: {address: 127.0.0.1, admin_port: 1950}",
            [(4, 43, "admin port 1950 on 127.0.0.1 is already host leader's")],
        ),
        (
            "box-a: {address: 127.0.0.1, admin_port: 1951}",
            "box-a: {address: 127.0.0.1, admin_port: 1951, leader: true}",
            [(4, 57, "only one leader per park (leader is)")],
        ),
        ("admin_port: 1950, leader: true}", "admin_port: 1950}", [(3, 3, "no host is the leader")]),
        ("box-a: {address: 127.0.0.1,", "box-a: {address: 0.0.0.0,", [(4, 20, "never all interfaces")]),
        (
            "site: p\n",
            "site: p\nsystem: {bind: 127.0.0.1}\n",
            [(2, 10, "system.bind: a park gives each host its own address")],
        ),
        (
            "site: p\n",
            "site: p\nfederation: {heartbeat_s: 2, dead_after_s: 1}\n",
            [(2, 44, "dead_after_s must exceed heartbeat_s")],
        ),
    ],
)
def test_park_mistakes_are_located(tmp_path: Path, old: str, new: str, expected: list[tuple[int, int, str]]) -> None:
    assert old in BASE
    assert_problems(write(tmp_path, BASE.replace(old, new)), expected)


def test_a_host_without_a_hosts_section_is_an_error(tmp_path: Path) -> None:
    hosts = BASE[BASE.index("hosts:") : BASE.index("actors:")]
    text = BASE.replace(hosts, "")
    assert_problems(write(tmp_path, text), [(16, 31, "host 'box-a' but the topology declares no hosts")])


def test_boot_takes_the_host_to_run_and_refuses_an_unknown_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([str(PARK), "--check", "--host", "box-a"]) == 0
    assert "host box-a runs 7" in capsys.readouterr().out
    assert main([str(PARK), "--check", "--host", "box-z"]) == 2
    assert "--host box-z: unknown host (hosts: leader, box-a, box-b)" in capsys.readouterr().err
    assert main([str(PARK), "--duration", "1"]) == 2  # a park needs --host to know which box this is
    assert "give --host NAME" in capsys.readouterr().err
    site = Path(__file__).parents[1] / "topology" / "site.yaml"
    assert main([str(site), "--check", "--host", "box-a"]) == 2
    assert "the topology declares no hosts" in capsys.readouterr().err
