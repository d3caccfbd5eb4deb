"""topology/site.yaml as shipped, with its own CSMS: `python -m charger.boot` runs the SIL charger, the
`CsmsSim` actor and the `BackendLink`, and every session the cars charge reaches the CSMS as one
StartTransaction and one StopTransaction with the billed meter values (read back from the simulator's
frame record under the state directory).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

from charger.processes import TOKEN_VARIABLE, kill_all, token_processes, wait_until_gone
from charger.testing import free_port

ROOT = Path(__file__).resolve().parents[2]
SITE = ROOT / "topology" / "site.yaml"


def site_copy(tmp_path: Path) -> Path:
    """site.yaml on this test's own ports, with cars that leave after a few seconds."""
    text = SITE.read_text()
    for fixed in ("15021", "15022", "9180"):
        text = text.replace(fixed, str(free_port()))
    text = text.replace("port: 8765", "port: 0").replace("sleep 40", "sleep 4").replace("sleep 20", "sleep 3")
    path = tmp_path / "site.yaml"
    path.write_text(text)
    return path


def recorded(record: Path) -> tuple[list[tuple[str, dict[str, Any], str]], dict[str, dict[str, Any]]]:
    """(action, payload, unique id) of every CALL the CSMS received, in order; its results by unique id."""
    calls, results = [], {}
    for line in record.read_text().splitlines():
        entry = json.loads(line)
        frame = json.loads(entry["frame"]) if "frame" in entry else None
        if entry.get("dir") == "rx" and frame[0] == 2:
            calls.append((frame[2], frame[3], frame[1]))
        elif entry.get("dir") == "tx" and frame[0] == 3:
            results[frame[1]] = frame[2]
    return calls, results


def test_the_shipped_site_reports_its_sessions_to_its_own_csms(tmp_path: Path) -> None:
    state = tmp_path / "state"
    token = uuid.uuid4().hex
    cmd = [sys.executable, "-m", "charger.boot", str(site_copy(tmp_path)), "--duration", "30", "--no-view"]
    cmd += ["--state-dir", str(state), "--admin-port", str(free_port()), "--log-level", "INFO"]
    with (tmp_path / "boot.out").open("wb") as out:
        boot = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, TOKEN_VARIABLE: token})
    try:
        assert boot.wait(timeout=120) == 0, (tmp_path / "boot.out").read_text()
    finally:
        if boot.poll() is None:
            boot.kill()
        kill_all(token_processes(token))
    assert wait_until_gone(lambda: token_processes(token)) == []
    output = (tmp_path / "boot.out").read_text()
    assert "charger.csms: SIL-CHARGER-1: received StartTransaction" in output, output
    calls, results = recorded(state / "csms.frames.jsonl")
    actions = [action for action, _, _ in calls]
    assert actions[0] == "BootNotification"
    starts = {results[uid]["transactionId"]: payload for action, payload, uid in calls if action == "StartTransaction"}
    stops = [payload for action, payload, _ in calls if action == "StopTransaction"]
    assert {s["connectorId"] for s in starts.values()} == {1, 2} and len(stops) >= 2, actions
    assert len({s["transactionId"] for s in stops}) == len(stops)  # no session stopped twice
    authorized = {payload["idTag"] for action, payload, _ in calls if action == "Authorize"}
    assert {"04A1B2C3D4", "04F5E6D7C8"} <= authorized  # Auth asked the link, and the link the CSMS
    for stop in stops:
        start = starts[stop["transactionId"]]  # every Stop belongs to a Start the CSMS saw
        assert stop["reason"] == "EVDisconnected" and stop["meterStop"] > start["meterStart"]
    billed = {int(n): int(count) for n, count in re.findall(r"  evse-(\d): (\d+) sessions?,", output)}
    reported = {n: sum(1 for s in stops if starts[s["transactionId"]]["connectorId"] == n) for n in (1, 2)}
    assert all(billed[n] - 1 <= reported[n] <= billed[n] for n in (1, 2)), (billed, reported)  # the last may be late
    assert "Traceback" not in output
