"""Child specs as data: what is refused before anything starts, and the trip through an `Init`."""

from __future__ import annotations

import pytest
from charger.supervisors.spec import ChildKind, ChildSpec, InvalidSpec, spec_from_config, spec_to_config

from tests.conftest import group, worker


def test_a_tree_survives_the_trip_through_its_config_form() -> None:
    tree = group("root", worker("a"), group("inner", worker("x"), own_process=False))
    again = spec_from_config(spec_to_config(tree))
    assert again == tree
    assert [s.own_process for s in again.walk() if s.kind is ChildKind.SUPERVISOR] == [True, False]


def test_only_a_supervisor_can_share_its_parents_process() -> None:
    with pytest.raises(InvalidSpec, match="only a supervisor"):
        ChildSpec(id="a", actor="Ticker", own_process=False)


def test_own_process_must_be_a_bool() -> None:
    with pytest.raises(InvalidSpec, match="own_process"):
        ChildSpec(id="s", kind=ChildKind.SUPERVISOR, own_process="no")  # type: ignore[arg-type]
