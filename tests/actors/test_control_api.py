"""The control API over a real websocket, in a real actor system: JSON-RPC 2.0 answers, errors
for every kind of bad request, an event stream, and `python -m charger.ctl` against it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.sync.client import connect

from tests.conftest import free_port, group, worker

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def api(tmp_path_factory):  # type: ignore[no-untyped-def]
    from charger.testing import running_system

    state = tmp_path_factory.mktemp("api")
    port_file = state / "api.port"
    root = group(
        "root",
        worker("api", actor="ControlApi", config={"port": 0, "port_file": str(port_file)}),
        worker("probe"),
        intensity=50,
    )
    with running_system(root, free_port(), str(state), log_file=str(state / "system.log")) as system:
        url = f"ws://127.0.0.1:{port_file.read_text()}"
        yield system, url


def rpc(url: str, payload: object) -> object:
    with connect(url) as ws:
        ws.send(payload if isinstance(payload, str) else json.dumps(payload))
        return json.loads(ws.recv(timeout=10))


def test_status(api):
    _system, url = api
    answer = rpc(url, {"jsonrpc": "2.0", "id": 1, "method": "system.status", "params": {}})
    assert answer["id"] == 1 and not answer["result"]["halted"]
    assert set(answer["result"]["actors"]) == {"root", "api", "probe"}


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        ("{not json", -32700),
        ("[]", -32600),
        ('"a string"', -32600),
        ({"jsonrpc": "1.0", "id": 1, "method": "ping"}, -32600),
        ({"jsonrpc": "2.0", "id": 1, "method": ""}, -32600),
        ({"jsonrpc": "2.0", "id": 1, "method": "ping", "params": 3}, -32600),
        ({"jsonrpc": "2.0", "id": 1, "method": "ping", "extra": 1}, -32600),
        ({"jsonrpc": "2.0", "id": 1, "method": "no.such"}, -32601),
        ({"jsonrpc": "2.0", "id": 1, "method": "ping", "params": {"x": 1}}, -32602),
        ({"jsonrpc": "2.0", "id": 1, "method": "ping", "params": [1]}, -32602),
    ],
)
def test_bad_requests_get_the_specified_error(api, payload, code):
    _, url = api
    answer = rpc(url, payload)
    assert answer["error"]["code"] == code, answer


def test_batch_and_notifications(api):
    _, url = api
    batch = [
        {"jsonrpc": "2.0", "id": "a", "method": "ping"},
        {"jsonrpc": "2.0", "method": "ping"},  # a notification: no response
        {"jsonrpc": "2.0", "id": "b", "method": "nope"},
    ]
    answer = rpc(url, batch)
    assert [r["id"] for r in answer] == ["a", "b"]
    assert answer[0]["result"] == "pong" and answer[1]["error"]["code"] == -32601


def test_event_stream_reports_a_restart(api):
    system, url = api
    with connect(url) as ws:
        ws.send(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "events.subscribe"}))
        assert json.loads(ws.recv(timeout=10))["result"] == {"subscribed": True}
        os.kill(system.pid_of("probe"), signal.SIGKILL)
        texts: list[str] = []

        def restarted() -> bool:
            return (
                "root: probe exited: killed" in texts
                and "root: probe started" in texts[texts.index("root: probe exited: killed") :]
            )

        deadline = time.monotonic() + 10
        while not restarted() and time.monotonic() < deadline:
            texts.append(json.loads(ws.recv(timeout=10))["params"]["text"])
        assert restarted(), texts


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(max_size=300) | st.binary(max_size=300))
def test_fuzzed_frames_get_an_answer_and_the_api_keeps_working(api, frame):
    _system, url = api
    with connect(url) as ws:
        ws.send(frame)
        ws.send(json.dumps({"jsonrpc": "2.0", "id": "after", "method": "ping"}))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            answer = json.loads(ws.recv(timeout=10))
            if isinstance(answer, dict) and answer.get("id") == "after":
                assert answer["result"] == "pong"
                break
        else:
            pytest.fail(f"no answer to the ping sent after {frame!r}")


def test_api_was_never_restarted_by_bad_input(api):
    system, _ = api
    assert "api" not in system.status().restarts


def _ctl(tmp_path: Path, *args: str) -> tuple[int, str]:
    out = tmp_path / "ctl.out"
    with open(out, "wb") as f:
        code = subprocess.call(
            [sys.executable, "-m", "charger.ctl", *args], stdout=f, stderr=subprocess.STDOUT, cwd=ROOT
        )
    return code, out.read_text()


def test_ctl_status_and_call(api, tmp_path):
    _, url = api
    code, text = _ctl(tmp_path, "--url", url, "status")
    assert code == 0 and "running" in text and "probe" in text
    code, text = _ctl(tmp_path, "--url", url, "call", "ping")
    assert code == 0 and '"pong"' in text
    code, text = _ctl(tmp_path, "--url", url, "call", "no.such")
    assert code == 1 and "no method 'no.such'" in text
    code, text = _ctl(tmp_path, "--url", url, "call", "ping", "{bad")
    assert code == 2 and "not JSON" in text


def test_ctl_without_a_running_charger(tmp_path):
    code, text = _ctl(tmp_path, "--url", f"ws://127.0.0.1:{free_port()}", "status")
    assert code == 1 and "is charger running?" in text and "Traceback" not in text
