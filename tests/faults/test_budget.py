"""The run's books on restart budgets: a kill that would exceed a supervisor's intensity is seen coming."""

from __future__ import annotations

from pathlib import Path

import yaml

from charger.chaos.budget import Budgets
from charger.chaos.cases import CaseResult
from charger.chaos.report import table

SITE = Path(__file__).resolve().parents[2] / "topology" / "site.yaml"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def site_budgets(clock: Clock) -> Budgets:
    return Budgets(yaml.safe_load(SITE.read_text())["supervision"], clock)


def test_the_supervision_tree_gives_each_child_its_supervisor_and_each_supervisor_its_budget() -> None:
    books = site_budgets(Clock())
    assert books.parent["evse-1"] == "connector-1" and books.parent["connector-1"] == "root"
    assert books.parent["auth"] == "root" and books.parent["rig-1"] == "sil"
    assert (books.of["root"].intensity, books.of["root"].period) == (10, 60.0)
    assert (books.of["connector-1"].intensity, books.of["connector-1"].period) == (1, 5.0)  # topology defaults


def test_a_second_kill_within_a_groups_period_waits_for_its_window() -> None:
    clock = Clock()
    books = site_budgets(clock)
    assert books.room_for("evse-1") == ("connector-1", 0.0)
    books.killed("evse-1")
    clock.now += 3.0
    supervisor, wait = books.room_for("board-1")
    assert supervisor == "connector-1" and abs(wait - 2.0) < 1e-9
    clock.now += 2.5
    assert books.room_for("board-1") == ("connector-1", 0.0)


def test_roots_budget_counts_kills_and_restarts_the_kernel_reports() -> None:
    clock = Clock()
    books = site_budgets(clock)
    for child in ["auth", "backend", "api", "fuse", "connector-1"] * 2:
        assert books.room_for(child)[1] == 0.0
        books.killed(child)
        clock.now += 1.0
    assert books.room_for("auth") == ("root", 50.0)  # the 11th within 60 s: wait for the first to age out
    clock.now += 51.0
    assert books.room_for("auth")[1] == 0.0
    # the run's own kills are not counted twice; an escalation the kernel reports is
    assert books.observe({"auth": 2, "backend": 2}) == {}
    assert books.observe({"auth": 2, "connector-2": 1}) == {"connector-2": 1}
    books.reset()
    assert all(not b.restarts for b in books.of.values())


def test_a_halted_system_is_a_failure_with_its_reason() -> None:
    halted = CaseResult("load-share", "charging", killed="fuse", halted="halted: root reached max restart intensity")
    lines = table([halted])
    assert lines[2].endswith("FAIL") and "the system halted" in lines[2]
    assert "load-share@charging: the system halted: halted: root reached max" in lines[3]
    assert not halted.ok
