"""Each benchmark runs end to end in a tiny configuration and prints its JSON summary last.

Only the shape of the result is checked, never a timing: these runs share the machine with the rest
of the suite, so figures here mean nothing (bench/RESULTS.md has the real measurements).
The benchmarks start actor systems whose Admin inherits stdout, so their output goes to a file,
never a pipe (a pipe would be held open by the Admin and the call would hang).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]


def _run_json(module: str, args: list[str], out: Path) -> dict[str, Any]:
    with open(out, "wb") as sink:
        proc = subprocess.run(
            [sys.executable, "-m", module, *args, "--json"],
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
            timeout=240,
            check=False,
        )
    text = out.read_text(encoding="utf-8", errors="replace")
    assert proc.returncode == 0, f"{module} exited with {proc.returncode}:\n{text[-3000:]}"
    last = text.strip().splitlines()[-1]
    result = json.loads(last)
    assert isinstance(result, dict)
    return result


def _positive(result: dict[str, Any], keys: list[str]) -> None:
    for key in keys:
        assert key in result, f"missing {key}"
        value = result[key]
        assert isinstance(value, int | float) and not isinstance(value, bool), f"{key} = {value!r}"
        assert math.isfinite(value) and value > 0, f"{key} = {value!r}"


def test_messaging_benchmark_smoke(tmp_path: Path) -> None:
    result = _run_json(
        "bench.messaging", ["--n", "50", "--warmup", "10", "--rounds", "2", "--port", "19550"], tmp_path / "out.txt"
    )
    paths = ("framework", "thespian", "asyncio")
    _positive(result, [f"{p}_{k}" for p in paths for k in ("p50_ms", "p99_ms", "rps")])
    _positive(result, ["ratio_framework_thespian", "n"])
    assert result["n"] == 50
    assert result["date"] and result["machine"]
    assert result["framework_page_faults_per_call"] >= 0


def test_restart_benchmark_smoke(tmp_path: Path) -> None:
    result = _run_json(
        "bench.restart", ["--kills", "3", "--warmup", "1", "--rounds", "2", "--port", "19551"], tmp_path / "out.txt"
    )
    _positive(result, ["restart_p50_ms", "restart_p99_ms", "kills", "thespian_recreate_p50_ms"])
    assert result["kills"] == 3
    assert result["restart_min_ms"] <= result["restart_p50_ms"] <= result["restart_p99_ms"] <= result["restart_max_ms"]
    assert result["date"] and result["machine"]
