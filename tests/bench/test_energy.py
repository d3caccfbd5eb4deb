"""`python -m bench.energy` runs end to end on tiny parks and prints its JSON summary last.

Only the shape of the result is checked, never a figure: the run shares the machine with the rest of
the suite (bench/RESULTS.md has the real measurements).
"""

from __future__ import annotations

from pathlib import Path

from tests.bench.test_bench_smoke import _positive, _run_json

ROW_FIELDS = ["build_s", "first_solve_s", "resolve_s", "resolve_max_s", "greedy_s", "variables", "sessions"]
COMPARED = ["energy_kwh", "cost", "peak_import_kw"]


def test_energy_benchmark_smoke(tmp_path: Path) -> None:
    result = _run_json(
        "bench.energy",
        ["--evse", "12", "--evse", "200", "--slots", "4", "--resolves", "2", "--qp-max", "12"],
        tmp_path / "out.txt",
    )
    assert result["evse"] == [12, 200]
    assert result["slots"] == 4
    assert result["date"] and result["machine"]
    for key in ("build_s", "first_solve_s", "resolve_s", "resolve_solver_s"):
        for n in (12, 200):
            assert isinstance(result[f"{key}_{n}"], float), key
    _positive(result, ["resolve_s_200"])
    for key in ("cost_ratio_opt_greedy", "energy_ratio_opt_greedy"):
        assert result[key] is None or isinstance(result[key], float), key
    assert isinstance(result["violations"], int) and result["violations"] >= 0
    assert isinstance(result["target_cost_met"], bool) and isinstance(result["target_energy_met"], bool)
    assert "target_resolve_met" not in result  # the resolve target is stated for 96 slots only
    rows = result["rows"]
    assert [row["evse"] for row in rows] == [12, 200]
    for row in rows:
        _positive(row, ROW_FIELDS)
        for prefix in ("opt", "greedy"):
            for field in COMPARED:
                assert row[f"{prefix}_{field}"] >= 0 or field == "cost", f"{prefix}_{field}"
            assert isinstance(row[f"{prefix}_violations"], int)
        assert row["planner"] in ("HIGHS", "greedy")
    assert "qp_resolve_s" in rows[0] and "qp_resolve_s" not in rows[1]
