"""Loading a topology file: which actors run, how they are wired, and how they are supervised.

`load_topology` reads a YAML topology (the format is in docs/topology.md) and checks all of it before
anything starts: the YAML, every key, each actor's type and config, every connection against the actor
types' interfaces, cycles among connections, and that the supervision tree places every actor exactly
once. It reports every problem it finds, each as ``file:line:col: message``, in one `TopologyError`.

Reading the YAML with positions is `charger.yamlsource`'s job; this module checks what it means.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import jsonschema

from charger.behaviour import Behaviour
from charger.catalog import UnknownActorType, load_actor_type
from charger.config import fill_defaults
from charger.interfaces import Requirement
from charger.supervisors.spec import ChildKind, ChildSpec, InvalidSpec, Restart, Strategy, SupFlags
from charger.yamlsource import Path, Pos, Problem, YamlSource, describe, dotted, prefix, short

__all__ = ["ActorInstance", "Host", "Problem", "Topology", "TopologyError", "load_topology"]

_T = TypeVar("_T")
_E = TypeVar("_E", bound=enum.Enum)
_Actors = dict[str, "ActorInstance"]
_Rule = tuple[Callable[[Any], bool], str]
"""A check of a value and what the message says was expected instead."""
_Wiring = dict[str, list[tuple[str, Pos]] | None]
"""Requirement id -> (instance name, where it is written); None where the value was unusable."""

_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")

_TOP_KEYS = ("site", "system", "hosts", "federation", "actors", "supervision")
_SYSTEM_KEYS = ("admin_port", "bind", "state_dir")
_HOST_KEYS = ("address", "admin_port", "leader")
_FEDERATION_KEYS = ("heartbeat_s", "dead_after_s")
_ACTOR_KEYS = ("type", "config", "connections")
_ROOT_KEYS = ("name", "strategy", "intensity", "period", "children")
_GROUP_KEYS = (
    "supervisor",
    "strategy",
    "intensity",
    "period",
    "children",
    "restart",
    "shutdown",
    "own_process",
    "host",
)
_WORKER_KEYS = ("actor", "restart", "shutdown", "host")
_ALL_INTERFACES = ("", "0.0.0.0", "::", "0:0:0:0:0:0:0:0")


class TopologyError(Exception):
    """The topology cannot be used. `problems` holds everything found, in file order."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems: list[Problem] = sorted(dict.fromkeys(problems), key=lambda p: (p.line, p.col))
        super().__init__("\n".join(map(str, self.problems)))


@dataclass(frozen=True, slots=True)
class ActorInstance:
    """An actor as the topology declares it, checked against its type."""

    name: str
    type: str
    """As written: a catalog name or ``module:Class``."""
    config: dict[str, Any]
    """Validated against the type's ``config_schema``, with its defaults filled in."""
    connections: dict[str, tuple[str, ...]]
    """Requirement id -> instance names; every requirement of the type is present, unwired ones empty."""


@dataclass(frozen=True, slots=True)
class Host:
    """One box of a park: its actor system listens on `address` (never all interfaces), `admin_port`."""

    name: str
    address: str
    admin_port: int
    leader: bool


@dataclass(frozen=True, slots=True)
class Topology:
    """A checked topology: the site's settings, its actors, and the supervision tree to start."""

    path: str
    site: str
    admin_port: int
    bind: str
    state_dir: str | None
    actors: dict[str, ActorInstance]
    """In file order."""
    root: ChildSpec
    """The root supervisor; its tree places every actor exactly once."""
    hosts: dict[str, Host] = dataclasses.field(default_factory=dict)
    """A park's boxes, in file order; empty for a single-box topology."""
    placement: dict[str, str] = dataclasses.field(default_factory=dict)
    """In a park: each of the root's children (by id) -> the host that runs it."""
    heartbeat_s: float = 1.0
    dead_after_s: float = 3.0

    @property
    def leader(self) -> Host | None:
        return next((h for h in self.hosts.values() if h.leader), None)

    def host_of(self, actor: str) -> str | None:
        """The host that runs `actor` (None for a single-box topology)."""
        for child in self.root.children:
            if any(spec.id == actor for spec in child.walk()):
                return self.placement.get(child.id)
        return None

    def tree_for(self, host: str) -> ChildSpec:
        """The root supervisor as `host` runs it: with only the children placed there."""
        if host not in self.hosts:
            raise KeyError(host)
        mine = tuple(c for c in self.root.children if self.placement.get(c.id) == host)
        return dataclasses.replace(self.root, children=mine)

    def actors_on(self, host: str) -> list[str]:
        return [s.id for c in self.tree_for(host).children for s in c.walk() if s.kind is ChildKind.WORKER]


def load_topology(path: str | os.PathLike[str]) -> Topology:
    """Read and check the topology at `path`. Raises `TopologyError` listing every problem found."""
    checker = _Checker(YamlSource(os.fspath(path)))
    topology = checker.run()
    if topology is None or checker.src.problems:
        raise TopologyError(checker.src.problems)
    return topology


@dataclass(slots=True)
class _Draft:
    """An actor as read, before its connections can be checked against the other actors."""

    name: str
    type_name: str
    cls: type[Behaviour] | None
    config: dict[str, Any]
    wiring: _Wiring


class _Checker:
    """Checks the data from a `YamlSource` and builds the `Topology`; problems go to the source."""

    def __init__(self, src: YamlSource) -> None:
        self.src = src
        self._groups: dict[str, Pos] = {}
        self._placed: dict[str, Pos] = {}
        self._hosts: dict[str, Host] = {}
        self._host_of: dict[str, str] = {}
        """Actor name -> host, in a park."""
        self._placement: dict[str, str] = {}
        self._wired_at: dict[tuple[str, str, str], Pos] = {}
        """(actor, requirement id, target) -> where the connection is written."""
        self._classes: dict[str, type[Behaviour] | None] = {}

    def run(self) -> Topology | None:
        node = self.src.parse()
        if node is None:
            return None
        top = self._mapping(self.src.convert(node, ()), (), _TOP_KEYS, required=("site", "actors", "supervision"))
        if top is None:
            return None
        site = self._field(top, (), "site", None, _SITE)
        system = self._mapping(top.get("system"), ("system",), _SYSTEM_KEYS, null_ok=True) or {}
        port = self._field(system, ("system",), "admin_port", 1900, _PORT)
        bind = self._field(system, ("system",), "bind", "127.0.0.1", _HOST)
        state_dir = self._field(system, ("system",), "state_dir", None, _DIR)
        self._hosts = self._park_hosts(top, system)
        fed = self._mapping(top.get("federation"), ("federation",), _FEDERATION_KEYS, null_ok=True) or {}
        beat = self._field(fed, ("federation",), "heartbeat_s", 1.0, _PERIOD)
        dead_after = self._field(fed, ("federation",), "dead_after_s", 3.0, _PERIOD)
        if beat is not None and dead_after is not None and dead_after <= beat:
            self.src.error(
                self.src.at(("federation", "dead_after_s")), "federation.dead_after_s must exceed heartbeat_s"
            )
        actors = self._wire(self._actors(top["actors"])) if "actors" in top else {}
        self._check_cycles(actors)
        root = self._supervision(top, actors) if "supervision" in top else None
        if root is not None and self._hosts:
            self._check_remote_connections(actors)
        if self.src.problems or site is None or root is None:
            return None
        if self._hosts:
            leader = next(h for h in self._hosts.values() if h.leader)
            port, bind = leader.admin_port, leader.address
        return Topology(
            self.src.file,
            site,
            port,
            bind,
            state_dir,
            actors,
            root,
            dict(self._hosts),
            dict(self._placement),
            beat,
            dead_after,
        )

    # --- a park: hosts and which actors each runs ---------------------------------------------------------
    def _park_hosts(self, top: dict[str, Any], system: dict[str, Any]) -> dict[str, Host]:
        if top.get("hosts") is None:
            if "federation" in top:
                self.src.error(self.src.key_at(("federation",)), "federation settings need a hosts section")
            return {}
        for key in ("admin_port", "bind"):
            if key in system:
                message = f"system.{key}: a park gives each host its own address and admin_port under hosts"
                self.src.error(self.src.key_at(("system", key)), message)
        hosts: dict[str, Host] = {}
        taken: dict[tuple[str, int], str] = {}
        for name, body in (self._mapping(top["hosts"], ("hosts",), None) or {}).items():
            path = ("hosts", name)
            if not _NAME.fullmatch(str(name)):
                message = f"invalid host name {name!r}: use letters, digits, '_' and '-', starting with a letter"
                self.src.error(self.src.key_at(path), message)
                continue
            entry = self._mapping(body, path, _HOST_KEYS, required=("address",))
            if entry is None:
                continue
            address = self._field(entry, path, "address", None, _ADDRESS)
            admin_port = self._field(entry, path, "admin_port", 1900, _PORT)
            leader = self._field(entry, path, "leader", False, _BOOL)
            if address is None or admin_port is None or leader is None:  # reported; the name still counts
                hosts[name] = Host(name, address or "", admin_port or 0, False)
                continue
            other = taken.get((address, admin_port))
            if other is not None:
                where = self.src.at((*path, "admin_port")) if "admin_port" in entry else self.src.key_at(path)
                self.src.error(where, f"host {name}: admin port {admin_port} on {address} is already host {other}'s")
            taken[address, admin_port] = name
            if leader and any(h.leader for h in hosts.values()):
                first = next(h.name for h in hosts.values() if h.leader)
                self.src.error(self.src.at((*path, "leader")), f"host {name}: only one leader per park ({first} is)")
                leader = False
            hosts[name] = Host(name, address, admin_port, leader)
        if hosts and not any(h.leader for h in hosts.values()) and not self.src.problems:
            self.src.error(self.src.at(("hosts",)), "no host is the leader: set leader: true on the one that leads")
        return hosts

    def _place(self, item: dict[str, Any], path: Path, *, top: bool) -> str | None:
        """The host a root child names (the leader's by default); None for a single box or an error."""
        if "host" not in item:
            leader = next((h.name for h in self._hosts.values() if h.leader), None)
            return leader if top else None
        where = self.src.at((*path, "host"))
        if not top:
            self.src.error(where, f"{dotted(path)}: host can only be set on the root supervisor's children")
        elif not self._hosts:
            self.src.error(where, f"{dotted(path)}: host {short(item['host'])} but the topology declares no hosts")
        elif item["host"] not in self._hosts:
            known = ", ".join(self._hosts)
            self.src.error(where, f"{dotted(path)}: there is no host named {short(item['host'])} (hosts: {known})")
        else:
            return str(item["host"])
        return None

    def _check_remote_connections(self, actors: _Actors) -> None:
        for name, actor in actors.items():
            here = self._host_of.get(name)
            cls = self._classes.get(name)
            if here is None or cls is None:
                continue
            for req_id, targets in actor.connections.items():
                req = cls.requires.get(req_id)
                for target in targets:
                    there = self._host_of.get(target)
                    if req is None or req.remote or there is None or there == here:
                        continue
                    pos = self._wired_at.get((name, req_id, target))
                    message = (
                        f"connection {req_id} -> {target}: {name} runs on host {here} and {target} on {there}, "
                        f"but {actor.type}'s {req_id!r} must be on the same host"
                    )
                    self.src.error(pos or self.src.key_at(("actors", name)), message)

    # --- generic checks ---------------------------------------------------------------------------
    def _mapping(
        self,
        value: Any,
        path: Path,
        keys: tuple[str, ...] | None,
        required: tuple[str, ...] = (),
        *,
        null_ok: bool = False,
    ) -> dict[str, Any] | None:
        """`value` if it is a mapping, reporting unknown and missing keys; `keys=None` allows any key."""
        if value is None and null_ok:
            return {}
        if not isinstance(value, dict):
            self.src.error(self.src.at(path), f"{dotted(path)} must be a mapping, got {describe(value)}")
            return None
        for key in value:
            if keys is not None and key not in keys:
                message = f"{prefix(path)}unknown key {key!r} (expected: {', '.join(keys)})"
                self.src.error(self.src.key_at((*path, key)), message)
        for key in required:
            if key not in value:
                self.src.error(self.src.at(path), f"{prefix(path)}missing required key {key!r}")
        return value

    def _field(self, mapping: dict[str, Any], path: Path, key: str, default: Any, rule: _Rule) -> Any:
        """mapping[key], or `default` when it is absent; None (reported) when `rule` rejects it."""
        if key not in mapping:
            return default
        value = mapping[key]
        ok, expected = rule
        if ok(value):
            return value
        self.src.error(self.src.at((*path, key)), f"{dotted((*path, key))}: {short(value)} is not {expected}")
        return None

    def _choice(self, mapping: dict[str, Any], path: Path, key: str, kind: type[_E], default: _E) -> _E | None:
        names = [member.value for member in kind]
        value = self._field(mapping, path, key, default, (lambda v: v in names, f"one of {', '.join(names)}"))
        return value if value is None or isinstance(value, kind) else kind(value)

    def _build(self, path: Path, make: Callable[..., _T], /, **kwargs: Any) -> _T | None:
        try:
            return make(**kwargs)
        except InvalidSpec as exc:  # spec.py has the last word; our own checks should have caught it first
            self.src.error(self.src.at((*path, exc.what)), f"{prefix(path)}{exc}")
            return None

    # --- actors -----------------------------------------------------------------------------------
    def _actors(self, value: Any) -> dict[str, _Draft]:
        drafts: dict[str, _Draft] = {}
        for name, body in (self._mapping(value, ("actors",), None) or {}).items():
            path = ("actors", name)
            if not _NAME.fullmatch(name):
                message = f"invalid actor name {name!r}: use letters, digits, '_' and '-', starting with a letter"
                self.src.error(self.src.key_at(path), message)
            entry = self._mapping(body, path, _ACTOR_KEYS, required=("type",))
            if entry is not None:
                type_name = self._field(entry, path, "type", "", _TYPE)
                cls = self._load_type(type_name, (*path, "type")) if type_name else None
                config = self._config(path, cls, entry.get("config"))
                drafts[name] = _Draft(name, type_name or "", cls, config, self._wiring(path, entry.get("connections")))
        return drafts

    def _load_type(self, name: str, path: Path) -> type[Behaviour] | None:
        try:
            return load_actor_type(name)
        except UnknownActorType as exc:
            self.src.error(self.src.at(path), str(exc))
        except Exception as exc:  # noqa: BLE001 - importing "module:Class" runs its code, which may raise anything
            self.src.error(self.src.at(path), f"actor type {name!r}: cannot import it: {type(exc).__name__}: {exc}")
        return None

    def _config(self, path: Path, cls: type[Behaviour] | None, value: Any) -> dict[str, Any]:
        path = (*path, "config")
        config = self._mapping(value, path, None, null_ok=True)
        if config is None or cls is None:
            return config or {}
        schema = cls.config_schema
        problem = _schema_problem(cls)
        if problem is not None:
            message = f"actor type {cls.__name__} has an invalid config_schema: {problem}"
            self.src.error(self.src.at((*path[:-1], "type")), message)
            return config
        fill_defaults(schema, config)
        for error in jsonschema.Draft202012Validator(schema).iter_errors(config):
            self._config_error(path, error)
        return config

    def _config_error(self, base: Path, error: jsonschema.ValidationError) -> None:
        path = (*base, *error.absolute_path)
        extra = _extra_keys(error.schema, error.instance) if error.validator == "additionalProperties" else []
        for key in extra:  # point at each unknown key rather than at its mapping, as for the file's own keys
            self.src.error(self.src.key_at((*path, key)), f"{prefix(path)}unknown key {key!r}")
        if not extra:
            pos = self.src.value_pos(path) or self.src.key_at(base)
            self.src.error(pos, f"{dotted(path)}: {error.message}")

    def _wiring(self, path: Path, value: Any) -> _Wiring:
        path = (*path, "connections")
        wiring: _Wiring = {}
        for req_id, targets in (self._mapping(value, path, None, null_ok=True) or {}).items():
            where = (*path, req_id)
            if isinstance(targets, str):
                wiring[req_id] = [(targets, self.src.at(where))]
            elif isinstance(targets, list):
                wiring[req_id] = [(t, self.src.at((*where, i))) for i, t in enumerate(targets) if isinstance(t, str)]
                for i in (i for i, t in enumerate(targets) if not isinstance(t, str)):
                    self.src.error(self.src.at((*where, i)), f"{dotted((*where, i))}: expected an actor name")
            else:
                wiring[req_id] = None
                message = f"{dotted(where)}: expected an actor name or a list of them, got {describe(targets)}"
                self.src.error(self.src.at(where), message)
        return wiring

    # --- connections ------------------------------------------------------------------------------
    def _wire(self, drafts: dict[str, _Draft]) -> dict[str, ActorInstance]:
        self._classes = {d.name: d.cls for d in drafts.values()}
        return {d.name: ActorInstance(d.name, d.type_name, d.config, self._connect(d, drafts)) for d in drafts.values()}

    def _connect(self, draft: _Draft, drafts: dict[str, _Draft]) -> dict[str, tuple[str, ...]]:
        path = ("actors", draft.name, "connections")
        requires = draft.cls.requires if draft.cls else {}
        connections: dict[str, tuple[str, ...]] = {}
        for req_id, targets in draft.wiring.items():
            req = requires.get(req_id)
            if draft.cls is not None and req is None:
                known = ", ".join(requires) or "none"
                message = f"{draft.type_name} has no requirement {req_id!r} (its requirements: {known})"
                self.src.error(self.src.key_at((*path, req_id)), message)
                continue
            listed = targets or []
            for i, (target, pos) in enumerate(listed):
                if any(target == earlier for earlier, _ in listed[:i]):
                    self.src.error(pos, f"connection {req_id} -> {target}: listed twice")
                else:
                    self._check_target(req_id, req, (target, pos), drafts)
            connections[req_id] = tuple(dict.fromkeys(t for t, _ in listed))
            for target, pos in listed:
                self._wired_at.setdefault((draft.name, req_id, target), pos)
        for req_id, req in requires.items():
            if not (req_id in draft.wiring and draft.wiring[req_id] is None):  # unusable value: reported already
                self._check_count(req_id, req, len(connections.get(req_id, ())), (*path, req_id))
            connections.setdefault(req_id, ())
        return connections

    def _check_target(
        self, req_id: str, req: Requirement | None, target: tuple[str, Pos], drafts: dict[str, _Draft]
    ) -> None:
        name, pos = target
        other = drafts.get(name)
        if other is None:
            self.src.error(pos, f"connection {req_id} -> {name}: there is no actor named {name!r}")
        elif req is not None and other.cls is not None:
            wanted = req.interface.name
            if all(interface.name != wanted for interface in other.cls.provides.values()):
                message = f"{other.type_name} does not provide interface {wanted!r}"
                self.src.error(pos, f"connection {req_id} -> {name}: {message}")

    def _check_count(self, req_id: str, req: Requirement, count: int, path: Path) -> None:
        interface = f"(interface {req.interface.name})"
        if count == 0 and req.min_connections > 0:
            message = f"missing required connection {req_id!r} {interface}"
        elif count < req.min_connections:
            message = f"connection {req_id!r} {interface} needs at least {req.min_connections}, got {count}"
        elif count > req.max_connections:
            message = f"connection {req_id!r} {interface} takes at most {req.max_connections}, got {count}"
        else:
            return
        self.src.error(self.src.at(path), message)

    def _check_cycles(self, actors: _Actors) -> None:
        order = list(actors)
        graph = {
            name: list(dict.fromkeys(t for ts in actor.connections.values() for t in ts if t in actors))
            for name, actor in actors.items()
        }
        for cycle in _cycles(graph):
            first = cycle.index(min(cycle, key=order.index))
            ring = cycle[first:] + cycle[:first]  # start from the actor written first, whichever DFS met first
            self.src.error(self.src.key_at(("actors", ring[0])), f"connection cycle: {' -> '.join([*ring, ring[0]])}")

    # --- supervision ------------------------------------------------------------------------------
    def _supervision(self, top: dict[str, Any], actors: _Actors) -> ChildSpec | None:
        value = top["supervision"]
        root = self._group(value, ("supervision",), actors, root=True)
        if isinstance(value, dict) and isinstance(value.get("children"), list):  # else "not placed" is just noise
            for name in actors:
                if name not in self._placed:
                    self.src.error(self.src.key_at(("actors", name)), f"actor {name!r} is not in the supervision tree")
        return root

    def _group(self, value: Any, path: Path, actors: _Actors, *, root: bool) -> ChildSpec | None:
        group = self._mapping(value, path, _ROOT_KEYS if root else _GROUP_KEYS, required=("children",))
        if group is None:
            return None
        name = self._group_name(group, path, "name" if root else "supervisor", actors)
        strategy = self._choice(group, path, "strategy", Strategy, Strategy.ONE_FOR_ONE)
        intensity = self._field(group, path, "intensity", 1, _INTENSITY)
        period = self._field(group, path, "period", 5.0, _PERIOD)
        restart = self._choice(group, path, "restart", Restart, Restart.PERMANENT)
        shutdown = self._field(group, path, "shutdown", math.inf, _SHUTDOWN)
        own_process = self._field(group, path, "own_process", True, _BOOL)
        children = self._children(group, (*path, "children"), actors)
        if None in (name, strategy, intensity, period, restart, shutdown, own_process, children):
            return None
        flags = self._build(path, SupFlags, strategy=strategy, intensity=intensity, period=period)
        if flags is None:
            return None
        kind = ChildKind.SUPERVISOR
        return self._build(
            path,
            ChildSpec,
            id=name,
            kind=kind,
            flags=flags,
            restart=restart,
            shutdown=shutdown,
            children=children,
            own_process=own_process,
        )

    def _group_name(self, group: dict[str, Any], path: Path, key: str, actors: _Actors) -> str | None:
        name = self._field(group, path, key, "root", _GROUP_NAME)
        if name is None:
            return None
        where = self.src.at((*path, key))
        if name in actors:
            self.src.error(where, f"supervisor name {name!r} is also the name of an actor")
            return None
        if name in self._groups:
            self.src.error(where, f"duplicate supervisor name {name!r} (first at line {self._groups[name][0]})")
            return None
        self._groups[name] = where
        return str(name)

    def _children(self, group: dict[str, Any], path: Path, actors: _Actors) -> tuple[ChildSpec, ...] | None:
        if "children" not in group:
            return None
        items = group["children"]
        if not isinstance(items, list):
            self.src.error(self.src.at(path), f"{dotted(path)} must be a list, got {describe(items)}")
            return None
        top = len(path) == 2  # supervision.children: the root's own children
        specs = [self._child(item, (*path, i), actors, top=top) for i, item in enumerate(items)]
        return None if None in specs else tuple(s for s in specs if s is not None)

    def _child(self, item: Any, path: Path, actors: _Actors, *, top: bool = False) -> ChildSpec | None:
        entry = {"actor": item} if isinstance(item, str) else item
        if isinstance(entry, dict) and ("actor" in entry or "supervisor" in entry):
            host = self._place(entry, path, top=top)
            placed_before = set(self._placed)
            spec = (
                self._worker(entry, path, actors) if "actor" in entry else self._group(entry, path, actors, root=False)
            )
            if top and host is not None and spec is not None:
                self._placement[spec.id] = host
                for name in set(self._placed) - placed_before:
                    self._host_of[name] = host
            return spec
        expected = "an actor name, {actor: NAME} or {supervisor: NAME, children: [...]}"
        self.src.error(self.src.at(path), f"{dotted(path)}: expected {expected}, got {describe(item)}")
        return None

    def _worker(self, entry: dict[str, Any], path: Path, actors: _Actors) -> ChildSpec | None:
        self._mapping(entry, path, _WORKER_KEYS)
        restart = self._choice(entry, path, "restart", Restart, Restart.PERMANENT)
        shutdown = self._field(entry, path, "shutdown", math.inf, _SHUTDOWN)
        name, where = entry["actor"], self.src.at((*path, "actor"))
        instance = actors.get(name) if isinstance(name, str) else None
        if instance is None:
            self.src.error(where, f"{dotted(path)}: there is no actor named {short(name)}")
            return None
        if name in self._placed:
            first = self._placed[name][0]
            self.src.error(where, f"actor {name!r} is placed twice in the supervision tree (first at line {first})")
            return None
        self._placed[name] = where
        if restart is None or shutdown is None or not _NAME.fullmatch(name):  # reported already
            return None
        # A worker's shutdown left at inf gets spec.py's worker default.
        spec = {"actor": instance.type, "config": instance.config, "requires": instance.connections}
        return self._build(path, ChildSpec, id=name, restart=restart, shutdown=shutdown, **spec)


_SCHEMA_PROBLEMS: dict[type[Behaviour], str | None] = {}


def _schema_problem(cls: type[Behaviour]) -> str | None:
    """Why the class's config_schema is no valid JSON Schema, or None. Checked once per class: checking
    against the metaschema took ~40 ms, paid for every instance of every type on every load."""
    if cls not in _SCHEMA_PROBLEMS:
        try:
            jsonschema.Draft202012Validator.check_schema(cls.config_schema)
            _SCHEMA_PROBLEMS[cls] = None
        except jsonschema.SchemaError as exc:
            _SCHEMA_PROBLEMS[cls] = str(exc.message)
    return _SCHEMA_PROBLEMS[cls]


def _cycles(graph: dict[str, list[str]]) -> Iterator[list[str]]:
    """One cycle per back edge of a depth-first search (iterative: a long chain must not hit the recursion limit)."""
    done: set[str] = set()
    for start, edges in graph.items():
        if start in done:
            continue
        path, stack = [start], [iter(edges)]
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                stack.pop()
                done.add(path.pop())
            elif nxt in path:
                yield path[path.index(nxt) :]
            elif nxt not in done:
                path.append(nxt)
                stack.append(iter(graph[nxt]))


def _extra_keys(schema: Any, instance: Any) -> list[str]:
    """The keys a failed ``additionalProperties: false`` rejected (jsonschema names them only in prose)."""
    if (
        not (isinstance(schema, Mapping) and isinstance(instance, dict))
        or schema.get("additionalProperties") is not False
    ):
        return []
    known = schema.get("properties") or {}
    patterns = schema.get("patternProperties") or {}
    return [k for k in instance if k not in known and not any(re.search(p, k) for p in patterns)]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_seconds(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value >= 0


def _is_port(value: Any) -> bool:
    return _is_int(value) and 1024 <= value <= 65535


def _is_name(value: Any) -> bool:
    return isinstance(value, str) and _NAME.fullmatch(value) is not None


def _is_text(value: Any) -> bool:
    return isinstance(value, str) and value != ""


_SITE: _Rule = (_is_text, "a non-empty name")
_PORT: _Rule = (_is_port, "an integer from 1024 to 65535")
_HOST: _Rule = (_is_text, "a host name or address")
_ADDRESS: _Rule = (lambda v: _is_text(v) and v not in _ALL_INTERFACES, "the host's own address (never all interfaces)")
_DIR: _Rule = (_is_text, "a directory path")
_TYPE: _Rule = (_is_text, "an actor type name")
_GROUP_NAME: _Rule = (_is_name, "a name of letters, digits, '_' and '-' starting with a letter")
_INTENSITY: _Rule = (lambda v: _is_int(v) and v >= 0, "an integer >= 0")
_PERIOD: _Rule = (lambda v: _is_seconds(v) and v > 0, "a number of seconds > 0")
_SHUTDOWN: _Rule = (_is_seconds, "a number of seconds >= 0")
_BOOL: _Rule = (lambda v: isinstance(v, bool), "true or false")
