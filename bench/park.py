"""Park benchmark: N software-in-the-loop connectors charging on one box, boot time, CPU and memory.

For each N the benchmark writes a topology (the shape of ``topology/site.yaml``), checks it with
`charger.topology.load_topology` and starts it with `charger.testing.running_system`:

- one ``rig`` (SilRig) simulates every connector's hardware: a board on a pty, a car and a Modbus
  meter server each;
- per connector: ``board-i`` (BoardDriver), ``meter-i`` (PowerMeter, polled every ``poll_s`` = 1 s),
  ``evse-i`` (EvseManager, control loop every ``status_period_s`` = 1 s), under their own supervisor
  ``connector-i``, which runs inside the root's process (``own_process: false``);
- one ``fuse`` (LoadShare, ``period_s`` 1 s, fuse 32 A per connector, so it never limits the 16 A cars).

Then, in one actor system:

1. **boot to ready**: from just before the actor system starts until the kernel's `SystemStatus`
   lists every actor of the topology with a PID; **operational**: from the same start until every
   EVSE manager reports ``Idle`` with pilot A from its board and a reading from its meter;
2. every connector is authorized (token first) and its car plugged in with a script that keeps
   charging at 16 A on 3 phases; **all charging** is the time from the same start until every
   EVSE manager reports ``Charging`` with its relays closed;
3. a **charging window** (``--seconds``): CPU (utime + stime from ``/proc/PID/stat``) of every
   process of the system's session, and USS (``Private_Clean + Private_Dirty`` of
   ``/proc/PID/smaps_rollup``) at its end;
4. every car unplugs; once every connector is ``Idle`` again (and its session billed, waited for
   up to 15 s and reported as ``sessions_billed``), an **idle window** (``--idle-seconds``) is
   measured the same way: the same N with no car charging is the baseline the charging CPU is
   compared with;
5. clean shutdown; `running_system` fails the run if any process of the session survives.

A kernel-only system (a root supervisor with no children) is measured first in the same run: its
USS is the fixed overhead, and per-connector memory is also reported net of it.

CPU and memory are split by role using the kernel's name -> PID table: ``sim`` (the SilRig
processes, which a real charger does not run), ``charger`` (drivers, EVSE managers, LoadShare) and
``framework`` (admin, logger, kernel, supervisors), and per process of each actor type. The targets
are checked on the total, including the simulators; the figures without them are printed beside.

Run from the repository root (output to a file: the actor system's Admin inherits stdout)::

    python -m bench.park [--connectors 1,5,10,20] [--seconds 30] [--idle-seconds 15] [--json] > out.txt
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from charger.actors.charging import AuthorizeSession, ConnectorStatus, GetConnectorStatus, PlugCar, UnplugCar
from charger.supervisors.spec import ChildKind, ChildSpec, SupFlags

from bench._common import machine, print_json, today
from charger.errors import CallError
from charger.testing import RunningSystem, free_port, running_system
from charger.topology import Topology, load_topology

__all__ = ["DEFAULT_CONNECTORS", "main", "run", "run_connectors", "run_kernel_only", "topology_yaml"]

DEFAULT_CONNECTORS = (1, 5, 10, 20)
CHARGE_SCRIPT = "iec_wait_pwr_ready;draw_power_regulated 16,3"
"""The car waits for the EVSE's PWM, then charges at 16 A on 3 phases; a script ending in a draw keeps charging."""
AMPS_PER_CONNECTOR = 32
ROLES = ("sim", "charger", "framework")

# targets of the issue, for 20 connectors
TARGET_N = 20
TARGET_CPU_CORE_FRACTION = 0.5
TARGET_USS_MB_PER_CONNECTOR = 30.0
TARGET_BOOT_TO_READY_S = 3.0

_BILL_TIMEOUT_S = 15.0
_CLK_TCK = os.sysconf("SC_CLK_TCK")
_MB = 1024 * 1024


# --- the topology -----------------------------------------------------------------------------------


def topology_yaml(
    n: int,
    admin_port: int,
    modbus_ports: Sequence[int],
    *,
    period_s: float = 1.0,
    board_heartbeat_s: float | None = None,
) -> str:
    """A site of `n` SIL connectors under one LoadShare, as YAML (the layout of topology/site.yaml).

    `board_heartbeat_s` None keeps the BoardDriver's own default."""
    if len(modbus_ports) != n:
        raise ValueError(f"need {n} Modbus ports, got {len(modbus_ports)}")
    actors: dict[str, Any] = {}
    for i, port in enumerate(modbus_ports, start=1):
        board: dict[str, Any] = {"port": f"board-{i}.pty"}
        if board_heartbeat_s is not None:
            board["heartbeat_s"] = board_heartbeat_s
        actors[f"board-{i}"] = {"type": "BoardDriver", "config": board}
        actors[f"meter-{i}"] = {
            "type": "PowerMeter",
            "config": {"transport": "tcp", "host": "127.0.0.1", "port": port, "poll_s": period_s},
        }
        actors[f"evse-{i}"] = {
            "type": "EvseManager",
            "config": {"connector_id": i, "hardware_max_current_a": 32, "status_period_s": period_s},
            "connections": {"board": [f"board-{i}"], "meter": [f"meter-{i}"]},
        }
    evses = [f"evse-{i}" for i in range(1, n + 1)]
    actors["fuse"] = {
        "type": "LoadShare",
        "config": {"fuse_a": AMPS_PER_CONNECTOR * n, "period_s": period_s},
        "connections": {"evse": evses},
    }
    rig = [{"board_link": f"board-{i}.pty", "modbus_port": port} for i, port in enumerate(modbus_ports, start=1)]
    actors = {"rig": {"type": "SilRig", "config": {"connectors": rig}}, **actors}
    children: list[Any] = ["rig"]
    children += [
        {"supervisor": f"connector-{i}", "own_process": False, "children": [f"board-{i}", f"meter-{i}", f"evse-{i}"]}
        for i in range(1, n + 1)
    ]
    children.append("fuse")
    doc = {
        "site": f"park-{n}",
        "system": {"admin_port": admin_port, "bind": "127.0.0.1"},
        "actors": actors,
        "supervision": {"name": "root", "strategy": "one_for_one", "intensity": 10, "period": 60, "children": children},
    }
    return yaml.safe_dump(doc, sort_keys=False, width=200)


def _kernel_only_tree() -> ChildSpec:
    return ChildSpec(id="root", kind=ChildKind.SUPERVISOR, flags=SupFlags(intensity=10, period=60.0))


# --- /proc ------------------------------------------------------------------------------------------


def cpu_ticks(pid: int) -> int | None:
    """utime + stime of `pid` in clock ticks (fields 14 and 15 of /proc/PID/stat); None when gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return int(fields[11]) + int(fields[12])


def uss_bytes(pid: int) -> int | None:
    """Unique set size: Private_Clean + Private_Dirty of /proc/PID/smaps_rollup; None when gone."""
    total = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup", encoding="ascii") as rollup:
            for line in rollup:
                if line.startswith(("Private_Clean:", "Private_Dirty:")):
                    total += int(line.split()[1]) * 1024
    except OSError:
        return None
    return total


FRAMEWORK = "framework"
SIM_TYPES = frozenset({"SilRig"})


def role_of(kind: str) -> str:
    """The role of an actor type: ``sim``, ``charger``, or ``framework`` for everything unnamed."""
    return FRAMEWORK if kind == FRAMEWORK else "sim" if kind in SIM_TYPES else "charger"


@dataclass
class Window:
    """What every process of one system used during a measured window, by actor type.

    The kind of a process is its topology actor type (``EvseManager``...) or ``framework`` (admin,
    logger, kernel, supervisors)."""

    seconds: float
    cpu_s: dict[str, float]
    """Kind -> CPU seconds in the window."""
    uss_bytes: dict[str, int]
    """Kind -> USS at the end of the window."""
    processes: dict[str, int]
    """Kind -> live processes at the end."""
    vanished: int
    """Processes that were there at the start and not at the end (their CPU is lost)."""

    def role_cpu_s(self, role: str) -> float:
        return sum(v for k, v in self.cpu_s.items() if role_of(k) == role)

    def role_uss(self, role: str) -> int:
        return sum(v for k, v in self.uss_bytes.items() if role_of(k) == role)

    def role_processes(self, role: str) -> int:
        return sum(v for k, v in self.processes.items() if role_of(k) == role)

    @property
    def cpu_total_s(self) -> float:
        return sum(self.cpu_s.values())

    @property
    def uss_total(self) -> int:
        return sum(self.uss_bytes.values())

    @property
    def process_total(self) -> int:
        return sum(self.processes.values())


def measure_window(system: RunningSystem, seconds: float, kinds: dict[int, str]) -> Window:
    """Sleep `seconds` while the system runs; return the CPU it took and its USS at the end.

    `kinds` maps PID -> actor type; any other process of the system's session counts as framework."""
    start = {pid: t for pid in system.processes() if (t := cpu_ticks(pid)) is not None}
    t0 = time.monotonic()
    time.sleep(seconds)
    end = {pid: t for pid in system.processes() if (t := cpu_ticks(pid)) is not None}
    elapsed = time.monotonic() - t0
    cpu: dict[str, float] = {}
    uss: dict[str, int] = {}
    count: dict[str, int] = {}
    for pid, ticks in end.items():
        kind = kinds.get(pid, FRAMEWORK)
        cpu[kind] = cpu.get(kind, 0.0) + (ticks - start.get(pid, 0)) / _CLK_TCK  # born in the window: all of it
        size = uss_bytes(pid)
        if size is not None:
            uss[kind] = uss.get(kind, 0) + size
            count[kind] = count.get(kind, 0) + 1
    return Window(elapsed, cpu, uss, count, vanished=len(start.keys() - end.keys()))


def _kinds(system: RunningSystem, topology: Topology | None) -> dict[int, str]:
    """PID -> actor type, from the kernel's name -> PID table; supervisors and the kernel are framework."""
    types = {name: actor.type for name, actor in (topology.actors.items() if topology else ())}
    return {pid: types.get(name, FRAMEWORK) for name, pid in system.status().actors.items()}


# --- driving the connectors -------------------------------------------------------------------------


def _wait_ready(system: RunningSystem, names: Iterable[str], timeout: float) -> None:
    wanted = set(names)
    deadline = time.monotonic() + timeout
    while True:
        missing = wanted - system.status().actors.keys()
        if not missing:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"not ready within {timeout} s: {sorted(missing)[:10]} missing")
        time.sleep(0.01)


def _statuses(system: RunningSystem, evses: Sequence[str]) -> dict[str, ConnectorStatus]:
    got = {}
    for name in evses:  # by name, resolved each time: a restarted EVSE manager has a new address
        status = system.client.call(name, GetConnectorStatus(), timeout=5.0)
        assert isinstance(status, ConnectorStatus)
        got[name] = status
    return got


def _statuses_retrying(system: RunningSystem, evses: Sequence[str], timeout: float) -> dict[str, ConnectorStatus]:
    """`_statuses`, retried while an EVSE manager is restarting."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return _statuses(system, evses)
        except CallError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _billed(system: RunningSystem, evses: Sequence[str]) -> int:
    """Sessions billed on all connectors; a connector that does not answer counts none."""
    total = 0
    for name in evses:
        with contextlib.suppress(CallError):
            status = system.client.call(name, GetConnectorStatus(), timeout=5.0)
            total += status.sessions_completed
    return total


def _operational(status: ConnectorStatus) -> bool:
    return bool(status.state == "Idle" and status.pilot == "A" and status.power_w is not None)


def _charging(status: ConnectorStatus) -> bool:
    return bool(status.state == "Charging" and status.relays_closed)


def _wait_all(system: RunningSystem, evses: Sequence[str], done: Any, what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            statuses = _statuses(system, evses)
        except CallError as exc:  # an EVSE manager restarting: its supervisor reports it, try again
            late: Any = str(exc)
        else:
            if all(done(s) for s in statuses.values()):
                return
            late = {n: s.state for n, s in statuses.items() if not done(s)}
        if time.monotonic() > deadline:
            raise TimeoutError(f"not all connectors {what} within {timeout} s: {late}")
        time.sleep(0.05)


def _call(system: RunningSystem, name: str, msg: Any) -> None:
    try:
        system.client.call(name, msg, timeout=10.0)
    except CallError as exc:
        raise RuntimeError(f"{name} refused {type(msg).__name__}: {exc}") from exc


# --- one system -------------------------------------------------------------------------------------


def _mb(size: float) -> float:
    return round(size / _MB, 2)


def _window_fields(prefix: str, window: Window, n: int) -> dict[str, Any]:
    per_hour = 3600.0 / window.seconds
    fields: dict[str, Any] = {
        f"{prefix}cpu_core_fraction": round(window.cpu_total_s / window.seconds, 4),
        f"{prefix}cpu_s_per_connector_hour": round(window.cpu_total_s * per_hour / max(n, 1), 2),
    }
    for role in ROLES:
        fields[f"{prefix}cpu_core_fraction_{role}"] = round(window.role_cpu_s(role) / window.seconds, 4)
    return fields


def run_kernel_only(seconds: float, workdir: str) -> dict[str, Any]:
    """The fixed overhead: admin, logger, kernel and an empty root supervisor, idle for `seconds`."""
    state = os.path.join(workdir, "kernel-only")
    os.makedirs(state)
    t0 = time.perf_counter()
    with running_system(_kernel_only_tree(), free_port(), state, log_file=os.path.join(state, "system.log")) as system:
        _wait_ready(system, ["root"], 30.0)
        ready = time.perf_counter() - t0
        window = measure_window(system, seconds, _kinds(system, None))
        t_stop = time.perf_counter()
    result = {
        "boot_to_ready_s": round(ready, 3),
        "processes": window.process_total,
        "uss_mb_total": _mb(window.uss_total),
        "window_s": round(window.seconds, 2),
        "shutdown_s": round(time.perf_counter() - t_stop, 3),
    }
    result.update(_window_fields("", window, 0))
    del result["cpu_s_per_connector_hour"]  # no connectors
    return result


@dataclass
class _Measured:
    """What one park run measured, before it becomes a result row."""

    ready_s: float
    operational_s: float
    all_charging_s: float
    plug_to_charging_s: float
    charging: Window
    idle: Window
    statuses: dict[str, ConnectorStatus]
    restarts: int
    billed: int
    shutdown_s: float = 0.0


def _drive(system: RunningSystem, topology: Topology, n: int, t0: float, args: dict[str, float]) -> _Measured:
    """Wait until ready, charge every connector, measure charging, unplug, measure idle."""
    timeout, settle = args["timeout"], args["settle_s"]
    _wait_ready(system, topology.actors, timeout)
    ready = time.perf_counter() - t0
    evses = [f"evse-{i}" for i in range(1, n + 1)]
    # Operational: the board reports pilot A and the meter has been read. A transaction started before
    # the first meter reading would have no start register, and so no energy to report.
    _wait_all(system, evses, _operational, "operational", timeout)
    operational = time.perf_counter() - t0
    t_plug = time.perf_counter()
    for i in range(1, n + 1):
        _call(system, f"evse-{i}", AuthorizeSession(token_id=f"PARK{i:04d}"))  # token first, then the plug
        _call(system, "rig", PlugCar(script=CHARGE_SCRIPT, connector=i))
    _wait_all(system, evses, _charging, "charging", timeout)
    all_charging, plug_to_charging = time.perf_counter() - t0, time.perf_counter() - t_plug
    time.sleep(settle)
    charging = measure_window(system, args["seconds"], _kinds(system, topology))
    statuses = _statuses_retrying(system, evses, timeout)
    for i in range(1, n + 1):
        _call(system, "rig", UnplugCar(connector=i))
    _wait_all(system, evses, lambda s: s.state == "Idle", "idle", timeout)
    with contextlib.suppress(TimeoutError):  # not fatal here: `sessions_billed` reports it, the smoke test checks it
        _wait_all(system, evses, lambda s: s.sessions_completed >= 1, "billed", _BILL_TIMEOUT_S)
    time.sleep(settle)
    idle = measure_window(system, args["idle_seconds"], _kinds(system, topology))
    restarts = sum(system.status().restarts.values())
    billed = _billed(system, evses)
    return _Measured(ready, operational, all_charging, plug_to_charging, charging, idle, statuses, restarts, billed)


def run_connectors(
    n: int,
    seconds: float,
    idle_seconds: float,
    workdir: str,
    *,
    settle_s: float = 2.0,
    timeout: float = 90.0,
    fixed_uss_bytes: int | None = None,
    board_heartbeat_s: float | None = None,
) -> dict[str, Any]:
    """Boot `n` charging SIL connectors, measure a charging and an idle window, shut down."""
    state = os.path.join(workdir, f"park-{n}")
    os.makedirs(state)
    admin_port = free_port()
    ports: list[int] = []
    while len(ports) < n:
        if (port := free_port()) not in ports and port != admin_port:
            ports.append(port)
    path = Path(state) / "park.yaml"
    path.write_text(topology_yaml(n, admin_port, ports, board_heartbeat_s=board_heartbeat_s), encoding="utf-8")
    topology = load_topology(path)
    args = {"seconds": seconds, "idle_seconds": idle_seconds, "settle_s": settle_s, "timeout": timeout}
    t0 = time.perf_counter()
    with running_system(topology.root, admin_port, state, log_file=os.path.join(state, "system.log")) as system:
        got = _drive(system, topology, n, t0, args)
        t_stop = time.perf_counter()
    got.shutdown_s = time.perf_counter() - t_stop  # includes running_system's no-survivor check
    return _row(n, topology, got, fixed_uss_bytes)


def _row(n: int, topology: Topology, got: _Measured, fixed_uss_bytes: int | None) -> dict[str, Any]:
    charging, idle = got.charging, got.idle
    row: dict[str, Any] = {
        "connectors": n,
        "actors": len(topology.actors),
        "processes": charging.process_total,
        "boot_to_ready_s": round(got.ready_s, 3),
        "operational_s": round(got.operational_s, 3),
        "all_charging_s": round(got.all_charging_s, 3),
        "plug_to_charging_s": round(got.plug_to_charging_s, 3),
        "window_s": round(charging.seconds, 2),
        "idle_window_s": round(idle.seconds, 2),
    }
    row.update(_window_fields("", charging, n))
    row.update(_window_fields("idle_", idle, n))
    rate, idle_rate = charging.cpu_total_s / charging.seconds, idle.cpu_total_s / idle.seconds  # windows differ
    row["cpu_ratio_charging_idle"] = round(rate / idle_rate, 3) if idle_rate else None
    row["cpu_core_fraction_without_sim"] = round(
        (charging.cpu_total_s - charging.role_cpu_s("sim")) / charging.seconds, 4
    )
    row["uss_mb_total"] = _mb(charging.uss_total)
    row["uss_mb_per_connector"] = _mb(charging.uss_total / n)
    row["uss_mb_per_connector_without_sim"] = _mb((charging.uss_total - charging.role_uss("sim")) / n)
    if fixed_uss_bytes is not None:
        row["uss_mb_per_connector_net"] = _mb((charging.uss_total - fixed_uss_bytes) / n)
    for role in ROLES:
        row[f"uss_mb_{role}"] = _mb(charging.role_uss(role))
        row[f"processes_{role}"] = charging.role_processes(role)
    # per process of each kind: where the time and the memory go
    row["by_type"] = {
        kind: {
            "processes": charging.processes[kind],
            "cpu_core_fraction_per_process": round(
                charging.cpu_s[kind] / charging.seconds / charging.processes[kind], 4
            ),
            "uss_mb_per_process": _mb(charging.uss_bytes[kind] / charging.processes[kind]),
        }
        for kind in sorted(charging.processes)
        if charging.processes[kind]
    }
    row["idle_uss_mb_total"] = _mb(idle.uss_total)
    row["charging_at_end"] = sum(_charging(s) for s in got.statuses.values())
    row["energy_wh_at_end"] = round(sum(s.energy_wh or 0.0 for s in got.statuses.values()), 1)
    row["sessions_billed"] = got.billed
    row["restarts"] = got.restarts
    row["vanished_processes"] = charging.vanished + idle.vanished
    row["shutdown_s"] = round(got.shutdown_s, 3)
    return row


# --- the whole run ----------------------------------------------------------------------------------


_GROWTH = ("boot_to_ready_s", "cpu_s_per_connector_hour", "uss_mb_per_connector")


def run(
    connectors: Sequence[int],
    *,
    seconds: float = 30.0,
    idle_seconds: float = 15.0,
    settle_s: float = 2.0,
    timeout: float = 90.0,
    keep_dir: str | None = None,
    board_heartbeat_s: float | None = None,
) -> dict[str, Any]:
    """Measure the kernel-only baseline, then each N in order; return the result (the JSON of `main`).

    State, topologies and logs go to a temporary directory, or stay in `keep_dir` (which must not exist).
    """
    load = round(os.getloadavg()[0], 2)  # other work on the machine skews every figure: say so
    if keep_dir is not None:
        os.makedirs(keep_dir)
    with (
        contextlib.nullcontext(os.path.abspath(keep_dir))
        if keep_dir is not None
        else tempfile.TemporaryDirectory(prefix="charger-park-")
    ) as tmp:
        base = run_kernel_only(idle_seconds, tmp)
        fixed = int(base["uss_mb_total"] * _MB)
        settings = {"seconds": seconds, "idle_seconds": idle_seconds, "settle": settle_s, "timeout": timeout}
        rows = [_run_in_fresh_process(n, settings, tmp, fixed, board_heartbeat_s) for n in connectors]
    first = rows[0]
    for row in rows:  # growth: each figure against the smallest N of the run
        for key in _GROWTH:
            row[f"growth_{key}"] = round(row[key] / first[key], 3) if first[key] else None
    result: dict[str, Any] = {
        "connectors": list(connectors),
        "seconds": seconds,
        "idle_seconds": idle_seconds,
        "control_period_s": 1.0,
        "board_heartbeat_s": board_heartbeat_s,
        "growth_reference_connectors": first["connectors"],
        "kernel_only": base,
        "rows": rows,
        "loadavg_1m_at_start": load,
        "date": today(),
        "machine": machine(),
    }
    target = next((r for r in rows if r["connectors"] == TARGET_N), None)
    if target is not None:
        result["target_cpu_met"] = target["cpu_core_fraction"] < TARGET_CPU_CORE_FRACTION
        result["target_uss_met"] = target["uss_mb_per_connector"] <= TARGET_USS_MB_PER_CONNECTOR
        result["target_boot_met"] = target["boot_to_ready_s"] <= TARGET_BOOT_TO_READY_S
    return result


_COLUMNS = (
    ("N", "connectors", "{}"),
    ("procs", "processes", "{}"),
    ("ready s", "boot_to_ready_s", "{:.2f}"),
    ("operational s", "operational_s", "{:.2f}"),
    ("charging s", "all_charging_s", "{:.2f}"),
    ("CPU cores", "cpu_core_fraction", "{:.3f}"),
    ("CPU s/conn-h", "cpu_s_per_connector_hour", "{:.0f}"),
    ("idle s/conn-h", "idle_cpu_s_per_connector_hour", "{:.0f}"),
    ("vs idle", "cpu_ratio_charging_idle", "{:.2f}x"),
    ("USS MB", "uss_mb_total", "{:.0f}"),
    ("MB/conn", "uss_mb_per_connector", "{:.1f}"),
    ("net MB/conn", "uss_mb_per_connector_net", "{:.1f}"),
    ("stop s", "shutdown_s", "{:.2f}"),
)


def _table(title: str, headers: Iterable[str], rows: Iterable[Sequence[str]]) -> Any:
    from rich.table import Table

    table = Table(title=title)
    for header in headers:
        table.add_column(header, justify="right", no_wrap=True)
    for row in rows:
        table.add_row(*row)
    return table


def _main_table(result: dict[str, Any]) -> Any:
    title = (
        f"N = {', '.join(map(str, result['connectors']))} SIL connectors charging at 16 A,"
        f" control and meters at 1 Hz; charging window {result['seconds']:g} s,"
        f" idle window {result['idle_seconds']:g} s"
    )
    cells = [
        [("-" if row.get(key) is None else fmt.format(row[key])) for _, key, fmt in _COLUMNS] for row in result["rows"]
    ]
    return _table(title, [c[0] for c in _COLUMNS], cells)


def _role_table(rows: list[dict[str, Any]]) -> Any:
    cells = [
        [
            str(row["connectors"]),
            *(
                f"{row[f'cpu_core_fraction_{r}']:.3f} / {row[f'uss_mb_{r}']:.0f} / {row[f'processes_{r}']}"
                for r in ROLES
            ),
            f"{row['cpu_core_fraction_without_sim']:.3f}",
            f"{row['uss_mb_per_connector_without_sim']:.1f}",
        ]
        for row in rows
    ]
    return _table(
        "by role, charging window: CPU (fraction of one core) / USS MB / processes",
        ("N", *ROLES, "CPU cores without sim", "USS MB/conn without sim"),
        cells,
    )


def _type_table(rows: list[dict[str, Any]]) -> Any:
    kinds = sorted({kind for row in rows for kind in row["by_type"]})

    def cell(got: dict[str, Any] | None) -> str:
        return "-" if got is None else f"{got['cpu_core_fraction_per_process']:.4f} / {got['uss_mb_per_process']:.1f}"

    cells = [[str(row["connectors"]), *(cell(row["by_type"].get(k)) for k in kinds)] for row in rows]
    return _table(
        "per process of each kind, charging window: CPU (fraction of one core) / USS MB", ("N", *kinds), cells
    )


def _verdicts(result: dict[str, Any]) -> list[str]:
    if "target_cpu_met" not in result:
        return [f"targets are stated for N={TARGET_N}: not measured in this run"]
    t = next(r for r in result["rows"] if r["connectors"] == TARGET_N)
    checks = (
        ("total CPU", f"{t['cpu_core_fraction']:.3f} of a core", f"< {TARGET_CPU_CORE_FRACTION}", "cpu"),
        ("USS per connector", f"{t['uss_mb_per_connector']:.1f} MB", f"<= {TARGET_USS_MB_PER_CONNECTOR:g}", "uss"),
        ("boot to ready", f"{t['boot_to_ready_s']:.2f} s", f"<= {TARGET_BOOT_TO_READY_S:g}", "boot"),
    )
    return [
        f"target at N={TARGET_N}, {what} {bound}: {value} ({'met' if result[f'target_{key}_met'] else 'NOT met'})"
        for what, value, bound, key in checks
    ]


def _print_table(result: dict[str, Any]) -> None:
    from rich.console import Console

    rows = result["rows"]
    console = Console(width=max(160, Console().width))  # not 80 columns when piped to a file
    console.print(_main_table(result))
    console.print(_role_table(rows))
    console.print(_type_table(rows))
    base = result["kernel_only"]
    console.print(
        f"baseline, kernel only (same run): {base['processes']} processes, USS {base['uss_mb_total']:.1f} MB,"
        f" CPU {base['cpu_core_fraction']:.4f} of a core, boot to ready {base['boot_to_ready_s']:.2f} s"
    )
    ref = result["growth_reference_connectors"]
    for key in _GROWTH:
        steps = ", ".join(f"N={r['connectors']}: {r[f'growth_{key}'] or 0:.2f}x" for r in rows)
        console.print(f"growth of {key} against N={ref}: {steps}")
    for row in rows:
        n = row["connectors"]
        if row["charging_at_end"] != n or row["sessions_billed"] != n or row["restarts"]:
            console.print(
                f"N={n}: {row['charging_at_end']} charging at the end of the window,"
                f" {row['sessions_billed']} sessions billed, {row['restarts']} restarts: figures are suspect",
                style="bold red",
            )
    for line in _verdicts(result):
        console.print(line)
    console.print(f"load average (1 min) at start: {result['loadavg_1m_at_start']}")
    console.print(result["machine"], style="dim")


def _connectors(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers like 1,5,10: {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"connector counts must be >= 1: {text!r}")
    return values


def _run_in_fresh_process(
    n: int, settings: dict[str, float], workdir: str, fixed_uss_bytes: int, board_heartbeat_s: float | None
) -> dict[str, Any]:
    """One N in its own interpreter, as a box boots: every actor process descends from the process that
    started the actor system, so a benchmark process grown by the previous N's would inflate this N's
    memory and slow its forks."""
    out = Path(workdir) / f"n{n}.out"
    command = [sys.executable, "-m", "bench.park", "--one", str(n), "--workdir", workdir]
    command += ["--fixed-uss-bytes", str(fixed_uss_bytes)]
    command += [f"--{key.replace('_', '-')}={value}" for key, value in settings.items()]
    if board_heartbeat_s is not None:
        command.append(f"--board-heartbeat-s={board_heartbeat_s}")
    with out.open("w") as sink:  # a file, not a pipe: the actor system's admin inherits stdout
        code = subprocess.run(command, stdout=sink, stderr=subprocess.STDOUT, check=False).returncode
    text = out.read_text()
    if code != 0:
        raise RuntimeError(f"N={n} failed with exit {code}:\n{text[-4000:]}")
    row: dict[str, Any] = json.loads(text.strip().splitlines()[-1])
    return row


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.park", description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    parser.add_argument(
        "--connectors",
        type=_connectors,
        action="append",
        help="connector counts, repeatable or comma separated (default 1,5,10,20)",
    )
    parser.add_argument("--seconds", type=float, default=30.0, help="charging window (default 30)")
    parser.add_argument("--idle-seconds", type=float, default=15.0, help="idle and kernel-only windows (default 15)")
    parser.add_argument("--settle", type=float, default=2.0, help="pause before each window (default 2)")
    parser.add_argument("--timeout", type=float, default=90.0, help="limit for boot, charging, idle (default 90)")
    parser.add_argument(
        "--board-heartbeat-s",
        type=float,
        help="BoardDriver heartbeat_s (default: the driver's own, 0.1 s); a what-if, not the standard run",
    )
    parser.add_argument("--keep", metavar="DIR", help="keep state, topologies and logs in DIR (must not exist)")
    parser.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # internal: one N, its row as JSON
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    parser.add_argument("--fixed-uss-bytes", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.keep is not None and os.path.exists(args.keep):
        parser.error(f"--keep {args.keep}: already exists")
    if args.seconds <= 0 or args.idle_seconds <= 0 or args.settle < 0 or args.timeout <= 0:
        parser.error("--seconds, --idle-seconds and --timeout must be > 0, --settle >= 0")
    args.connectors = [n for group in args.connectors for n in group] if args.connectors else list(DEFAULT_CONNECTORS)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    if args.one is not None:
        row = run_connectors(
            args.one,
            args.seconds,
            args.idle_seconds,
            args.workdir,
            settle_s=args.settle,
            timeout=args.timeout,
            fixed_uss_bytes=args.fixed_uss_bytes,
            board_heartbeat_s=args.board_heartbeat_s,
        )
        print(json.dumps(row), flush=True)
        return 0
    result = run(
        args.connectors,
        seconds=args.seconds,
        idle_seconds=args.idle_seconds,
        settle_s=args.settle,
        timeout=args.timeout,
        keep_dir=args.keep,
        board_heartbeat_s=args.board_heartbeat_s,
    )
    _print_table(result)
    if args.json:
        print_json(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
