"""One SIL station per test module, booted from topology/site.yaml by `charger.chaos.Station`; the
chaos library's own threads and descriptors are checked for leaks around the whole module."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from charger.chaos.station import Station
from tests.support.resources import no_leaks

SITE = Path(__file__).resolve().parents[2] / "topology" / "site.yaml"


@pytest.fixture(scope="module")
def _module_leaks() -> Iterator[None]:
    yield from no_leaks(settle=5.0)


@pytest.fixture(scope="module")
def station(_module_leaks: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Station]:
    st = Station(SITE, tmp_path_factory.mktemp("chaos"))
    try:
        st.boot()
        yield st
    finally:
        st.stop()
    assert st.titles() == {}, "a process of the station survived its stop"
