"""Federation: the hosts of a charging park share their registries, and notice a dead host in seconds.

Every host of a park (``hosts:`` in the topology) runs one actor system; the members join the leader's
Thespian convention (``Convention Address.IPv4``), and the leader pre-registers every member, so a
restarted member is invited back at once instead of after Thespian's restart period. Each host also
runs one `Federation` actor, started by its kernel before the host's own tree:

- It publishes its address as the actor system's ``charger_federation`` capability. The convention
  hands every system's capabilities to the others, so a member learns where the leader's federation
  actor is as soon as it joins (and the leader learns the member's) without any fixed port.
- It tells the other side which names this host runs (`FederationHello`, then `FederationUpdate` after
  every change, addresses beside), and tells its own kernel what the other hosts run (`HostNames`).
  The leader relays: a member sees the names of the leader and of every other live member.
- A member beats (`FederationBeat`) to the leader every ``heartbeat_s``; a host silent for
  ``dead_after_s`` is lost (`HostLost`): every name it ran is unbound, so calls to it fail fast with
  `Unavailable` and the energy manager plans without it. Thespian's own detection takes 22 minutes.
  At most one beat is in flight, so a partitioned peer never gets 20 frames queued towards it (Thespian
  would then stall this actor's other traffic). A beat the leader does not recognise (it declared the
  member dead, or the member restarted) makes the member say hello again, which binds its names again.

Which actor drives an EVSE after a leader restart is not decided here: leases carry a fence
(`GrantLimitLease.fence`), and an EVSE refuses an older energy-manager instance (DESIGN §8).
"""

from __future__ import annotations

import os
import time
from collections.abc import Generator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, ClassVar

from charger.behaviour import Behaviour, Pending, handles
from charger.errors import CallError, Rejected
from charger.kernel import FEDERATION_NAME
from charger.lifecycle import HostLost, HostNames, LocalNames, WatchLocalNames
from charger.messages import message
from charger.runtime import Attached
from charger.supervisors.spec import ChildKind, ChildSpec, SupFlags
from charger.topology import Topology

__all__ = [
    "FEDERATION_ACTOR",
    "Federation",
    "FederationBeat",
    "FederationBeatAck",
    "FederationHello",
    "FederationUpdate",
    "HostPlan",
    "federation_spec",
    "host_plan",
    "tune_convention",
]

FEDERATION_ACTOR = "charger.federation:Federation"
CAPABILITY = "charger_federation"
HOST_CAPABILITY = "charger_host"
_REGREET_S = 10.0
SITE_CAPABILITY = "charger_site"


@message
class FederationHello:
    """Host -> host: who I am and which names I vouch for (addresses beside); answered in kind.

    A member vouches for its own names; the leader for its own and every live member's but the
    receiver's, so the leader's view replaces everything a member knew about other hosts.
    """

    host: str
    epoch: int
    """Changes at every start of the sender's federation actor: a restarted host is a new one."""
    hosts: dict[str, list[str]]
    """Host -> the names it runs now."""


@message
class FederationUpdate:
    """Like `FederationHello`, one way: the sender's names changed."""

    host: str
    epoch: int
    hosts: dict[str, list[str]]


@message
class FederationBeat:
    """Member -> leader: I am alive (the application heartbeat)."""

    host: str
    epoch: int


@message
class FederationBeatAck:
    """Leader -> member. `known` false: the leader has no live record of this member; say hello again."""

    known: bool


@dataclass(slots=True)
class _Peer:
    address: Any
    epoch: int
    last_seen: float
    names: dict[str, Any] = field(default_factory=dict)


class Federation(Behaviour):
    description = "Shares this host's registry with the park's other hosts and watches their liveness."
    config_schema: ClassVar = {
        "type": "object",
        "additionalProperties": False,
        "required": ["site", "host", "leader"],
        "properties": {
            "site": {"type": "string", "minLength": 1},
            "host": {"type": "string", "minLength": 1},
            "leader": {"type": "string", "minLength": 1, "description": "The host that runs the convention."},
            "members": {
                "type": "object",
                "additionalProperties": {"type": "string"},
                "default": {},
                "description": "Member host -> 'address:admin_port' (the leader pre-registers them).",
            },
            "heartbeat_s": {"type": "number", "exclusiveMinimum": 0, "default": 1.0},
            "dead_after_s": {"type": "number", "exclusiveMinimum": 0, "default": 3.0},
            "exclude": {"type": "array", "items": {"type": "string"}, "default": []},
        },
    }

    def init(self) -> Generator[Pending, Any, None]:
        cfg = self.config
        self.site: str = cfg["site"]
        self.me: str = cfg["host"]
        self.leader: str = cfg["leader"]
        self.is_leader = self.me == self.leader
        self.epoch = time.time_ns()
        self.beat_s: float = cfg["heartbeat_s"]
        self.dead_after: float = cfg["dead_after_s"]
        self.local: dict[str, Any] = {}
        self.peers: dict[str, _Peer] = {}
        """Leader: live members. Member: the leader, while it answers."""
        self.leader_address: Any = None
        self.view: dict[str, dict[str, Any]] = {}
        """Member: host -> names (addresses) the leader vouched for last."""
        self.beating = False
        self.greeting: set[str] = set()
        self.greeted: dict[str, Any] = {}
        """Host -> the federation address we greeted there last."""
        # Capability first: the convention messages that follow carry it to the other hosts.
        self._rt.publish_capability(CAPABILITY, self._rt.myAddress)
        self._rt.watch_convention()
        if self.is_leader:
            for host_port in cfg["members"].values():
                self._rt.pre_register(host_port)
        self.start_timer(min(self.beat_s, self.dead_after / 2), self._tick, repeat=True)
        # The kernel registers us only once init has returned, and serves our names only then.
        self.start_timer(0.01, lambda: self.run_task(self._watch_local()))
        return
        yield  # a generator: the kernel waits for init like for any child

    def _watch_local(self) -> Generator[Pending, Any, None]:
        watch = WatchLocalNames(exclude=list(self.config["exclude"]))
        while True:
            try:
                reply = yield self._rt.call_address(self._rt._registry, watch, 5.0)
            except CallError as exc:
                self.log.debug("%s: kernel not ready for us yet: %s", self.name, exc)
                yield self.sleep(0.1)
                continue
            self._take_local(reply)
            self._local_changed()  # a peer greeted before we knew our names has heard none yet
            return

    # --- this host's names ---------------------------------------------------------------------------
    @handles(LocalNames)
    def on_local_names(self, msg: LocalNames) -> None:
        if self._rt.current_reply_to != self._rt._registry:
            return  # only our kernel says what runs here
        self._take_local(Attached(msg, self._rt.current_addresses))
        self._local_changed()

    def _local_changed(self) -> None:
        if self.is_leader:
            self._relay(except_host=None)
        elif self.leader in self.peers:
            self._send_update(self.peers[self.leader].address, {self.me: self.local})

    def _take_local(self, reply: Any) -> None:
        body, addresses = (reply.body, reply.addresses) if isinstance(reply, Attached) else (reply, {})
        self.local = {n: addresses[n] for n in body.names if addresses.get(n) is not None}

    # --- the convention: who joined, who left -------------------------------------------------------------
    def _convention_update(self, caps: dict[str, Any], added: bool) -> None:
        host, address = caps.get(HOST_CAPABILITY), caps.get(CAPABILITY)
        if not isinstance(host, str) or host == self.me:
            return
        if caps.get(SITE_CAPABILITY) != self.site:
            self.log.warning("%s: ignored a system of another site (%r)", self.name, caps.get(SITE_CAPABILITY))
            return
        if not added:
            if host in self.peers:
                self._lose(host, "left the convention")
            return
        expected = host in self.config["members"] if self.is_leader else host == self.leader
        if address is None or not expected or host in self.peers or self.greeted.get(host) == address:
            return
        self.greeted[host] = address  # a new federation actor there (or a new host): greet it once
        if not self.is_leader:
            self.leader_address = address
        self._greet(host, address)

    # --- hello: exchange names ----------------------------------------------------------------------
    def _greet(self, host: str, address: Any) -> None:
        if host in self.greeting:
            return
        self.greeting.add(host)
        hello = FederationHello(host=self.me, epoch=self.epoch, hosts=self._names_for(host))
        pending = self._rt.call_address(address, self._attach(hello), self.dead_after)

        def answered(reply: Any) -> None:
            self.greeting.discard(host)
            body, addresses = (reply.body, reply.addresses) if isinstance(reply, Attached) else (reply, {})
            if isinstance(body, FederationHello) and body.host == host:
                self._heard(body, addresses, address)

        def failed(exc: BaseException) -> None:
            self.greeting.discard(host)
            self.log.info("%s: hello to %s failed: %s", self.name, host, exc)
            # Greet that address again later, not at once: towards a partitioned host every attempt
            # leaves a frame queued in Thespian, and 20 of them would stall all our traffic.
            self.start_timer(_REGREET_S, lambda: self._forget_greeting(host, address))

        pending.then(answered, failed)

    def _forget_greeting(self, host: str, address: Any) -> None:
        if self.greeted.get(host) == address:
            del self.greeted[host]

    @handles(FederationHello)
    def on_hello(self, msg: FederationHello) -> Attached:
        self._heard(msg, self._rt.current_addresses, self._rt.current_reply_to)
        return self._attach(FederationHello(host=self.me, epoch=self.epoch, hosts=self._names_for(msg.host)))

    @handles(FederationUpdate)
    def on_update(self, msg: FederationUpdate) -> None:
        peer = self.peers.get(msg.host)
        if peer is None or peer.epoch != msg.epoch:
            return  # not a live peer: it will say hello when its beat is not recognised
        self._heard(msg, self._rt.current_addresses, self._rt.current_reply_to)

    def _heard(self, msg: FederationHello | FederationUpdate, addresses: dict[str, Any], sender: Any) -> None:
        if self.is_leader and msg.host not in self.config["members"]:
            raise Rejected(f"{msg.host!r} is not a member host of site {self.site!r}")
        if not self.is_leader and msg.host != self.leader:
            raise Rejected(f"{msg.host!r} is not the leader of site {self.site!r}")
        fresh = msg.host not in self.peers
        peer = self.peers.setdefault(msg.host, _Peer(sender, msg.epoch, time.monotonic()))
        peer.address, peer.epoch, peer.last_seen = sender, msg.epoch, time.monotonic()
        if fresh:
            self.log.info("%s: host %s is up", self.name, msg.host)
        if self.is_leader:
            names = msg.hosts.get(msg.host, [])
            peer.names = {n: addresses[n] for n in names if addresses.get(n) is not None}
            self._tell_kernel(msg.host, peer.names)
            self._relay(except_host=msg.host)
        else:
            self.leader_address = sender
            view = {h: {n: addresses[n] for n in ns if addresses.get(n) is not None} for h, ns in msg.hosts.items()}
            view.pop(self.me, None)
            for host in set(self.view) - set(view):
                self._rt.cast_address(self._rt._registry, HostLost(host=host))
            for host, found in view.items():
                self._tell_kernel(host, found)
            self.view = view

    def _names_for(self, receiver: str) -> dict[str, list[str]]:
        return {host: list(names) for host, names in self._vouched(receiver).items()}

    def _vouched(self, receiver: str) -> dict[str, dict[str, Any]]:
        if not self.is_leader:
            return {self.me: self.local}
        hosts = {self.me: self.local}
        hosts.update({h: p.names for h, p in self.peers.items() if h != receiver})
        return hosts

    def _attach(self, msg: FederationHello | FederationUpdate) -> Attached:
        addresses = {n: a for names in self._vouched_from(msg).values() for n, a in names.items()}
        return Attached(msg, addresses)

    def _vouched_from(self, msg: FederationHello | FederationUpdate) -> dict[str, dict[str, Any]]:
        everything = {self.me: self.local, **{h: p.names for h, p in self.peers.items()}}
        return {h: everything.get(h, {}) for h in msg.hosts}

    def _send_update(self, address: Any, hosts: dict[str, dict[str, Any]]) -> None:
        update = FederationUpdate(host=self.me, epoch=self.epoch, hosts={h: list(n) for h, n in hosts.items()})
        self._rt.cast_address(address, self._attach(update))

    def _relay(self, except_host: str | None) -> None:
        """Leader: every live member but `except_host` gets the names it does not run itself."""
        for host, peer in self.peers.items():
            if host != except_host:
                self._send_update(peer.address, self._vouched(host))

    def _tell_kernel(self, host: str, names: dict[str, Any]) -> None:
        self._rt.cast_address(self._rt._registry, Attached(HostNames(host=host, names=list(names)), dict(names)))

    # --- liveness -----------------------------------------------------------------------------------
    @handles(FederationBeat)
    def on_beat(self, msg: FederationBeat) -> FederationBeatAck:
        peer = self.peers.get(msg.host)
        if not self.is_leader or peer is None or peer.epoch != msg.epoch:
            return FederationBeatAck(known=False)
        peer.last_seen = time.monotonic()
        return FederationBeatAck(known=True)

    def _tick(self) -> None:
        now = time.monotonic()
        for host, peer in list(self.peers.items()):
            if now - peer.last_seen > self.dead_after:
                self._lose(host, f"silent for {now - peer.last_seen:.1f} s")
        if not self.is_leader and self.leader_address is not None and not self.beating:
            self._beat()
        expected = set(self.config["members"]) if self.is_leader else {self.leader}
        if expected - set(self.peers):  # someone is missing: ask the admin for the members' capabilities again
            self._rt.watch_convention(again=True)

    def _beat(self) -> None:
        self.beating = True
        beat = FederationBeat(host=self.me, epoch=self.epoch)
        address = self.leader_address
        pending = self._rt.call_address(address, beat, self.dead_after)

        def answered(ack: Any) -> None:
            self.beating = False
            peer = self.peers.get(self.leader)
            if isinstance(ack, FederationBeatAck) and ack.known and peer is not None:
                peer.last_seen = time.monotonic()
            else:  # the leader lost us (or we lost it): say hello, which binds every name again
                self._greet(self.leader, address)

        def failed(_exc: BaseException) -> None:
            self.beating = False

        pending.then(answered, failed)

    def _lose(self, host: str, why: str) -> None:
        self.peers.pop(host, None)
        self.log.warning("%s: host %s is lost (%s); its actors are unavailable", self.name, host, why)
        if self.is_leader:
            self._rt.cast_address(self._rt._registry, HostLost(host=host))
            self._relay(except_host=None)
        else:
            for lost in self.view:
                self._rt.cast_address(self._rt._registry, HostLost(host=lost))
            self.view = {}


@dataclass(frozen=True)
class HostPlan:
    """What one process runs: one host's share of a park (or, with `host` empty, a whole site)."""

    host: str
    root: ChildSpec
    federation: ChildSpec | None
    admin_port: int
    bind: str
    capabilities: dict[str, Any]
    state_dir: str
    actors: int


def host_plan(topology: Topology, host_name: str, *, state_dir: str | None = None) -> HostPlan:
    """How `host_name` of the park runs: its share of the tree, the federation actor before it, the
    capabilities that join the leader's convention, and its state directory (default
    ``<state_dir>/<host>``, so boxes that share a disk never share a journal)."""
    host = topology.hosts[host_name]
    leader = topology.leader
    assert leader is not None  # the loader insists on one
    root = topology.tree_for(host.name)
    caps: dict[str, Any] = {HOST_CAPABILITY: host.name, SITE_CAPABILITY: topology.site, "AllowRemoteActorSources": "No"}
    if not host.leader:
        caps["Convention Address.IPv4"] = (leader.address, leader.admin_port)
    config = {
        "site": topology.site,
        "host": host.name,
        "leader": leader.name,
        "members": {h.name: f"{h.address}:{h.admin_port}" for h in topology.hosts.values() if not h.leader},
        "heartbeat_s": topology.heartbeat_s,
        "dead_after_s": topology.dead_after_s,
        "exclude": [FEDERATION_NAME, root.id],
    }
    where = os.path.abspath(state_dir or os.path.join(topology.state_dir or "state", host.name))
    actors = len(topology.actors_on(host.name))
    return HostPlan(host.name, root, federation_spec(config), host.admin_port, host.address, caps, where, actors)


def federation_spec(config: dict[str, Any]) -> ChildSpec:
    """The kernel's federation subtree: the actor under a small supervisor of its own, so a crash
    restarts it a few times before the host halts."""
    worker = ChildSpec(id=FEDERATION_NAME, actor=FEDERATION_ACTOR, config=config)
    flags = SupFlags(intensity=5, period=30.0)
    return ChildSpec(id="federation-sup", kind=ChildKind.SUPERVISOR, flags=flags, children=(worker,), own_process=False)


def tune_convention(reregistration_s: float = 10.0, restart_s: float = 5.0, miss_max: int = 3) -> None:
    """Shorten Thespian's convention periods (defaults: 7 min 22 s, 3 min 22 s, 3 misses) for this
    process and every admin it forks. Liveness comes from the heartbeat; these only decide how soon
    a member retries a leader it lost and how soon Thespian itself gives up on a silent member."""
    from thespian.system.admin import convention

    convention.CONVENTION_REREGISTRATION_PERIOD = timedelta(seconds=reregistration_s)
    convention.CONVENTION_RESTART_PERIOD = timedelta(seconds=restart_s)
    convention.CONVENTION_REGISTRATION_MISS_MAX = miss_max
