"""Structure-aware fuzzing of the control API over a real websocket, with an EVSE behind it so that
requests reach other actors: every request gets exactly one answer with its id, a result or one of the
JSON-RPC error codes, and the API actor is never restarted by what a client sends."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from websockets.sync.client import connect

from charger.testing import RunningSystem
from tests.conftest import free_port, group, worker
from tests.support.fuzz import live

CODES = {-32700, -32600, -32601, -32602, -32603, -32000}
METHODS = {
    "ping": {},
    "system.status": {},
    "events.subscribe": {},
    "connectors.status": {},
    "energy.plan": {},
    "connector.unplug": {"connector": None},
    "connector.pause": {"connector": None},
    "connector.resume": {"connector": None},
    "connector.stop": {"connector": None, "reason": None},
    "connector.availability": {"connector": None, "available": None, "reason": None},
    "connector.lease": {"connector": None, "valid_for_s": None, "amps": None, "watts": None},
    "connector.sessions": {"connector": None, "limit": None},
    "connector.fault": {"connector": None, "fault": None, "active": None},
    "rfid.present": {"token": None, "connector": None},
    "no.such": {},
}

_numbers = (
    st.integers(-(2**80), 2**80)
    | st.floats()  # NaN and infinities too: Python's json writes them, a client may send them
    | st.sampled_from([0, 1, 2, -1, 1e308, 2**63, 2**64])
)
_values = st.none() | st.booleans() | _numbers | st.text(max_size=8) | st.sampled_from(["evse1", "1", "rcd", "Local"])
_json = st.recursive(
    _values,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=4,
)


@st.composite
def requests(draw: st.DrawFn, request_id: int) -> dict[str, Any]:
    method = draw(st.sampled_from(sorted(METHODS)))
    keys = sorted(METHODS[method])
    chosen = draw(st.lists(st.sampled_from(keys), unique=True)) if keys else []
    params: dict[str, Any] = {key: draw(_values) for key in chosen}
    if draw(st.integers(0, 4)) == 0:
        params[draw(st.text(max_size=5))] = draw(_json)
    request: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}
    if draw(st.integers(0, 9)) == 0:
        del request["id"]  # a notification: no answer
    return request


frames = st.one_of(
    requests(1),
    st.lists(st.integers(1, 99), min_size=1, max_size=4, unique=True).flatmap(
        lambda ids: st.tuples(*(requests(i) for i in ids)).map(list)
    ),
)


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningSystem, str, int]]:
    from charger.testing import running_system

    state = tmp_path_factory.mktemp("api-fuzz")
    port_file = state / "api.port"
    root = group(
        "root",
        worker("evse1", actor="tests.support.fake_evse:FakeEvse"),
        worker(
            "api", actor="ControlApi", config={"port": 0, "port_file": str(port_file)}, requires={"evse": ("evse1",)}
        ),
        intensity=50,
    )
    with running_system(root, free_port(), str(state), log_file=str(state / "system.log")) as system:
        yield system, f"ws://127.0.0.1:{port_file.read_text()}", system.pid_of("api")


def exchange(url: str, frame: object, answers_due: int) -> list[dict[str, Any]]:
    """Send one frame and a ping; collect `answers_due` answers (not event notifications) and the pong.
    Answers to different frames may come in any order: a ping is not held up by a slow call."""
    answers: list[dict[str, Any]] = []
    ponged = False
    with connect(url, max_size=None) as ws:
        ws.send(json.dumps(frame))  # NaN and Infinity as Python writes them: not JSON, and the API must say so
        ws.send(json.dumps({"jsonrpc": "2.0", "id": "after", "method": "ping"}))
        while not ponged or len(answers) < answers_due:
            message = json.loads(ws.recv(timeout=20))
            for answer in message if isinstance(message, list) else [message]:
                if answer.get("id") == "after":
                    assert answer["result"] == "pong"
                    ponged = True
                elif "method" not in answer:  # event notifications may arrive after events.subscribe
                    answers.append(answer)
    return answers


def _has_non_finite(value: object) -> bool:
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, dict):
        return any(_has_non_finite(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_non_finite(v) for v in value)
    return False


@live(300)
@given(frame=frames)
@example(frame={"jsonrpc": "2.0", "id": 1, "method": "connector.sessions", "params": {"connector": 1, "limit": 2**70}})
@example(
    frame={
        "jsonrpc": "2.0",
        "id": 1,
        "method": "connector.lease",
        "params": {"connector": 1, "valid_for_s": 60, "amps": math.nan},
    }
)
def test_every_request_gets_one_answer_with_its_id_and_a_known_code(
    api: tuple[RunningSystem, str, int], frame: object
) -> None:
    _system, url, _pid = api
    sent = frame if isinstance(frame, list) else [frame]
    expected = sorted(r["id"] for r in sent if "id" in r)
    if _has_non_finite(frame):  # json.dumps wrote NaN/Infinity: not JSON at all
        assert [a["error"]["code"] for a in exchange(url, frame, 1)] == [-32700]
        return
    answers = exchange(url, frame, len(expected))
    assert sorted(a["id"] for a in answers) == expected, (sent, answers)
    for answer in answers:
        assert answer["jsonrpc"] == "2.0" and ("result" in answer) != ("error" in answer), answer
        if "error" in answer:
            assert answer["error"]["code"] in CODES and answer["error"]["message"], answer


def test_the_api_was_never_restarted_by_what_clients_sent(api: tuple[RunningSystem, str, int]) -> None:
    system, url, pid = api
    assert system.pid_of("api") == pid and "api" not in system.status().restarts
    assert (
        exchange(url, {"jsonrpc": "2.0", "id": 7, "method": "connectors.status"}, 1)[0]["result"][0]["connector"]
        == "evse1"
    )
