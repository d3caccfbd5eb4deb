"""`python -m bench.recovery` runs end to end with one kill per type and prints its JSON summary last.

Only the shape of the result and that every kill was served again (the benchmark exits 1 otherwise)
are checked, never a figure: the run shares the machine with the rest of the suite (bench/RESULTS.md
has the real measurements).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.recovery import TYPES, main
from tests.bench.test_bench_smoke import _positive, _run_json

FEW = ["evse-manager", "backend-link", "energy-manager", "supervisor", "whole-box"]


def test_every_kill_is_served_again_and_each_type_has_its_percentiles(tmp_path: Path) -> None:
    result = _run_json("bench.recovery", ["--kills", "1", "--types", ",".join(FEW)], tmp_path / "out.txt")
    assert sorted(result["types"]) == sorted(FEW) and result["kills"] == 1
    assert set(FEW) <= set(TYPES)
    for kind, figures in result["types"].items():
        assert figures["kills"] == 1, kind
        _positive(figures, ["p50_ms", "p99_ms"])
        assert figures["p50_ms"] == figures["p99_ms"]  # one kill: both are that kill
        assert {"target", "ratio_to_target", "met", "ratio_to_everest", "steps_p50_ms"} <= set(figures)
    assert {"bound", "session", "flowing", "csms"} <= set(result["types"]["backend-link"]["steps_p50_ms"])
    assert "plan" in result["types"]["energy-manager"]["steps_p50_ms"]
    box = result["types"]["whole-box"]
    _positive(box, ["since_boot_p50_ms", "since_boot_p99_ms"])
    assert box["since_boot_p50_ms"] < box["p50_ms"]  # the boot comes first
    assert result["everest_restart_s"] == 2.5 and "loadavg_1m_at_start" in result


def test_an_unknown_type_is_a_usage_error() -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--types", "nope"])
    assert exit_info.value.code == 2
