"""The parts of a tree of limits: nodes, EVSEs, the violations found, and the checks on their shape.

A `LimitNode` is a point of supply with a limit (grid connection, transformer, feeder, fuse); an `Evse`
is a leaf. Each part checks its own fields when it is made; `structure_problems` checks how they fit
together (names, parents, cycles, one root). `charger.protocols.limit_tree` builds the tree from them
and re-exports everything here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Literal

import numpy as np
import numpy.typing as npt

__all__ = [
    "PHASES",
    "POWER",
    "Evse",
    "FloatArray",
    "LimitNode",
    "LimitTreeError",
    "Phase",
    "Violation",
    "structure_problems",
]

Phase = Literal["L1", "L2", "L3"]
PHASES: Final[tuple[Phase, Phase, Phase]] = ("L1", "L2", "L3")
POWER: Final = "power"
"""The `phase` of a row or violation that limits a node's power rather than one conductor."""

FloatArray = npt.NDArray[np.float64]
PhaseLimits = float | tuple[float, float, float]


class LimitTreeError(ValueError):
    """A tree of limits that cannot be used; `problems` lists every reason, one sentence each."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        super().__init__("invalid limit tree: " + "; ".join(self.problems))


def _bad_number(value: object, *, allow_inf: bool = False) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return True
    return math.isnan(value) or (math.isinf(value) and not allow_inf)


def _check_limit(what: str, value: float | None, problems: list[str]) -> None:
    if value is None:
        return
    if _bad_number(value, allow_inf=True) or value < 0:
        problems.append(f"{what} must be a number >= 0 (A or kW), got {value!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class LimitNode:
    """A point of the site's supply where a limit applies: grid connection, transformer, feeder, fuse."""

    name: str
    parent: str | None = None
    """The node above; None for the grid connection (the root)."""
    current_limit_a: PhaseLimits | None = None
    """Rated current per phase: one figure for all three phases, or (L1, L2, L3). None: no current limit."""
    power_limit_kw: float | None = None
    """Limit on the sum of the power of everything below (a contracted grid cap, a transformer rating)."""
    voltage_v: float = 230.0
    """Phase-to-neutral voltage, to turn a measured non-EV current into power for `power_limit_kw`."""

    def __post_init__(self) -> None:
        problems: list[str] = []
        if not isinstance(self.name, str) or not self.name:
            problems.append(f"node name must be a non-empty string, got {self.name!r}")
        limits = self.current_limit_a
        if isinstance(limits, tuple):
            if len(limits) != 3:
                problems.append(f"node {self.name!r}: current_limit_a needs 3 phases (L1, L2, L3), got {limits!r}")
            for phase, value in zip(PHASES, limits, strict=False):
                _check_limit(f"node {self.name!r}: current_limit_a {phase}", value, problems)
        else:
            _check_limit(f"node {self.name!r}: current_limit_a", limits, problems)
        _check_limit(f"node {self.name!r}: power_limit_kw", self.power_limit_kw, problems)
        if _bad_number(self.voltage_v) or self.voltage_v <= 0:
            problems.append(f"node {self.name!r}: voltage_v must be > 0, got {self.voltage_v!r}")
        if problems:
            raise LimitTreeError(problems)

    @property
    def phase_limits_a(self) -> tuple[float, float, float]:
        """Current limit on L1, L2, L3; infinite where there is none."""
        limits = self.current_limit_a
        if limits is None:
            return (math.inf, math.inf, math.inf)
        if isinstance(limits, tuple):
            return (float(limits[0]), float(limits[1]), float(limits[2]))
        return (float(limits), float(limits), float(limits))

    @property
    def power_limit(self) -> float:
        return math.inf if self.power_limit_kw is None else float(self.power_limit_kw)


@dataclass(frozen=True, slots=True, kw_only=True)
class Evse:
    """A leaf of the tree: one charging point whose current the energy manager sets."""

    name: str
    parent: str
    max_current_a: float = 32.0
    min_current_a: float = 6.0
    """Below this the EVSE cannot charge (IEC 61851-1: 6 A is the lowest PWM current), so it gets 0 or at least this."""
    phases: Literal[1, 3] = 3
    grid_phase: Phase = "L1"
    """The grid phase a single-phase EVSE is wired to; ignored for three-phase EVSEs."""
    voltage_v: float = 230.0

    def __post_init__(self) -> None:
        problems: list[str] = []
        if not isinstance(self.name, str) or not self.name:
            problems.append(f"EVSE name must be a non-empty string, got {self.name!r}")
        if not isinstance(self.parent, str) or not self.parent:
            problems.append(f"EVSE {self.name!r}: parent must name a node, got {self.parent!r}")
        if _bad_number(self.max_current_a) or self.max_current_a <= 0:
            problems.append(f"EVSE {self.name!r}: max_current_a must be > 0, got {self.max_current_a!r}")
        if _bad_number(self.min_current_a) or self.min_current_a < 0:
            problems.append(f"EVSE {self.name!r}: min_current_a must be >= 0, got {self.min_current_a!r}")
        elif not _bad_number(self.max_current_a) and self.min_current_a > self.max_current_a:
            problems.append(
                f"EVSE {self.name!r}: min_current_a {self.min_current_a:g} A is above max_current_a "
                f"{self.max_current_a:g} A"
            )
        if self.phases not in (1, 3):
            problems.append(f"EVSE {self.name!r}: phases must be 1 or 3, got {self.phases!r}")
        if self.grid_phase not in PHASES:
            problems.append(f"EVSE {self.name!r}: grid_phase must be one of L1, L2, L3, got {self.grid_phase!r}")
        if _bad_number(self.voltage_v) or self.voltage_v <= 0:
            problems.append(f"EVSE {self.name!r}: voltage_v must be > 0, got {self.voltage_v!r}")
        if problems:
            raise LimitTreeError(problems)

    @property
    def loaded_phases(self) -> tuple[int, ...]:
        """Indices (0 = L1) of the grid phases this EVSE's current flows on."""
        return (0, 1, 2) if self.phases == 3 else (PHASES.index(self.grid_phase),)

    @property
    def kw_per_a(self) -> float:
        """Power drawn per ampere of (per-phase) current."""
        return self.voltage_v * self.phases / 1000.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Violation:
    """One limit exceeded: at a node (a phase conductor or its power) or at an EVSE (its own range)."""

    where: str
    phase: str
    """"L1".."L3", "power" for a node's power limit, or "range" for an EVSE outside 0 or [min, max]."""
    load: float
    limit: float

    def __str__(self) -> str:
        unit = "kW" if self.phase == POWER else "A"
        return f"{self.where} {self.phase}: {self.load:.3f} {unit} over {self.limit:.3f} {unit}"


def structure_problems(nodes: Sequence[LimitNode], evses: Sequence[Evse]) -> list[str]:
    """Every reason these parts do not make one tree: duplicate names, unknown parents, cycles, roots."""
    problems: list[str] = []
    seen: set[str] = set()
    items: list[LimitNode | Evse] = [*nodes, *evses]
    for item in items:
        if item.name in seen:
            problems.append(f"name {item.name!r} is used more than once")
        seen.add(item.name)
    parents = {node.name: node.parent for node in nodes}
    roots = [node.name for node in nodes if node.parent is None]
    if len(roots) != 1:
        problems.append(f"the tree needs exactly one root node (parent None), found {len(roots)}: {roots}")
    evse_names = {evse.name for evse in evses}
    for node in nodes:
        if node.parent is not None and node.parent not in parents:
            where = "an EVSE" if node.parent in evse_names else "unknown"
            problems.append(f"node {node.name!r}: parent {node.parent!r} is {where}")
    for evse in evses:
        if evse.parent not in parents:
            where = "an EVSE" if evse.parent in evse_names else "unknown"
            problems.append(f"EVSE {evse.name!r}: parent {evse.parent!r} is {where}")
    reported: set[str] = set()
    for start, first_parent in parents.items():
        chain, name = [start], first_parent
        while name is not None and name in parents and name not in chain:
            chain.append(name)
            name = parents[name]
        if name is not None and name in chain and name not in reported:
            loop = chain[chain.index(name) :]
            reported.update(loop)
            problems.append(f"cycle of nodes: {' -> '.join([*loop, name])}")
    return problems
