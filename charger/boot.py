"""``python -m charger.boot TOPOLOGY``: validate a topology, start its actor system, run, stop cleanly.

While it runs it shows the supervision events and, per connector (every EVSE manager of the
topology), its state: a live table on a terminal, a plain line per change otherwise (or with
``--no-view``/``--json-logs``). When it stops it prints the sessions the connectors completed.

Exit codes: 0 after a clean run or a clean ``--check``; 1 when the system could not start or
halted (its root supervisor gave up); 2 for a topology or usage error, printed as
``file:line:col: message`` lines without a traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
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
from charger.federation import HostPlan, host_plan, tune_convention
from charger.kernel import KERNEL_ACTOR, kernel_config
from charger.lifecycle import GetSystemStatus, Init, Shutdown, SystemStatus
from charger.processes import kill_all, session_of, session_processes, wait_until_gone
from charger.runtime import ActorProcess
from charger.status_view import (
    ConnectorPoller,
    ConnectorView,
    LiveDisplay,
    PlainDisplay,
    PlanView,
    connector_names,
    energy_manager_names,
    fetch_histories,
    summary_lines,
)
from charger.supervisors.spec import ChildKind, ChildSpec
from charger.system import logging_config, start_system
from charger.topology import Topology, TopologyError, load_topology

__all__ = ["main"]

_POLL_S = 0.25
_CONNECTOR_POLL_S = 0.5
_START_TIMEOUT_S = 60.0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m charger.boot", description=__doc__.splitlines()[0])
    p.add_argument("topology", help="topology YAML file, e.g. topology/site.yaml")
    p.add_argument("--check", action="store_true", help="validate the topology and exit (0 ok, 2 problems)")
    p.add_argument("--duration", type=float, metavar="S", help="run S seconds, then stop cleanly")
    p.add_argument("--state-dir", metavar="DIR", help="where journals live (default: the topology's, else ./state)")
    p.add_argument("--admin-port", type=int, metavar="PORT", help="Thespian admin port (default: the topology's)")
    p.add_argument(
        "--host",
        metavar="NAME",
        help="in a park (a topology with hosts): which box this is; it runs the actors placed on it",
    )
    p.add_argument(
        "--site-secret",
        metavar="FILE",
        help="the site's secret that authenticates every frame between actor processes (owner-only file, "
        ">= 32 bytes; default: a random one per run, right for a single box)",
    )
    p.add_argument("--log-level", default="WARNING", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    p.add_argument("--json-logs", action="store_true", help="log JSON lines on stderr (implies --no-view)")
    p.add_argument("--no-view", action="store_true", help="plain lines instead of the live view on a terminal")
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
    problem = _host_problem(topology, args.host, checking=args.check)
    if problem:
        print(f"{args.topology}: {problem}", file=sys.stderr)
        return 2
    if args.check:
        where = f" on {len(topology.hosts)} hosts" if topology.hosts else ""
        mine = f"; host {args.host} runs {len(topology.actors_on(args.host))}" if args.host else ""
        print(f"{args.topology}: ok: site {topology.site!r}, {len(topology.actors)} actors{where}{mine}")
        return 0
    return _run(topology, args)


def _host_problem(topology: Topology, host: str | None, *, checking: bool) -> str:
    """What is wrong with --host for this topology ("" when nothing)."""
    names = ", ".join(topology.hosts)
    if host is not None and not topology.hosts:
        return f"--host {host}: the topology declares no hosts"
    if host is not None and host not in topology.hosts:
        return f"--host {host}: unknown host (hosts: {names})"
    if host is None and topology.hosts and not checking:
        return f"the topology declares the hosts of a park ({names}): give --host NAME"
    return ""


def _plan(topology: Topology, args: argparse.Namespace) -> HostPlan:
    if not topology.hosts:
        state_dir = os.path.abspath(args.state_dir or topology.state_dir or "state")
        port = args.admin_port or topology.admin_port
        return HostPlan("", topology.root, None, port, topology.bind, {}, state_dir, len(topology.actors))
    plan = host_plan(topology, args.host, state_dir=args.state_dir)
    return dataclasses.replace(plan, admin_port=args.admin_port or plan.admin_port)


class _StopRequested:
    def __init__(self) -> None:
        self.why = ""

    def __call__(self, signum: int, _frame: FrameType | None) -> None:
        self.why = signal.Signals(signum).name


def _run(topology: Topology, args: argparse.Namespace) -> int:
    plan = _plan(topology, args)
    state_dir = plan.state_dir
    os.makedirs(state_dir, exist_ok=True)
    if plan.federation is not None:
        tune_convention()
    stop = _StopRequested()
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    # The live view redraws the terminal: only for a person watching one, never into a log or a pipe.
    live = sys.stdout.isatty() and not (args.no_view or args.json_logs)
    # The actors log through Thespian's logger process, which writes to the terminal behind the live
    # view's back and would tear its redraws: while the view runs, the log goes to a file instead.
    log_file = os.path.join(state_dir, "charger.log") if live else None
    try:
        asys = start_system(
            plan.admin_port,
            bind_address=plan.bind,
            log_config=logging_config(args.log_level, args.json_logs, filename=log_file),
            capabilities=plan.capabilities,
            site_secret=args.site_secret,
        )
    except (RuntimeError, ValueError) as exc:  # a port in use, a refused secret file or bind address
        print(f"charger.boot: {exc}", file=sys.stderr)
        return 1
    if log_file:
        print(f"charger: logging to {log_file} (--no-view logs here instead)", flush=True)
    code, session = 1, [0]
    try:
        code = _supervise(asys, topology, plan, duration=args.duration, stop=stop, session=session, live=live)
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
    asys: Any,
    topology: Topology,
    plan: HostPlan,
    *,
    duration: float | None,
    stop: _StopRequested,
    session: list[int],
    live: bool,
) -> int:
    """Start the tree, watch it until told to stop, stop it in order. Puts the system's session id in `session`."""
    kernel = asys.createActor(ActorProcess)
    client = Client(asys, kernel, label="boot")
    state_dir = plan.state_dir
    config = kernel_config(plan.root, plan.federation)
    init = Init(name="kernel", actor=KERNEL_ACTOR, config=config, requires={}, state_dir=state_dir)
    started_at, started_wall = time.monotonic(), time.time()
    try:
        started = client.call_address(kernel, init, timeout=_START_TIMEOUT_S)
        session[0] = session_of(started.pid)
    except CallError as exc:
        print(f"charger.boot: the supervision tree did not start: {exc}", file=sys.stderr)
        return 1
    host = f" host {plan.host}" if plan.host else ""
    print(f"charger: site {topology.site!r}{host} running, {plan.actors} actors, state in {state_dir}", flush=True)
    connectors = connector_names(plan.root)
    energy_managers = energy_manager_names(plan.root)
    poller = ConnectorPoller(client, connectors)
    display = LiveDisplay(topology.site) if live else PlainDisplay()
    next_poll = 0.0
    try:
        with display:
            status = _status(client, kernel)
            while not stop.why and not status.halted:
                if duration is not None and time.monotonic() - started_at >= duration:
                    break
                time.sleep(_POLL_S)
                status = _status(client, kernel)
                views: list[ConnectorView] | None = None
                plans: list[PlanView] | None = None
                if (connectors or energy_managers) and time.monotonic() >= next_poll:
                    next_poll = time.monotonic() + _CONNECTOR_POLL_S
                    views = poller.poll()
                    plans = poller.plans(energy_managers)
                display.show(status, views, plans)
    except CallError as exc:
        print(f"charger.boot: the kernel stopped answering ({exc}); stopping the system", file=sys.stderr)
        return 1
    if status.halted:
        print(f"charger: halted: {status.reason}", file=sys.stderr)
    else:
        print(f"charger: stopping ({stop.why or 'duration reached'})", flush=True)
    # Asked before the shutdown, while the connectors still run; one that does not answer is reported
    # as such and never holds the shutdown up for longer than its call timeout.
    histories = fetch_histories(client, connectors, wait_restarting=0.0 if status.halted else 2.0)
    for line in summary_lines(histories, since=started_wall):
        print(line, flush=True)
    try:
        client.call_address(kernel, Shutdown(reason="shutdown"), timeout=_shutdown_budget(plan.root) + 10.0)
    except CallError as exc:
        print(f"charger.boot: orderly shutdown did not finish: {exc}", file=sys.stderr)
        return 1
    _print_summary(status, time.monotonic() - started_at)
    return 1 if status.halted else 0


def _status(client: Client, kernel: Any) -> SystemStatus:
    status = client.call_address(kernel, GetSystemStatus(), timeout=10.0)
    assert isinstance(status, SystemStatus)
    return status


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
