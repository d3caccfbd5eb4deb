"""SIL stations booted by `charger.chaos.Station`, one per test module: from topology/site.yaml, and
(only for the modules that ask) from topology/site-energy.yaml, which has an EnergyManager in place of
the LoadShare. The chaos library's own threads and descriptors are checked for leaks around the module."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from charger.chaos.station import Station
from tests.support.resources import no_leaks

SITE = Path(__file__).resolve().parents[2] / "topology" / "site.yaml"
SITE_ENERGY = SITE.with_name("site-energy.yaml")


@pytest.fixture(scope="module")
def _module_leaks() -> Iterator[None]:
    yield from no_leaks(settle=5.0)


def _station(topology: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Station]:
    st = Station(topology, tmp_path_factory.mktemp("chaos"))
    try:
        st.boot()
        yield st
    finally:
        st.stop()
    assert st.titles() == {}, "a process of the station survived its stop"


@pytest.fixture(scope="module")
def station(_module_leaks: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Station]:
    yield from _station(SITE, tmp_path_factory)


@pytest.fixture(scope="module")
def energy_station(_module_leaks: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Station]:
    yield from _station(SITE_ENERGY, tmp_path_factory)
