"""Kill the EnergyManager of topology/site-energy.yaml mid-session (site.yaml has a LoadShare in its
place): the session goes on with the same transaction, on the failsafe current until the new process
plans again, and loses nothing."""

from __future__ import annotations

import os

import pytest

from charger.chaos.cases import run_case
from charger.chaos.station import Station
from charger.chaos.targets import PHASES, TARGETS
from tests.faults.test_matrix import CI_CASES, FULL, check

CI = [c for c in CI_CASES if c[0] == "energy-manager"]
REST = [c for c in FULL if c[0] == "energy-manager"]


def test_the_energy_topology_has_an_energy_manager_and_no_load_share(energy_station: Station) -> None:
    assert energy_station.layout.energy_manager == "energy" and energy_station.layout.load_share is None
    plan = energy_station.call("energy.plan")
    assert plan, "the energy manager answers with its plan"


@pytest.mark.parametrize(("target", "phase"), CI, ids=[f"{t}@{p}" for t, p in CI])
def test_a_killed_energy_manager_loses_nothing(energy_station: Station, target: str, phase: str) -> None:
    check(run_case(energy_station, TARGETS[target], PHASES[phase]))


@pytest.mark.faults_full
@pytest.mark.skipif(not os.environ.get("CHARGER_FAULTS_FULL"), reason="the full matrix: set CHARGER_FAULTS_FULL=1")
@pytest.mark.parametrize(("target", "phase"), REST, ids=[f"{t}@{p}" for t, p in REST])
def test_full_matrix(energy_station: Station, target: str, phase: str) -> None:
    check(run_case(energy_station, TARGETS[target], PHASES[phase]))
