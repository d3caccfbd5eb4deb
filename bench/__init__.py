"""Benchmarks of the charger runtime against its floors (bare Thespian, raw asyncio).

Run from the repository root: ``python -m bench.messaging`` and ``python -m bench.restart``
(``--help`` for options, ``--json`` for one machine-readable line). Results: ``bench/RESULTS.md``.
"""
