"""The actor behaviour on live multiprocTCPBase processes: calls, errors, timeouts, I/O thread,
vars, and a receiver that survives any bytes thrown at it."""

from __future__ import annotations

import time

import msgpack
import pytest
from charger.actors.counter import GetCount
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from charger.errors import BadRequest, Rejected, RemoteCrash
from charger.lifecycle import CallFailed
from charger.messages import Kind, decode_envelope, encode_envelope, registered
from charger.runtime import frame_parts
from tests.conftest import group, worker
from tests.supervisors.test_strategies import wait_for
from tests.support.fuzz import live as live_settings
from tests.support.probes import (
    ArmTimers,
    AsyncDouble,
    Blocking,
    Crash,
    GetFired,
    Ping,
    RefuseMe,
    Relay,
    RelayResult,
    Sleep,
)
from tests.test_messages import _native, message_strategy, strategy_for_tag


@pytest.fixture(scope="module")
def live(tmp_path_factory):  # type: ignore[no-untyped-def]
    from charger.testing import running_system
    from tests.conftest import free_port

    state = tmp_path_factory.mktemp("live")
    root = group(
        "root",
        worker("probe"),
        worker("sleepy"),
        worker("caller", actor="tests.support.probes:Caller", requires={"peer": ("sleepy",)}),
        worker("io", actor="tests.support.probes:IoUser"),
        worker("timers", actor="tests.support.probes:TimerUser"),
        worker("ticker", actor="Ticker", config={"period_s": 0.05}),
        worker("counter", actor="Counter", requires={"source": ("ticker",)}),
        intensity=100,
    )
    with running_system(root, free_port(), str(state), log_file=str(state / "system.log")) as system:
        yield system


def test_call_returns_the_typed_reply(live):
    pong = live.client.call("probe", Ping(payload=b"\x00\xff"))
    assert pong.payload == b"\x00\xff" and pong.name == "probe" and pong.pid == live.pid_of("probe")


def test_a_request_with_no_handler_is_a_bad_request_not_a_crash(live):
    pid = live.pid_of("probe")
    with pytest.raises(BadRequest, match="no handler for GetCount"):
        live.client.call("probe", GetCount())
    assert live.client.call("probe", Ping()).pid == pid


def test_rejected_answers_an_error_without_crashing(live):
    pid = live.pid_of("probe")
    with pytest.raises(Rejected, match="refused on purpose"):
        live.client.call("probe", RefuseMe())
    assert live.client.call("probe", Ping()).pid == pid


def test_a_handler_exception_is_a_crash_and_the_supervisor_restarts(live):
    pid = live.pid_of("probe")
    with pytest.raises(RemoteCrash, match="RuntimeError: crash requested"):
        live.client.call("probe", Crash())
    wait_for(lambda: live.status().actors.get("probe") not in (None, pid), what="probe restart")
    assert live.client.call("probe", Ping()).pid != pid


def test_call_timeout_between_actors(live):
    live.client.cast("sleepy", Sleep(seconds=1.5))
    result = live.client.call("caller", Relay(timeout=0.3))
    assert not result.ok and result.code == "timeout"
    wait_for(lambda: live.client.call("caller", Relay(timeout=2.0)).ok, what="sleepy awake")


def test_blocking_io_runs_on_the_io_thread_and_the_actor_stays_responsive(live):
    pid = live.pid_of("io")
    result = live.client.call("io", Blocking(value=21, seconds=0.05))
    assert result.value == 42 and result.thread.startswith("asyncio")
    assert live.client.call("io", Ping()).pid == pid


def test_published_vars_reach_subscribers_and_resume_after_publisher_restart(live):
    import os
    import signal

    first = wait_for(lambda: (c := live.client.call("counter", GetCount())).total > 3 and c, what="ticks")
    os.kill(live.pid_of("ticker"), signal.SIGKILL)
    wait_for(lambda: live.client.call("counter", GetCount()).total > first.total + 5, what="ticks after restart")


def test_cancelled_timers_never_fire_and_repeating_ones_stop_when_cancelled(live):
    live.client.call("timers", ArmTimers(delay=0.2))
    time.sleep(0.8)
    fired = live.client.call("timers", GetFired()).names
    assert sorted(fired) == ["keep", "repeat", "repeat", "repeat"]


def test_coroutines_run_on_the_io_loop(live):
    result = live.client.call("timers", AsyncDouble(value=4))
    assert result.value == 8 and result.thread.startswith("io:timers")


def test_a_restarted_subscriber_gets_vars_again(live):
    import os
    import signal

    old = live.pid_of("counter")
    os.kill(old, signal.SIGKILL)
    wait_for(lambda: live.status().actors.get("counter") not in (None, old), what="counter restart")
    first = live.client.call("counter", GetCount()).total
    wait_for(lambda: live.client.call("counter", GetCount()).total > first + 5, what="ticks to the new counter")


def _probe_address(live):  # type: ignore[no-untyped-def]
    return live.client.resolve("probe")


def test_a_call_that_cannot_be_decoded_gets_a_bad_request_reply(live):
    address = _probe_address(live)
    frame = msgpack.packb([Kind.CALL, 99, "fuzzer", "Ping", {"payload": "not bytes"}])
    answer = live.asys.ask(address, frame, 5)
    raw = msgpack.unpackb(frame_parts(answer)[0], raw=False)
    assert raw[0] == Kind.ERROR and raw[1] == 99 and raw[4]["code"] == "bad_request"
    assert "Ping.payload: expected bytes" in raw[4]["message"]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.one_of(
        st.binary(max_size=200),
        st.builds(
            lambda *a: msgpack.packb(list(a)),
            st.integers(0, 6),
            st.integers(-5, 5),
            st.text(max_size=5),
            st.sampled_from(["Ping", "Init", "Shutdown", "Bound", "Nope", "SubscribeVars"]),
            st.dictionaries(
                st.text(max_size=8), st.integers(-(2**63), 2**63 - 1) | st.text() | st.binary(), max_size=3
            ),
        ),
    )
)
def test_fuzzed_bytes_never_crash_a_live_actor(live, frame: bytes) -> None:
    address = _probe_address(live)
    live.asys.tell(address, frame)


# Types whose designed effect is to crash, stop or block the probe: not what this fuzzing is about.
_DISRUPTIVE = {"Crash", "StopNormally", "Sleep", "Blocking"}
_HARMLESS = sorted(set(registered()) - _DISRUPTIVE)


@st.composite
def mutated_calls(draw: st.DrawFn) -> tuple[bytes, int]:
    """A CALL envelope of any harmless type whose body may have one field wrong, missing or extra."""
    tag = draw(st.sampled_from(_HARMLESS))
    body = msgpack.unpackb(
        encode_envelope(Kind.CAST, 0, "x", draw(strategy_for_tag(tag))), raw=False, strict_map_key=False
    )[4]
    mutation = draw(st.sampled_from(["none", "replace", "drop", "add"]))
    if mutation == "replace" and body:
        body[draw(st.sampled_from(sorted(body)))] = draw(_native)
    elif mutation == "drop" and body:
        del body[draw(st.sampled_from(sorted(body)))]
    elif mutation == "add":
        body[draw(st.text(max_size=8))] = draw(_native)
    corr = draw(st.integers(1, 2**63 - 1))
    return msgpack.packb([Kind.CALL, corr, "fuzzer", tag, body]), corr


@live_settings(200)
@given(mutated_calls())
def test_every_fuzzed_call_is_answered_with_a_reply_or_a_typed_error(live, case: tuple[bytes, int]) -> None:
    frame, corr = case
    answer = live.asys.ask(_probe_address(live), frame, 10)
    assert answer is not None, "no answer: the probe dropped a CALL or hung"
    env = decode_envelope(frame_parts(answer)[0])
    assert env.corr == corr and env.kind in (Kind.REPLY, Kind.ERROR)
    if env.kind is Kind.ERROR:
        assert isinstance(env.body, CallFailed) and env.body.message
        assert env.body.code in {"bad_request", "rejected", "unavailable"}, env.body


@live_settings(6)
@example(bodies=[Ping(payload=b"forged")])  # resolved the outstanding call with a Ping: the caller crashed
@given(
    st.lists(
        st.sampled_from(_HARMLESS).flatmap(lambda tag: message_strategy(registered()[tag])), min_size=1, max_size=8
    )
)
def test_forged_answers_never_reach_a_waiting_handler(live, bodies: list[object]) -> None:
    # The caller's call to sleepy is outstanding while sleepy sleeps; answers forged for every likely
    # correlation id reach the caller first. Before the runtime checked who answers, a forged REPLY
    # resolved the call with the wrong type and the handler crashed.
    caller, sleepy = live.client.resolve("caller"), live.client.resolve("sleepy")
    pid = live.pid_of("caller")
    live.asys.tell(sleepy, encode_envelope(Kind.CAST, 0, "fuzzer", Sleep(seconds=0.5)))
    live.asys.tell(caller, encode_envelope(Kind.CALL, 4242, "fuzzer", Relay(timeout=5.0)))
    for corr in range(1, 300):
        forged = bodies[corr % len(bodies)]
        kind = Kind.ERROR if corr % 3 == 0 else Kind.REPLY
        live.asys.tell(caller, encode_envelope(kind, corr, "sleepy", forged))
    deadline = time.monotonic() + 15
    while True:  # skip answers still on their way to us from earlier tests' tells
        answer = live.asys.listen(max(0.1, deadline - time.monotonic()))
        assert answer is not None, "the relay was never answered"
        parts = frame_parts(answer)
        env = decode_envelope(parts[0]) if parts is not None else None
        if env is not None and env.corr == 4242:
            break
    assert env.body == RelayResult(ok=True, code="", pid=live.pid_of("sleepy"))
    assert live.pid_of("caller") == pid


def test_the_actor_survived_the_fuzzing(live):
    # runs after the fuzz test (file order): same process, still answering, never restarted by fuzzing
    time.sleep(0.2)
    pid = live.pid_of("probe")
    assert live.client.call("probe", Ping(payload=b"ok")).pid == pid
    assert "probe" not in {k for k, v in live.status().restarts.items() if v > 1}


def test_envelope_from_an_external_client_can_carry_any_label(live):
    frame = encode_envelope(Kind.CALL, 5, "a label with spaces", Ping(payload=b"l"))
    answer = live.asys.ask(_probe_address(live), frame, 5)
    assert msgpack.unpackb(frame_parts(answer)[0], raw=False)[0] == Kind.REPLY
