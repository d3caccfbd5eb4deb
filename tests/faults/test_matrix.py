"""Kill each target of topology/site.yaml mid-session and check every invariant (docs/faults.md).

CI runs one phase per target, chosen so that together they cover every phase; the whole matrix
(every target x every phase, ~10 minutes) runs with ``CHARGER_FAULTS_FULL=1 pytest -m faults_full tests/faults``.
"""

from __future__ import annotations

import os

import pytest

from charger.chaos.cases import CaseResult, run_case
from charger.chaos.report import table
from charger.chaos.station import Station
from charger.chaos.targets import PHASES, TARGETS

CI_CASES = [
    ("evse-manager", "stopping"),
    ("board-driver", "charging"),
    ("meter", "paused"),
    ("auth", "authorizing"),
    ("backend-link", "csms-offline"),
    ("energy-manager", "charging"),
    ("load-share", "charging"),
    ("control-api", "paused"),
    ("supervisor", "charging"),
    ("whole-box", "charging"),
]
FULL = [(t, p) for t in TARGETS for p in PHASES if (t, p) not in CI_CASES]


def check(result: CaseResult) -> None:
    if result.skipped:
        pytest.skip(f"{result.case}: {result.skipped}")
    report = "\n".join(table([result]))
    assert result.recovered, report
    assert result.safety == [], report
    assert result.billing == [] and result.energy_error_wh == 0, report
    assert (result.missing, result.duplicate, result.out_of_order) == (0, 0, 0), report
    assert result.continuity == [], report
    assert result.cleanliness == [], report
    assert result.ok


def test_every_target_and_phase_is_covered_in_ci() -> None:
    assert {t for t, _ in CI_CASES} == set(TARGETS)
    assert {p for _, p in CI_CASES} == set(PHASES)


@pytest.mark.parametrize(("target", "phase"), CI_CASES, ids=[f"{t}@{p}" for t, p in CI_CASES])
def test_a_killed_target_loses_nothing(station: Station, target: str, phase: str) -> None:
    check(run_case(station, TARGETS[target], PHASES[phase]))


@pytest.mark.faults_full
@pytest.mark.skipif(not os.environ.get("CHARGER_FAULTS_FULL"), reason="the full matrix: set CHARGER_FAULTS_FULL=1")
@pytest.mark.parametrize(("target", "phase"), FULL, ids=[f"{t}@{p}" for t, p in FULL])
def test_full_matrix(station: Station, target: str, phase: str) -> None:
    check(run_case(station, TARGETS[target], PHASES[phase]))


def test_a_target_missing_from_the_topology_is_reported_not_run(station: Station) -> None:
    result = run_case(station, TARGETS["energy-manager"], PHASES["charging"])
    assert result.skipped == "not in topology" and result.ok
    assert "not in topology" in table([result])[2]
