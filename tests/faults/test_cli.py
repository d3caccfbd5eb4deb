"""`python -m charger.chaos` as a user runs it: one case end to end with ``--json`` (exit 0), and usage
errors (exit 2). Output goes to a file, never a pipe: the station's admin daemon inherits it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SITE = REPO / "topology" / "site.yaml"


def chaos(args: list[str], out: Path, timeout: float = 300.0) -> tuple[int, str]:
    with open(out, "wb") as sink:
        proc = subprocess.run(
            [sys.executable, "-m", "charger.chaos", *args],
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
            timeout=timeout,
            check=False,
        )
    return proc.returncode, out.read_text(encoding="utf-8", errors="replace")


def test_one_case_prints_its_table_and_one_json_object_last(tmp_path: Path) -> None:
    state = tmp_path / "state"
    code, text = chaos([str(SITE), "--cases", "meter@charging", "--json", "--state-dir", str(state)], tmp_path / "o")
    assert code == 0, text[-3000:]
    lines = text.strip().splitlines()
    result = json.loads(lines[-1])
    assert result["ok"] is True and result["error"] == ""
    (case,) = result["cases"]
    assert case["case"] == "meter@charging" and case["recovered"] and case["ok"]
    assert case["energy_error_wh"] == 0 and case["halted"] == ""
    assert any(line.startswith("meter@charging") and line.endswith("ok") for line in lines)
    assert (state / "boot-1.log").read_text().count("running,") == 1  # the boot log is kept


@pytest.mark.parametrize(
    ("args", "says"),
    [
        ([str(SITE), "--targets", "toaster"], "unknown target toaster"),
        ([str(SITE), "--cases", "auth@idle"], "unknown phase idle"),
        (["no/such/topology.yaml"], "no such file"),
        ([], "the following arguments are required: topology"),
    ],
)
def test_a_usage_error_exits_2_and_says_what_is_wrong(tmp_path: Path, args: list[str], says: str) -> None:
    code, text = chaos(args, tmp_path / "o", timeout=60.0)
    assert code == 2 and says in text, text
