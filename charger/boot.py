"""``python -m charger.boot TOPOLOGY``: validate a topology, start its actor system, run, stop cleanly.

Exit codes: 0 after a clean run or a clean ``--check``; 1 when the system could not start or
halted (its root supervisor gave up); 2 for a topology or usage error, printed as
``file:line:col: message`` lines without a traceback.
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import sys
import time
from collections.abc import Sequence
from types import FrameType
from typing import Any

from charger.client import Client
from charger.errors import CallError
from charger.kernel import KERNEL_ACTOR, kernel_config
from charger.lifecycle import GetSystemStatus, Init, Shutdown, SystemStatus
from charger.processes import kill_all, session_of, session_processes, wait_until_gone
from charger.runtime import ActorProcess
from charger.supervisors.spec import ChildKind, ChildSpec
from charger.system import logging_config, start_system
from charger.topology import Topology, TopologyError, load_topology

__all__ = ["main"]

_POLL_S = 0.25
_START_TIMEOUT_S = 60.0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m charger.boot", description=__doc__.splitlines()[0])
    p.add_argument("topology", help="topology YAML file, e.g. topology/site.yaml")
    p.add_argument("--check", action="store_true", help="validate the topology and exit (0 ok, 2 problems)")
    p.add_argument("--duration", type=float, metavar="S", help="run S seconds, then stop cleanly")
    p.add_argument("--state-dir", metavar="DIR", help="where journals live (default: the topology's, else ./state)")
    p.add_argument("--admin-port", type=int, metavar="PORT", help="Thespian admin port (default: the topology's)")
    p.add_argument("--log-level", default="WARNING", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    p.add_argument("--json-logs", action="store_true", help="log JSON lines on stderr")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.duration is not None and not (args.duration > 0 and math.isfinite(args.duration)):
        print("charger.boot: --duration must be a positive number of seconds", file=sys.stderr)
        return 2
    try:
        topology = load_topology(args.topology)
    except TopologyError as exc:
        print(exc, file=sys.stderr)
        return 2
    if args.check:
        print(f"{args.topology}: ok: site {topology.site!r}, {len(topology.actors)} actors")
        return 0
    return _run(topology, args)


class _StopRequested:
    def __init__(self) -> None:
        self.why = ""

    def __call__(self, signum: int, _frame: FrameType | None) -> None:
        self.why = signal.Signals(signum).name


def _run(topology: Topology, args: argparse.Namespace) -> int:
    state_dir = os.path.abspath(args.state_dir or topology.state_dir or "state")
    os.makedirs(state_dir, exist_ok=True)
    admin_port = args.admin_port or topology.admin_port
    stop = _StopRequested()
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        asys = start_system(
            admin_port, bind_address=topology.bind, log_config=logging_config(args.log_level, args.json_logs)
        )
    except RuntimeError as exc:
        print(f"charger.boot: {exc}", file=sys.stderr)
        return 1
    code, session = 1, [0]
    try:
        code = _supervise(asys, topology, state_dir, duration=args.duration, stop=stop, session=session)
    finally:
        asys.shutdown()
        # Every process of the system shares the admin's session: none may outlive the shutdown.
        survivors = wait_until_gone(lambda: session_processes(session[0]), timeout=5.0) if session[0] else []
        if survivors:
            kill_all(survivors)
            print(f"charger.boot: killed {len(survivors)} leftover process(es): {survivors}", file=sys.stderr)
            code = code or 1
    return code


def _supervise(
    asys: Any, topology: Topology, state_dir: str, *, duration: float | None, stop: _StopRequested, session: list[int]
) -> int:
    """Start the tree, watch it until told to stop, stop it in order. Puts the system's session id in `session`."""
    kernel = asys.createActor(ActorProcess)
    client = Client(asys, kernel, label="boot")
    init = Init(
        name="kernel", actor=KERNEL_ACTOR, config=kernel_config(topology.root), requires={}, state_dir=state_dir
    )
    started_at = time.monotonic()
    try:
        started = client.call_address(kernel, init, timeout=_START_TIMEOUT_S)
        session[0] = session_of(started.pid)
    except CallError as exc:
        print(f"charger.boot: the supervision tree did not start: {exc}", file=sys.stderr)
        return 1
    print(f"charger: site {topology.site!r} running, {len(topology.actors)} actors, state in {state_dir}", flush=True)
    seen = 0
    try:
        status = _status(client, kernel)
        while not stop.why and not status.halted:
            if duration is not None and time.monotonic() - started_at >= duration:
                break
            time.sleep(_POLL_S)
            status = _status(client, kernel)
            seen = _print_events(status, seen)
    except CallError as exc:
        print(f"charger.boot: the kernel stopped answering ({exc}); stopping the system", file=sys.stderr)
        return 1
    if status.halted:
        print(f"charger: halted: {status.reason}", file=sys.stderr)
    else:
        print(f"charger: stopping ({stop.why or 'duration reached'})", flush=True)
    try:
        client.call_address(kernel, Shutdown(reason="shutdown"), timeout=_shutdown_budget(topology.root))
    except CallError as exc:
        print(f"charger.boot: orderly shutdown did not finish: {exc}", file=sys.stderr)
        return 1
    _print_summary(status, time.monotonic() - started_at)
    return 1 if status.halted else 0


def _status(client: Client, kernel: Any) -> SystemStatus:
    status = client.call_address(kernel, GetSystemStatus(), timeout=10.0)
    assert isinstance(status, SystemStatus)
    return status


def _print_events(status: SystemStatus, seen: int) -> int:
    """Print supervision events not shown yet (the kernel keeps the latest ones in order)."""
    fresh = min(status.events_total - seen, len(status.events))
    for line in status.events[len(status.events) - fresh :] if fresh > 0 else ():
        print(f"  {line}", flush=True)
    return status.events_total


def _print_summary(status: SystemStatus, ran_s: float) -> None:
    restarts = sum(status.restarts.values())
    print(f"charger: stopped after {ran_s:.1f} s; {restarts} restart(s)", flush=True)
    for name, count in sorted(status.restarts.items()):
        print(f"  {name}: restarted {count}x", flush=True)


def _shutdown_budget(spec: ChildSpec) -> float:
    """Enough time for every worker's shutdown timeout, plus slack per supervisor level."""
    if spec.kind is ChildKind.WORKER:
        return spec.shutdown + 1.0
    return 5.0 + sum(_shutdown_budget(c) for c in spec.children)


if __name__ == "__main__":
    sys.exit(main())
