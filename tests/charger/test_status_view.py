"""Boot's status view and session summary: the pure parts on canned data, the polling against a real system.

Runs of `python -m charger.boot` itself (plain and live output, the summary) are in test_boot.py.
"""

from __future__ import annotations

import io
import re
import time
from typing import Any

from charger.actors.charging import (
    ConnectorReservation,
    ConnectorStatus,
    EnergyPlan,
    EvseAllocation,
    NodeCapView,
    NodeLoad,
    SessionCompleted,
    SessionHistory,
)
from charger.supervisors.spec import ChildKind, ChildSpec, SupFlags
from rich.console import Console

from charger.client import Client
from charger.lifecycle import SystemStatus
from charger.status_view import (
    SUMMARY_HEADER,
    ConnectorPoller,
    ConnectorView,
    LiveDisplay,
    PlainDisplay,
    PlanView,
    change_line,
    connector_names,
    fetch_histories,
    new_events,
    render,
    summary_lines,
)
from tests.conftest import group, worker

FAKE = "tests.support.fake_connector:FakeConnector"


def status(name: str = "evse-1", **kw: Any) -> ConnectorStatus:
    fields: dict[str, Any] = {
        "connector": name,
        "connector_id": 1,
        "state": "Charging",
        "pilot": "C",
        "pwm_duty_percent": 26.6,
        "current_limit_a": 16.0,
        "lease_until": None,
        "power_w": 11040.0,
        "energy_wh": 1234.6,
        "session_id": f"{name}-3",
        "token_id": "CAFE",
        "relays_closed": True,
        "faults": [],
        "last_event": "ChargingStarted",
        "sessions_completed": 2,
        "energy_total_wh": 5000.0,
    }
    fields.update(kw)
    return ConnectorStatus(**fields)


def system(restarts: dict[str, int] | None = None, events: list[str] | None = None, **kw: Any) -> SystemStatus:
    events = events or []
    fields: dict[str, Any] = {
        "halted": False,
        "reason": "",
        "actors": {"root": 10, "evse-1": 11, "evse-2": 12},
        "restarts": restarts or {},
        "events": events,
        "events_total": len(events),
    }
    fields.update(kw)
    return SystemStatus(**fields)


def text_of(renderable: Any, width: int = 160) -> str:
    console = Console(file=io.StringIO(), width=width)
    console.print(renderable)
    out = console.file.getvalue()  # type: ignore[attr-defined]
    assert isinstance(out, str)
    return out


def row_of(text: str, name: str) -> list[str]:
    """The cells of the table row that starts with `name` (cells are at least 3 spaces apart)."""
    for line in text.splitlines():
        cells = re.split(r"\s{2,}", line.strip())
        if cells[0] == name:
            return cells
    raise AssertionError(f"no row {name!r} in\n{text}")


def completed(name: str, wh: float | None, stopped_at: float = 1000.0) -> SessionCompleted:
    return SessionCompleted(
        connector=name,
        session_id=f"{name}-x",
        token_id=None,
        meter_start_wh=None if wh is None else 0.0,
        meter_stop_wh=wh,
        energy_wh=wh,
        stop_reason="Local",
        started_at=stopped_at - 60,
        stopped_at=stopped_at,
    )


# --- which instances are connectors -----------------------------------------------------------------


def test_connectors_are_the_instances_that_provide_the_evse_manager_interface() -> None:
    nested = ChildSpec(
        id="park",
        kind=ChildKind.SUPERVISOR,
        flags=SupFlags(),
        children=(ChildSpec(id="evse-2", actor=FAKE), ChildSpec(id="meter", actor="Ticker")),
    )
    root = group("root", worker("evse-1", actor=FAKE), worker("ticker", actor="Ticker"), nested)
    assert connector_names(root) == ["evse-1", "evse-2"]  # in start order, supervisors and others left out


def test_no_connectors_in_the_demo_kind_of_tree_and_an_unloadable_type_is_no_connector() -> None:
    root = group("root", worker("ticker", actor="Ticker"), worker("ghost", actor="no.such.module:Nope"))
    assert connector_names(root) == []


# --- the rendering -------------------------------------------------------------------------------------


def test_render_shows_a_row_per_connector_with_every_column() -> None:
    views = [ConnectorView("evse-1", status()), ConnectorView("evse-2", status("evse-2", state="Available"))]
    text = text_of(render(views, system(), title="charger: site 'demo'"))
    assert "charger: site 'demo'" in text
    for header in (
        "connector",
        "pilot",
        "state",
        "limit",
        "(A)",
        "power",
        "(kW)",
        "energy",
        "(kWh)",
        "session",
        "last",
    ):
        assert header in text
    assert row_of(text, "evse-1") == [
        "evse-1",
        "C",
        "Charging",
        "16.0",
        "11.04",
        "1.235",
        "evse-1-3",
        "ChargingStarted",
        "-",
        "-",
    ]
    assert row_of(text, "evse-2")[:3] == ["evse-2", "C", "Available"]


def test_render_shows_the_leases_lowest_first_and_the_reservations() -> None:
    reservation = ConnectorReservation(reservation_id=21, id_tag="04A1B2C3D4", expires_at=0.0)
    view = status(leases={"energy-manager": 16.0, "backend": 10.0}, reservations=(reservation,))
    row = row_of(text_of(render([ConnectorView("evse-1", view)], system()), width=220), "evse-1")
    until = time.strftime("%H:%M", time.localtime(0.0))
    assert row[-2:] == ["backend 10.0, energy-manager 16.0", f"#21 04A1B2C3D4 until {until}"]
    line = change_line(ConnectorView("evse-1", view))
    assert line.endswith(f"leases backend 10.0, energy-manager 16.0 reserved #21 04A1B2C3D4 until {until}")


def test_render_shows_missing_values_as_dashes_and_faults_in_the_state() -> None:
    idle = status(power_w=None, energy_wh=None, session_id=None, last_event=None, state="Inoperative", faults=["rcd"])
    text = text_of(render([ConnectorView("evse-1", idle)], system()))
    assert row_of(text, "evse-1") == ["evse-1", "C", "Inoperative (rcd)", "16.0", "-", "-", "-", "-", "-", "-"]


def test_a_connector_without_status_says_why_instead_of_breaking_the_table() -> None:
    views = [ConnectorView("evse-1", problem="restarting"), ConnectorView("evse-2", problem="no answer")]
    text = text_of(render(views, system()))
    assert row_of(text, "evse-1") == ["evse-1", "-", "restarting", *["-"] * 7]
    assert row_of(text, "evse-2")[2] == "no answer"


def test_render_shows_restarts_and_only_the_latest_events() -> None:
    events = [f"root: evse-1 event {i}" for i in range(8)]
    text = text_of(render([], system(restarts={"evse-2": 2, "evse-1": 1}, events=events), max_events=3))
    assert "supervision: 3 restart(s) (evse-1 1x, evse-2 2x), 3 actor(s) up" in text
    assert [line.strip() for line in text.splitlines() if "root: " in line] == events[-3:]
    assert "no connectors in this topology" in text


def test_render_shows_a_halted_system_and_a_silent_kernel() -> None:
    assert "HALTED: root gave up" in text_of(render([], system(halted=True, reason="root gave up")))
    assert "the kernel did not answer" in text_of(render([ConnectorView("evse-1", status())], None))


def test_on_a_narrow_terminal_names_and_numbers_stay_whole() -> None:
    views = [ConnectorView("evse-1", status()), ConnectorView("evse-22", problem="restarting")]
    text = text_of(render(views, system()), width=60)
    assert all(len(line) <= 60 for line in text.splitlines())
    assert row_of(text, "evse-1")[:2] == ["evse-1", "C"] and "evse-22" in text
    for number in ("16.0", "11.04", "1.235"):
        assert number in text


# --- plain output -------------------------------------------------------------------------------------


def test_change_line() -> None:
    assert change_line(ConnectorView("evse-1", status())) == "evse-1: Charging 16.0 A session evse-1-3 pilot C"
    idle = status(state="Available", pilot="A", current_limit_a=6.0, session_id=None, faults=["rcd", "lock_failure"])
    assert change_line(ConnectorView("evse-1", idle)) == "evse-1: Available 6.0 A pilot A faults rcd,lock_failure"
    assert change_line(ConnectorView("evse-2", problem="restarting")) == "evse-2: restarting"


def test_plain_display_prints_each_event_once_and_a_line_per_change_not_per_poll() -> None:
    out = io.StringIO()
    display = PlainDisplay(out)
    with display:
        display.show(system(events=["root: evse-1 started"]), [ConnectorView("evse-1", status())])
        # power and energy move on every poll while charging: no line for that
        display.show(system(events=["root: evse-1 started"]), [ConnectorView("evse-1", status(power_w=7000.0))])
        display.show(system(events=["root: evse-1 started"]), None)  # not polled this round
        display.show(
            system(events=["root: evse-1 started", "root: evse-1 exited"]),
            [ConnectorView("evse-1", problem="restarting")],
        )
        display.show(
            system(events=["root: evse-1 started", "root: evse-1 exited"]), [ConnectorView("evse-1", status())]
        )
    assert out.getvalue().splitlines() == [
        "  root: evse-1 started",
        "evse-1: Charging 16.0 A session evse-1-3 pilot C",
        "  root: evse-1 exited",
        "evse-1: restarting",
        "evse-1: Charging 16.0 A session evse-1-3 pilot C",
    ]


def energy_plan(amps: float = 16.0, reason: str = "fuse") -> EnergyPlan:
    return EnergyPlan(
        planner="HIGHS",
        status="optimal",
        fallback_reason=None,
        solve_s=0.012,
        decided_at=1_700_000_000.0,
        allocations=[
            EvseAllocation(
                evse="evse-1",
                amps=amps,
                reason=reason,
                detail="feeder L1 is full (16.0 A for EVs after non-EV load)",
                node="feeder",
                need_kwh=7.5,
                external_limit_a=20.0,
            )
        ],
        nodes=[
            NodeLoad(
                node="feeder", phase="L1", unit="A", limit=32.0, cap=None, non_ev=16.0, planned=amps, headroom=0.0
            ),
            NodeLoad(
                node="grid", phase="power", unit="kW", limit=None, cap=40.0, non_ev=3.7, planned=11.0, headroom=25.3
            ),
        ],
        caps=[NodeCapView(node="grid", amps=None, kw=40.0, valid_until=None, source="dso")],
        slot_start=1_699_999_200.0,
        slot_minutes=15.0,
        schedule={"evse-1": [amps, 16.0, 0.0]},
        price=[0.3, 0.3, 0.5],
        pv_surplus_kw=[0.0, 2.0, 0.0],
    )


def test_render_shows_each_energy_managers_limits_reasons_and_schedule() -> None:
    plans = [PlanView("energy", energy_plan()), PlanView("other-energy", problem="restarting")]
    text = text_of(render([ConnectorView("evse-1", status())], system(), plans=plans))
    lines = [line.strip() for line in text.splitlines()]
    assert any(line.startswith("energy: HIGHS (optimal), decided in 12 ms") for line in lines)
    evse = next(line for line in lines if line.startswith("evse-1") and "fuse" in line)
    assert "16.0 A" in evse and "needs 7.50 kWh" in evse and "external limit 20 A" in evse
    assert next(line for line in lines if line.startswith("feeder L1")).split() == [
        "feeder",
        "L1",
        "32.0",
        "A",
        "-",
        "16.0",
        "16.0",
        "0.0",
    ]
    assert next(line for line in lines if line.startswith("grid power")).split()[2:] == [
        "-",
        "40.0",
        "kW",
        "3.7",
        "11.0",
        "25.3",
    ]
    assert "cap on grid: 40 kW (dso)" in lines
    schedule = lines[next(k for k, line in enumerate(lines) if line.startswith("schedule (A)")) :]
    assert (
        next(line for line in schedule if line.startswith("evse-1")).split()[1:]
        == ["16.0", "16.0", "0.0"]
        == [
            "16.0",
            "16.0",
            "0.0",
        ]
    )
    assert next(line for line in lines if line.startswith("PV kW")).split()[2:] == ["0.0", "2.0", "0.0"]
    assert "other-energy: restarting" in lines


def test_plain_display_prints_a_plan_when_an_allocation_changes() -> None:
    out = io.StringIO()
    with PlainDisplay(out) as display:
        display.show(system(), [], [PlanView("energy", energy_plan())])
        display.show(system(), [], [PlanView("energy", energy_plan())])  # the same decision again: quiet
        display.show(system(), [], [PlanView("energy", energy_plan(amps=10.0))])
    heads = [line for line in out.getvalue().splitlines() if line.startswith("energy: HIGHS")]
    assert len(heads) == 2


def test_new_events_copes_with_events_the_kernel_no_longer_keeps() -> None:
    kept = [f"e{i}" for i in range(300, 500)]
    assert new_events(system(events=kept, events_total=500), 0) == kept  # the oldest 300 are gone
    assert new_events(system(events=kept, events_total=500), 497) == ["e497", "e498", "e499"]
    assert new_events(system(events=kept, events_total=500), 500) == []


def test_live_display_draws_the_table_on_a_terminal() -> None:
    console = Console(file=io.StringIO(), width=150, force_terminal=True, color_system=None)
    with LiveDisplay("demo", console=console) as display:
        display.show(system(events=["root: evse-1 started"]), [ConnectorView("evse-1", status())])
        display.show(system(events=["root: evse-1 started"]), None)  # keeps the rows it had
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert "charger: site 'demo'" in text and "root: evse-1 started" in text
    assert row_of(text.split("charger: site")[-1], "evse-1")[2] == "Charging"


# --- the summary ----------------------------------------------------------------------------------------


def test_summary_per_connector_and_total_in_kwh_with_three_decimals() -> None:
    histories: dict[str, SessionHistory | str] = {
        "evse-1": SessionHistory(sessions=[completed("evse-1", 1234.4), completed("evse-1", 2000.0)]),
        "evse-2": SessionHistory(sessions=[completed("evse-2", 10.0)]),
        "evse-3": SessionHistory(sessions=[]),
    }
    assert summary_lines(histories) == [
        f"{SUMMARY_HEADER} (all journaled sessions):",
        "  evse-1: 2 sessions, 3.234 kWh",
        "  evse-2: 1 session, 0.010 kWh",
        "  evse-3: 0 sessions, 0.000 kWh",
        "  total:  3 sessions, 3.244 kWh",
    ]


def test_summary_counts_only_sessions_that_ended_during_the_run() -> None:
    history = SessionHistory(sessions=[completed("evse-1", 500.0, stopped_at=90.0), completed("evse-1", 700.0, 110.0)])
    lines = summary_lines({"evse-1": history}, since=100.0)
    assert lines[0] == f"{SUMMARY_HEADER} (this run):"
    assert lines[1:] == ["  evse-1: 1 session, 0.700 kWh", "  total:  1 session, 0.700 kWh"]


def test_summary_reports_connectors_without_history_and_sessions_without_a_meter() -> None:
    histories: dict[str, SessionHistory | str] = {
        "evse-1": SessionHistory(sessions=[completed("evse-1", None), completed("evse-1", 1500.0)]),
        "evse-2": "restarting",
        "evse-10": "no answer",
    }
    assert summary_lines(histories)[1:] == [
        "  evse-1:  2 sessions, 1.500 kWh (1 without a meter reading)",
        "  evse-2:  no history: restarting",
        "  evse-10: no history: no answer",
        "  total:   2 sessions, 1.500 kWh (1 without a meter reading); 2 connector(s) gave no history",
    ]


def test_summary_without_connectors_is_one_line() -> None:
    assert summary_lines({}) == [f"{SUMMARY_HEADER}: no connectors in this topology"]


# --- against a real actor system --------------------------------------------------------------------------


def fake(name: str, **config: Any) -> ChildSpec:
    # Outside a topology file nobody fills in the schema's defaults.
    defaults = {"connector_id": 1, "charge_after_s": 0.0, "sessions_wh": [], "refuse_history": False}
    full = {**defaults, "hang_first_status_s": 0.0, **config}
    return worker(name, actor=FAKE, config=full)


def test_poller_and_histories_against_real_actors(start_tree) -> None:
    root = group(
        "root", fake("evse-1", sessions_wh=[1000.0, 250.0]), fake("evse-2", refuse_history=True), worker("probe")
    )
    with start_tree(root) as running:
        running.pid_of("probe")
        client = Client(running.asys, running.kernel, label="view-test")
        views = ConnectorPoller(client, ["evse-1", "ghost", "probe"], timeout=2.0).poll()
        assert views[0].status is not None and views[0].status.state == "Charging"
        assert views[1] == ConnectorView("ghost", problem="restarting")  # not registered: down or between restarts
        assert views[2].status is None and views[2].problem.startswith("bad_request")  # no such command

        histories = fetch_histories(client, ["evse-1", "evse-2", "ghost"], timeout=2.0, wait_restarting=0.3)
        assert isinstance(histories["evse-1"], SessionHistory)
        assert [s.energy_wh for s in histories["evse-1"].sessions] == [1000.0, 250.0]
        assert histories["evse-2"] == "rejected: history is switched off in this fake"
        assert histories["ghost"] == "not running"


def test_a_connector_that_hangs_shows_as_no_answer_and_the_next_poll_recovers(start_tree) -> None:
    with start_tree(group("root", fake("evse-1", hang_first_status_s=1.0))) as running:
        running.pid_of("evse-1")
        poller = ConnectorPoller(Client(running.asys, running.kernel, label="view-test"), ["evse-1"], timeout=0.3)
        assert poller.poll() == [ConnectorView("evse-1", problem="no answer")]
        deadline = time.monotonic() + 10
        while (view := poller.poll()[0]).status is None:  # the late answer to the first poll is no answer to these
            assert time.monotonic() < deadline, view
        assert view.status.connector == "evse-1" and view.status.state == "Charging"
