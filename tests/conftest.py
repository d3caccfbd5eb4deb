"""Shared fixtures: every actor system gets its own admin port and is shut down and checked for leftovers."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import pytest
from charger.supervisors.spec import ChildKind, ChildSpec, Restart, Strategy, SupFlags

from charger.testing import RunningSystem, free_port, running_system


@pytest.fixture
def start_tree(tmp_path: Path) -> Iterator[Callable[[ChildSpec], AbstractContextManager[RunningSystem]]]:
    def start(root: ChildSpec) -> AbstractContextManager[RunningSystem]:
        return running_system(root, free_port(), str(tmp_path), log_file=str(tmp_path / "system.log"))

    yield start


def worker(name: str, actor: str = "tests.support.probes:Probe", **kw: object) -> ChildSpec:
    return ChildSpec(id=name, actor=actor, **kw)  # type: ignore[arg-type]


def group(
    name: str,
    *children: ChildSpec,
    strategy: Strategy = Strategy.ONE_FOR_ONE,
    intensity: int = 10,
    period: float = 10.0,
    restart: Restart = Restart.PERMANENT,
    own_process: bool = True,
) -> ChildSpec:
    return ChildSpec(
        id=name,
        kind=ChildKind.SUPERVISOR,
        flags=SupFlags(strategy=strategy, intensity=intensity, period=period),
        restart=restart,
        children=children,
        own_process=own_process,
    )
