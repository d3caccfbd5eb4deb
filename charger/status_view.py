"""What `python -m charger.boot` shows while it runs, and the session summary it prints when it stops.

Three layers, so that what is worth testing needs no actor system:

- pure functions: which instances of a topology are connectors (`connector_names`), a poll result as a
  rich renderable (`render`), a connector as one log line (`change_line`), session histories as
  summary lines (`summary_lines`);
- `ConnectorPoller` and `fetch_histories`, which ask the connectors through a `Client` and turn a
  connector that is restarting or silent into a value that says so, never into an exception;
- two displays with one interface (``with display: display.show(status, views)``): `LiveDisplay`
  redraws a table on a terminal (DESIGN §9), `PlainDisplay` prints a line per supervision event and
  per connector change, for logs, pipes and tests.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from types import TracebackType
from typing import Any, TextIO

from rich import box
from rich.console import Console, Group, JustifyMethod, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from charger.actors.charging import (
    ENERGY_MANAGER,
    EVSE_MANAGER,
    ConnectorReservation,
    ConnectorStatus,
    EnergyPlan,
    GetConnectorStatus,
    GetEnergyPlan,
    GetSessionHistory,
    SessionHistory,
)
from charger.catalog import UnknownActorType, load_actor_type
from charger.client import Client
from charger.energy_view import plan_lines
from charger.errors import CallError, CallTimeout, Unavailable
from charger.lifecycle import SystemStatus
from charger.supervisors.spec import ChildKind, ChildSpec

__all__ = [
    "SUMMARY_HEADER",
    "ConnectorPoller",
    "ConnectorView",
    "LiveDisplay",
    "PlainDisplay",
    "PlanView",
    "change_line",
    "connector_names",
    "energy_manager_names",
    "fetch_histories",
    "new_events",
    "render",
    "summary_lines",
]

SUMMARY_HEADER = "charger: session summary"
_DASH = "-"
_HISTORY_LIMIT = 1000
"""Sessions asked of each connector for the summary: far more than a run completes, far below the frame limit."""


@dataclass(frozen=True, slots=True)
class ConnectorView:
    """One connector as the last poll saw it: its status, or why there is none."""

    name: str
    status: ConnectorStatus | None = None
    problem: str = ""
    """Set when `status` is None: "restarting", "no answer" or the error the call ended with."""


# --- which instances are connectors ------------------------------------------------------------------


def connector_names(root: ChildSpec) -> list[str]:
    """The workers of the tree whose actor type provides the EVSE manager interface, in start order.

    Asking the type rather than matching the name "EvseManager" also finds plugins and ``module:Class``
    types that implement a connector.
    """
    return [spec.id for spec in root.walk() if spec.kind is ChildKind.WORKER and _is_evse_manager(spec.actor)]


def energy_manager_names(root: ChildSpec) -> list[str]:
    """The workers of the tree that provide the energy manager interface, in start order."""
    return [spec.id for spec in root.walk() if spec.kind is ChildKind.WORKER and _provides(spec.actor, ENERGY_MANAGER)]


def _is_evse_manager(type_name: str) -> bool:
    return _provides(type_name, EVSE_MANAGER)


def _provides(type_name: str, interface: Any) -> bool:
    try:
        cls = load_actor_type(type_name)
    except UnknownActorType:
        return False  # the loader has checked every type already; the view is no place to fail boot
    return interface in cls.provides.values()


# --- asking the system ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PlanView:
    """An energy manager's last plan as the poll saw it, or why there is none."""

    name: str
    plan: EnergyPlan | None = None
    problem: str = ""

    def lines(self) -> list[str]:
        if self.plan is None:
            return [f"{self.name}: {self.problem}"]
        return [f"{self.name}: " + line if k == 0 else line for k, line in enumerate(plan_lines(asdict(self.plan)))]


class ConnectorPoller:
    """Asks every connector for its `ConnectorStatus`, one short call each."""

    def __init__(self, client: Client, names: Sequence[str], timeout: float = 0.4) -> None:
        self._client = client
        self.names = list(names)
        self._timeout = timeout

    def poll(self) -> list[ConnectorView]:
        return [self._ask(name) for name in self.names]

    def plans(self, names: Sequence[str]) -> list[PlanView]:
        """Each energy manager's last plan."""
        out = []
        for name in names:
            try:
                reply = self._client.call(name, GetEnergyPlan(), timeout=self._timeout)
            except CallError as exc:
                out.append(PlanView(name, problem=_problem(exc)))
                continue
            if isinstance(reply, EnergyPlan):
                out.append(PlanView(name, reply))
            else:
                out.append(PlanView(name, problem=f"unexpected answer {type(reply).__name__}"))
        return out

    def _ask(self, name: str) -> ConnectorView:
        try:
            reply = self._client.call(name, GetConnectorStatus(), timeout=self._timeout)
        except CallError as exc:
            return ConnectorView(name, problem=_problem(exc))
        if not isinstance(reply, ConnectorStatus):
            return ConnectorView(name, problem=f"unexpected answer {type(reply).__name__}")
        return ConnectorView(name, reply)


def fetch_histories(
    client: Client, names: Sequence[str], *, timeout: float = 3.0, wait_restarting: float = 2.0
) -> dict[str, SessionHistory | str]:
    """Each connector's session history, or why it has none to give.

    A connector caught in a restart is asked again until `wait_restarting` seconds (for all of them
    together) have passed: its journal comes back with it, and a summary should not miss a connector
    over a restart that takes milliseconds. A connector that times out is not asked again: the shutdown
    must not wait on it.
    """
    deadline = time.monotonic() + wait_restarting
    out: dict[str, SessionHistory | str] = {}
    for name in names:
        while True:
            try:
                reply = client.call(name, GetSessionHistory(limit=_HISTORY_LIMIT), timeout=timeout)
            except Unavailable:
                if time.monotonic() < deadline:
                    time.sleep(0.1)
                    continue
                out[name] = "not running"  # no longer "restarting": it did not come back in time
            except CallError as exc:
                out[name] = _problem(exc)
            else:
                out[name] = reply if isinstance(reply, SessionHistory) else f"unexpected answer {type(reply).__name__}"
            break
    return out


def _problem(exc: CallError) -> str:
    if isinstance(exc, Unavailable):
        return "restarting"
    if isinstance(exc, CallTimeout):
        return "no answer"
    return str(exc)


# --- pure presentation -------------------------------------------------------------------------------------

# header, justify, no_wrap. On a narrow terminal the names and numbers stay whole and the free text
# (state, session, last event) folds onto more lines: nothing is cut off.
_COLUMNS: tuple[tuple[str, JustifyMethod, bool], ...] = (
    ("connector", "left", True),
    ("pilot", "center", True),
    ("state", "left", False),
    ("limit\n(A)", "right", True),
    ("power\n(kW)", "right", True),
    ("energy\n(kWh)", "right", True),
    ("session", "left", False),
    ("last event", "left", False),
    ("leases\n(A)", "left", False),
    ("reserved", "left", False),
)
_STATE_STYLES = {  # EvseState values; the others stay unstyled
    "Charging": "bold green",
    "ChargingPausedEV": "yellow",
    "ChargingPausedEVSE": "yellow",
    "Finished": "cyan",
    "Inoperative": "bold red",
    "Disabled": "dim",
}


def render(
    views: Sequence[ConnectorView],
    system: SystemStatus | None,
    *,
    title: str = "charger",
    max_events: int = 5,
    plans: Sequence[PlanView] = (),
) -> RenderableType:
    """The whole status view: a row per connector, each energy manager's plan (limits per node, why each
    EVSE got its current, the schedule ahead), then supervision restarts and the latest events."""
    table = Table(
        title=title, title_justify="left", caption_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False
    )
    for header, justify, no_wrap in _COLUMNS:
        table.add_column(header, justify=justify, no_wrap=no_wrap, overflow="fold")
    for view in views:
        table.add_row(*_cells(view))
    if not views:
        table.caption = "no connectors in this topology"
    energy = [Text("\n".join(plan.lines())) for plan in plans]
    return Group(table, *energy, _supervision(system, max_events))


def _cells(view: ConnectorView) -> list[RenderableType]:
    s = view.status
    if s is None:
        return [view.name, _DASH, Text(view.problem, style="yellow"), *[_DASH] * 7]
    state = Text(s.state, style=_STATE_STYLES.get(s.state, ""))
    if s.faults:
        state.append(f" ({', '.join(s.faults)})", style="bold red")
    return [
        view.name,
        s.pilot,
        state,
        f"{s.current_limit_a:.1f}",
        _DASH if s.power_w is None else f"{s.power_w / 1000:.2f}",
        _DASH if s.energy_wh is None else f"{s.energy_wh / 1000:.3f}",
        s.session_id or _DASH,
        s.last_event or _DASH,
        leases_text(s.leases) or _DASH,
        reservations_text(s.reservations) or _DASH,
    ]


def leases_text(leases: Mapping[str, float]) -> str:
    """Each grantor's current, lowest (the one the connector obeys) first: ``backend 10.0, em 16.0``."""
    return ", ".join(f"{grantor or '(unnamed)'} {amps:.1f}" for grantor, amps in sorted(leases.items(), key=_by_amps))


def _by_amps(item: tuple[str, float]) -> tuple[float, str]:
    return item[1], item[0]


def reservations_text(reservations: Sequence[ConnectorReservation]) -> str:
    """``#21 04A1B2C3D4 until 14:05`` per reservation (local time)."""
    return ", ".join(
        f"#{r.reservation_id} {r.id_tag} until {time.strftime('%H:%M', time.localtime(r.expires_at))}"
        for r in reservations
    )


def _supervision(system: SystemStatus | None, max_events: int) -> Text:
    if system is None:
        return Text("supervision: the kernel did not answer", style="yellow")
    out = Text()
    if system.halted:
        out.append(f"HALTED: {system.reason}\n", style="bold red")
    restarts = sum(system.restarts.values())
    out.append(f"supervision: {restarts} restart(s)", style="bold yellow" if restarts else "")
    if system.restarts:
        out.append(" (" + ", ".join(f"{n} {c}x" for n, c in sorted(system.restarts.items())) + ")")
    out.append(f", {len(system.actors)} actor(s) up")
    for line in system.events[-max_events:] if max_events > 0 else ():
        out.append(f"\n  {line}", style="dim")
    return out


def change_line(view: ConnectorView) -> str:
    """A connector in one log line, e.g. ``evse-1: Charging 16.0 A session evse-1-3 pilot C``."""
    s = view.status
    if s is None:
        return f"{view.name}: {view.problem}"
    line = f"{view.name}: {s.state} {s.current_limit_a:.1f} A"
    if s.session_id:
        line += f" session {s.session_id}"
    line += f" pilot {s.pilot}"
    if s.faults:
        line += f" faults {','.join(s.faults)}"
    if s.leases:
        line += f" leases {leases_text(s.leases)}"
    if s.reservations:
        line += f" reserved {reservations_text(s.reservations)}"
    return line


def _change_key(view: ConnectorView) -> tuple[Any, ...]:
    """What makes a new log line: not power or energy, which change on every poll while charging."""
    s = view.status
    if s is None:
        return (view.problem,)
    leases = tuple(sorted((g, round(a, 1)) for g, a in s.leases.items()))
    reserved = tuple(r.reservation_id for r in s.reservations)
    return (s.state, s.pilot, round(s.current_limit_a, 1), s.session_id, tuple(s.faults), leases, reserved)


def _plan_key(plan: PlanView) -> tuple[Any, ...]:
    """What makes a plan worth printing again: an allocation or a fallback, not the solve time."""
    if plan.plan is None:
        return (plan.problem,)
    p = plan.plan
    return (p.status, p.fallback_reason, tuple((a.evse, round(a.amps, 1), a.reason) for a in p.allocations))


def summary_lines(histories: Mapping[str, SessionHistory | str], since: float | None = None) -> list[str]:
    """The session summary: the header, a line per connector and a total.

    Counts the sessions that ended at or after `since` (Unix seconds; None: all the journal returned),
    so a run on an old state directory reports what this run did. A string in `histories` is why that
    connector gave no history.
    """
    if not histories:
        return [f"{SUMMARY_HEADER}: no connectors in this topology"]
    lines = [f"{SUMMARY_HEADER} ({'this run' if since is not None else 'all journaled sessions'}):"]
    total_n, total_wh, unmetered, silent = 0, 0.0, 0, 0
    width = max(map(len, histories))
    for name, history in histories.items():
        label = f"{name}:".ljust(width + 1)
        if isinstance(history, str):
            silent += 1
            lines.append(f"  {label} no history: {history}")
            continue
        done = [s for s in history.sessions if since is None or s.stopped_at >= since]
        wh = sum(s.energy_wh for s in done if s.energy_wh is not None)
        missing = sum(1 for s in done if s.energy_wh is None)
        total_n, total_wh, unmetered = total_n + len(done), total_wh + wh, unmetered + missing
        lines.append(f"  {label} {_sessions(len(done))}, {wh / 1000:.3f} kWh{_unmetered(missing)}")
    total = f"  {'total:'.ljust(width + 1)} {_sessions(total_n)}, {total_wh / 1000:.3f} kWh{_unmetered(unmetered)}"
    if silent:
        total += f"; {silent} connector(s) gave no history"
    lines.append(total)
    return lines


def _sessions(n: int) -> str:
    return f"{n} session{'' if n == 1 else 's'}"


def _unmetered(n: int) -> str:
    return f" ({n} without a meter reading)" if n else ""


# --- displays ------------------------------------------------------------------------------------------------


def new_events(status: SystemStatus, seen: int) -> list[str]:
    """The events of `status` not shown yet, given that `seen` were (the kernel keeps only the latest)."""
    fresh = min(status.events_total - seen, len(status.events))
    return status.events[len(status.events) - fresh :] if fresh > 0 else []


class PlainDisplay:
    """A line per supervision event and per connector change: readable in a log, followable by a test."""

    def __init__(self, out: TextIO | None = None) -> None:
        self._out = out
        self._seen = 0
        self._last: dict[str, tuple[Any, ...]] = {}

    def __enter__(self) -> PlainDisplay:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def show(
        self, system: SystemStatus, views: Sequence[ConnectorView] | None, plans: Sequence[PlanView] | None = None
    ) -> None:
        """`views` (and `plans`) None: not polled this time. A plan is printed when an allocation changes."""
        out = self._out or sys.stdout  # looked up late: tests and Live swap sys.stdout
        for line in new_events(system, self._seen):
            print(f"  {line}", file=out, flush=True)
        self._seen = system.events_total
        for view in views or ():
            key = _change_key(view)
            if self._last.get(view.name) != key:
                self._last[view.name] = key
                print(change_line(view), file=out, flush=True)
        for plan in plans or ():
            plan_key = _plan_key(plan)
            if self._last.get(plan.name) != plan_key:
                self._last[plan.name] = plan_key
                print("\n".join(plan.lines()), file=out, flush=True)


class LiveDisplay:
    """The table redrawn in place on a terminal (rich.live); what is printed meanwhile scrolls above it."""

    def __init__(self, site: str, console: Console | None = None) -> None:
        self._site = site
        self._started = time.monotonic()
        self._views: list[ConnectorView] = []
        self._plans: list[PlanView] = []
        self._live = Live(console=console, auto_refresh=False, redirect_stdout=True, redirect_stderr=True)

    def __enter__(self) -> LiveDisplay:
        self._live.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._live.stop()  # leaves the last table on screen, above whatever boot prints next

    def show(
        self, system: SystemStatus, views: Sequence[ConnectorView] | None, plans: Sequence[PlanView] | None = None
    ) -> None:
        if views is not None:
            self._views = list(views)
        if plans is not None:
            self._plans = list(plans)
        title = f"charger: site {self._site!r}, up {time.monotonic() - self._started:.0f} s"
        self._live.update(render(self._views, system, title=title, plans=self._plans), refresh=True)
