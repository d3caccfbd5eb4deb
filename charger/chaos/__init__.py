"""Fault injection: kill any actor of a running station mid-session, then check that nothing was lost.

`python -m charger.chaos TOPOLOGY` runs the cases and prints a table; `tests/faults/` runs them in CI;
docs/faults.md explains the invariants. The parts are reusable (a recovery benchmark drives the same
phases and kills the same targets): `Station` boots and drives a station, `TARGETS` and `PHASES` name
what can be killed and when, `run_case` runs one case and returns a `CaseResult`.
"""
