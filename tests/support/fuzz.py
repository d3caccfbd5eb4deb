"""Hypothesis settings shared by the boundary fuzz tests (docs/robustness.md lists them).

Two tiers: `PURE` for parsers and decoders called as plain functions (thousands of cases, fast), and
`live(n)` for garbage sent through a running component (real processes, sockets or ptys), where each
case costs a round trip and a few hundred cases are what fits a CI run.
"""

from __future__ import annotations

from hypothesis import HealthCheck, Phase, settings

__all__ = ["PURE", "PURE_EXAMPLES", "ROUND_TRIP", "live"]

PURE_EXAMPLES = 2000
"""Cases per pure-level property: enough that every branch of a parser sees garbage many times over."""

PURE = settings(max_examples=PURE_EXAMPLES, deadline=None)
"""For pure functions: no per-case deadline (a loaded CI machine would make it flaky), nothing else relaxed."""

ROUND_TRIP = settings(max_examples=PURE_EXAMPLES // 2, deadline=None)
"""For "valid input comes back unchanged": the valid space is narrow, so half the garbage budget covers it."""


def live(examples: int) -> settings:
    """For a test that drives a running component from a module-scoped fixture: the fixture is shared on
    purpose (the point is that one component survives all the cases), and shrinking a failure would
    replay it hundreds of times against the already-hurt component, so failures are reported unshrunk."""
    return settings(
        max_examples=examples,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        phases=[Phase.explicit, Phase.reuse, Phase.generate],
    )
