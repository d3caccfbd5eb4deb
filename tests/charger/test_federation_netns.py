"""A park whose hosts have addresses of their own: three network namespaces on one bridge, each running
``python -m charger.boot park.yaml --host NAME``. Cutting one cabinet's link makes the leader lose it
within seconds; bringing the link back binds it again and the energy manager leases it again.

Needs root and ``ip netns``; skipped otherwise. The namespaces, the bridge and the veth pairs are
created here under unique names and removed in ``finally``; every boot process is found again by its
run token and none may survive."""

from __future__ import annotations

import json
import os
import random
import secrets
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from charger.processes import TOKEN_VARIABLE, kill_all, token_processes, wait_until_gone
from charger.testing import free_port

T = TypeVar("T")
HOSTS = ("leader", "box-a", "box-b")


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30, check=check)


def _netns_usable() -> bool:
    if os.geteuid() != 0:
        return False
    probe = f"chgprobe{os.getpid()}"
    try:
        if _ip("netns", "add", probe, check=False).returncode != 0:
            return False
        return _ip("netns", "exec", probe, "ip", "link", "set", "lo", "up", check=False).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False
    finally:
        _ip("netns", "del", probe, check=False)


pytestmark = pytest.mark.skipif(not _netns_usable(), reason="needs root and working network namespaces")


class Net:
    """A hub namespace with a bridge, and one namespace per host on a veth pair into it."""

    def __init__(self) -> None:
        tag = f"{os.getpid() % 1000:03d}{random.randrange(100):02d}"
        self.subnet = f"10.{random.randrange(160, 250)}.{random.randrange(1, 250)}"
        self.hub = f"chg{tag}hub"
        self.ns = {host: f"chg{tag}{host[-1]}" for host in HOSTS}  # leader -> ...r, box-a -> ...a
        self.veth = {host: f"cv{tag}{host[-1]}" for host in HOSTS}  # the end inside the host's namespace
        self.address = {host: f"{self.subnet}.{i + 1}" for i, host in enumerate(HOSTS)}
        self.made: list[str] = []

    def create(self) -> None:
        for ns in (self.hub, *self.ns.values()):
            _ip("netns", "add", ns)
            self.made.append(ns)
            _ip("-n", ns, "link", "set", "lo", "up")
        _ip("-n", self.hub, "link", "add", "br0", "type", "bridge")
        _ip("-n", self.hub, "link", "set", "br0", "up")
        for host in HOSTS:
            inner, outer = self.veth[host], f"{self.veth[host]}h"
            _ip("-n", self.hub, "link", "add", outer, "type", "veth", "peer", "name", inner, "netns", self.ns[host])
            _ip("-n", self.hub, "link", "set", outer, "master", "br0", "up")
            _ip("-n", self.ns[host], "addr", "add", f"{self.address[host]}/24", "dev", inner)
            _ip("-n", self.ns[host], "link", "set", inner, "up")

    def link(self, host: str, up: bool) -> None:
        _ip("-n", self.ns[host], "link", "set", self.veth[host], "up" if up else "down")

    def remove(self) -> None:
        for ns in reversed(self.made):  # deleting a namespace deletes the veth ends and the bridge in it
            _ip("netns", "del", ns, check=False)


PARK = """
site: park-netns
hosts:
  leader: {{address: {leader}, admin_port: {port}, leader: true}}
  box-a: {{address: {box_a}, admin_port: {port}}}
  box-b: {{address: {box_b}, admin_port: {port}}}
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
  api:
    type: ControlApi
    config: {{host: {leader}, port: {api}}}
    connections: {{evse: [evse-a, evse-b], rig: [rig-a, rig-b], energy: [energy]}}
  rig-a: {{type: SilRig, config: {{connectors: [{{board_link: board-a.pty}}]}}}}
  board-a: {{type: BoardDriver, config: {{port: board-a.pty}}}}
  evse-a: {{type: EvseManager, config: {{connector_id: 1}}, connections: {{board: [board-a]}}}}
  rig-b: {{type: SilRig, config: {{connectors: [{{board_link: board-b.pty}}]}}}}
  board-b: {{type: BoardDriver, config: {{port: board-b.pty}}}}
  evse-b: {{type: EvseManager, config: {{connector_id: 1}}, connections: {{board: [board-b]}}}}
supervision:
  name: root
  intensity: 10
  period: 10
  children:
    - {{actor: energy, host: leader}}
    - {{actor: api, host: leader}}
    - {{supervisor: cabinet-a, host: box-a, children: [rig-a, board-a, evse-a]}}
    - {{supervisor: cabinet-b, host: box-b, children: [rig-b, board-b, evse-b]}}
"""


class Boxes:
    """The three ``charger.boot --host`` processes, each in its host's namespace."""

    def __init__(self, net: Net, state: Path, api_port: int) -> None:
        self.net, self.state = net, state
        self.url = f"ws://{net.address['leader']}:{api_port}"
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.tokens: dict[str, str] = {}

    def start(self, host: str) -> None:
        token = uuid.uuid4().hex
        env = {**os.environ, TOKEN_VARIABLE: token, "THESPIAN_BASE_IPADDR": self.net.address[host]}
        cmd = [
            *("ip", "netns", "exec", self.net.ns[host]),
            *(sys.executable, "-m", "charger.boot", str(self.state / "park.yaml"), "--host", host),
            *("--site-secret", str(self.state / "site.key"), "--no-view", "--log-level", "INFO"),
        ]
        with open(self.state / f"{host}.out", "ab") as out:
            self.procs[host] = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=self.state)
        self.tokens[host] = token

    def stop_all(self) -> list[int]:
        """Stop every box cleanly (SIGINT), then kill by PID whatever is left; returns the leftovers."""
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        left = wait_until_gone(self.leftovers, timeout=10.0)
        kill_all(left)
        return left

    def leftovers(self) -> list[int]:
        return [pid for token in self.tokens.values() for pid in token_processes(token)]

    def ctl(self, method: str) -> Any:
        ns = self.net.ns["leader"]
        cmd = ["ip", "netns", "exec", ns, sys.executable, "-m", "charger.ctl", "--url", self.url, "call", method]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)  # ctl starts no actors
        return json.loads(done.stdout) if done.returncode == 0 else None

    def connector(self, evse: str) -> dict[str, Any]:
        return next((c for c in self.ctl("connectors.status") or [] if c["connector"] == evse), {})

    def leased(self, evse: str) -> bool:
        return "energy" in (self.connector(evse).get("leases") or {})

    def tails(self, lines: int = 15) -> str:
        """The end of every box's output, for a failure message."""
        out = []
        for host in self.procs:
            text = (self.state / f"{host}.out").read_text(errors="replace").splitlines()[-lines:]
            out.append(f"\n--- {host} ---\n" + "\n".join(text))
        return "".join(out)

    def remote(self) -> dict[str, str]:
        return (self.ctl("system.status") or {}).get("remote", {})


def wait(check: Callable[[], T], what: str, timeout: float, boxes: Boxes | None = None) -> T:
    deadline = time.monotonic() + timeout
    while not (result := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s" + (boxes.tails() if boxes else ""))
        time.sleep(0.5)
    return result


@pytest.fixture
def boxes(tmp_path: Path) -> Iterator[Boxes]:
    net = Net()
    try:
        net.create()
        api = free_port()
        text = PARK.format(
            leader=net.address["leader"], box_a=net.address["box-a"], box_b=net.address["box-b"], port=1900, api=api
        )
        (tmp_path / "park.yaml").write_text(textwrap.dedent(text))
        (tmp_path / "site.key").write_text(secrets.token_hex(32))
        (tmp_path / "site.key").chmod(0o600)
        boxes = Boxes(net, tmp_path, api)
        try:
            yield boxes
        finally:
            left = boxes.stop_all()
            assert not left, f"processes survived the park: {left}"
    finally:
        net.remove()


def test_a_cabinet_cut_off_is_lost_within_seconds_and_leased_again_when_its_link_returns(boxes: Boxes) -> None:
    for host in HOSTS:  # every host on its own address, all with the same admin port
        boxes.start(host)
    for evse in ("evse-a", "evse-b"):
        wait(lambda e=evse: boxes.leased(e), f"{evse} leased by the leader's energy manager", timeout=90, boxes=boxes)
    remote = boxes.remote()
    assert {name: remote.get(name) for name in ("evse-a", "rig-a", "evse-b", "rig-b")} == {
        "evse-a": "box-a",
        "rig-a": "box-a",
        "evse-b": "box-b",
        "rig-b": "box-b",
    }

    cut_at = time.monotonic()
    boxes.net.link("box-b", up=False)
    wait(lambda: "evse-b" not in boxes.remote(), "box-b lost by the leader", timeout=30, boxes=boxes)
    lost_s = time.monotonic() - cut_at
    assert boxes.connector("evse-b")["state"] == "Unavailable"
    assert boxes.leased("evse-a")  # the rest of the park carries on

    back_at = time.monotonic()
    boxes.net.link("box-b", up=True)
    wait(lambda: boxes.remote().get("evse-b") == "box-b", "box-b bound again at the leader", timeout=120, boxes=boxes)
    wait(lambda: boxes.leased("evse-b"), "box-b's EVSE leased again", timeout=60, boxes=boxes)
    print(f"\ncut-off cabinet lost after {lost_s:.1f} s; bound again {time.monotonic() - back_at:.1f} s after link up")
