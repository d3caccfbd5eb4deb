"""The OCPP stores: configuration, local list and cache survive reopening; the transaction queue keeps
its order, retries as §3.7 says, fills in the CSMS's transactionId, and loses or duplicates nothing
that was acknowledged when the writing process is SIGKILLed at an arbitrary point."""

from __future__ import annotations

import multiprocessing
import os
import random
import signal
import stat
import tempfile
from collections import deque
from datetime import UTC, datetime, timedelta
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import pytest
from charger.protocols.ocpp_config import OcppConfiguration, StationFacts, standard_keys
from charger.protocols.ocpp_local_auth import (
    AuthorizationStatus,
    IdTagInfo,
    ListLimits,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from charger.ocpp_store import AuthStore, ConfigStore, OcppStore, TransactionQueue

STATION = StationFacts(number_of_connectors=2)
NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)

# --- configuration ----------------------------------------------------------------------------------------


def test_config_values_survive_reopening_and_the_file_is_private(tmp_path: Path) -> None:
    store = OcppStore(tmp_path)
    cfg = OcppConfiguration(standard_keys(STATION), store.config.load())
    for key, value in [("HeartbeatInterval", "120"), ("AuthorizationKey", "ab" * 16), ("HeartbeatInterval", "90")]:
        change = cfg.plan_change(key, value)
        assert change.stores and change.value is not None
        store.config.save(change.key, change.value)
        cfg.apply(change)
    store.close()
    assert stat.S_IMODE(os.stat(tmp_path / "ocpp-config.db").st_mode) == 0o600
    reopened = OcppConfiguration(standard_keys(STATION), ConfigStore(tmp_path / "ocpp-config.db").load())
    assert reopened.integer("HeartbeatInterval") == 90
    assert reopened.authorization_password() == bytes.fromhex("ab" * 16)


_NAMES = [k.name for k in standard_keys(STATION)]
change_requests = st.tuples(
    st.one_of(st.sampled_from(_NAMES), st.text(max_size=20)),
    st.one_of(
        st.text(max_size=30),
        st.integers(-5, 100_000).map(str),
        st.sampled_from(["true", "False", "Voltage.L1, SoC", "Current.Import,Bogus", "1.RST,2.TSR", "cd" * 18]),
    ),
)


@settings(max_examples=60, deadline=None)
@given(st.lists(change_requests, min_size=1, max_size=10))
def test_random_changes_are_accepted_and_persisted_or_rejected(requests: list[tuple[str, str]]) -> None:
    with tempfile.TemporaryDirectory() as state_dir:
        path = Path(state_dir) / "config.db"
        store = ConfigStore(path)
        cfg = OcppConfiguration(standard_keys(STATION), store.load())
        expected: dict[str, str] = {}
        for key, value in requests:
            change = cfg.plan_change(key, value, security_profile_ready=lambda p: True)
            if change.stores:
                assert change.value is not None
                store.save(change.key, change.value)
                cfg.apply(change)
                expected[change.key] = change.value
        store.close()
        stored = ConfigStore(path).load()
        assert stored == expected
        reopened = OcppConfiguration(standard_keys(STATION), stored)
        assert reopened.ignored_stored == {}
        assert reopened.get_configuration().to_wire() == cfg.get_configuration().to_wire()


# --- local list and cache -------------------------------------------------------------------------------------


def test_local_list_updates_survive_reopening(tmp_path: Path) -> None:
    store = AuthStore(tmp_path / "auth.db")
    lst = store.load_local_list()
    assert lst.version == 0 and len(lst) == 0
    limits = ListLimits()
    full: list[dict[str, Any]] = [
        {"idTag": "A", "idTagInfo": {"status": "Accepted", "expiryDate": "2030-01-01T00:00:00Z", "parentIdTag": "P"}},
        {"idTag": "B", "idTagInfo": {"status": "Blocked"}},
    ]
    diff: list[dict[str, Any]] = [{"idTag": "b"}, {"idTag": "C", "idTagInfo": {"status": "Accepted"}}]
    for version, kind, items in [(4, "Full", full), (7, "Differential", diff), (6, "Differential", [])]:
        update = lst.plan(version, kind, items, limits)
        store.save_list_update(update)  # a VersionMismatch stores nothing
        lst.apply(update)
    store.close()
    reopened = AuthStore(tmp_path / "auth.db").load_local_list()
    assert reopened.version == 7
    assert sorted(reopened.entries(), key=lambda e: e.id_tag) == sorted(lst.entries(), key=lambda e: e.id_tag)
    entry = reopened.get("a")
    assert entry is not None and entry.info.expiry_date == datetime(2030, 1, 1, tzinfo=UTC)


def test_cache_changes_survive_reopening(tmp_path: Path) -> None:
    store = AuthStore(tmp_path / "auth.db")
    cache = store.load_cache(capacity=2)
    expiring = IdTagInfo(status=AuthorizationStatus.ACCEPTED, expiry_date=NOW + timedelta(hours=1), parent_id_tag="P")
    for step, (tag, info) in enumerate(
        [("A", expiring), ("B", IdTagInfo(status=AuthorizationStatus.ACCEPTED)), ("C", expiring)]
    ):
        change = cache.plan_remember(tag, info, NOW + timedelta(seconds=step))
        store.save_cache_change(change)
        cache.apply(change)
    store.close()
    store = AuthStore(tmp_path / "auth.db")
    reopened = store.load_cache(capacity=2)
    assert {(e.id_tag, e.info, e.stored_at) for e in reopened.entries()} == {
        (e.id_tag, e.info, e.stored_at) for e in cache.entries()
    }
    assert {e.id_tag for e in reopened.entries()} == {"B", "C"}  # A was the oldest
    assert {e.id_tag for e in store.load_cache(capacity=1).entries()} == {"C"}  # a smaller cache keeps the newest
    store.save_cache_change(reopened.plan_clear())
    assert len(store.load_cache(capacity=2)) == 0


# --- the transaction queue ------------------------------------------------------------------------------------


def test_messages_leave_in_order_with_the_transaction_id_filled_in(tmp_path: Path) -> None:
    queue = TransactionQueue(tmp_path / "queue.db")
    start = queue.enqueue("StartTransaction", {"connectorId": 1, "idTag": "A"}, tx_key="t1", now=10.0)
    meter = queue.enqueue("MeterValues", {"connectorId": 1, "meterValue": []}, tx_key="t1", now=11.0)
    stop = queue.enqueue("StopTransaction", {"meterStop": 5}, tx_key="t1", now=12.0)
    assert start < meter < stop and len(queue) == 3
    head = queue.peek_oldest()
    assert head is not None and head.seq == start and "transactionId" not in head.payload
    with pytest.raises(ValueError, match="transactionId"):
        queue.mark_delivered(start)  # a StartTransaction is only done with the id from its answer
    queue.mark_delivered(start, transaction_id=4711)
    queue.close()
    queue = TransactionQueue(tmp_path / "queue.db")
    assert [(m.action, m.payload.get("transactionId")) for m in queue.messages()] == [
        ("MeterValues", 4711),
        ("StopTransaction", 4711),
    ]
    assert queue.transaction_id("t1") == 4711
    queue.mark_delivered(meter)
    queue.mark_delivered(stop)
    assert queue.peek_oldest() is None and queue.transaction_id("t1") is None  # forgotten after its last message
    with pytest.raises(KeyError):
        queue.mark_delivered(stop)


def test_enqueue_refuses_what_does_not_belong_in_the_queue(tmp_path: Path) -> None:
    queue = TransactionQueue(tmp_path / "queue.db")
    with pytest.raises(ValueError, match="not a message the queue carries"):
        queue.enqueue("Heartbeat", {}, tx_key="t", now=0.0)
    with pytest.raises(ValueError, match="transactionId"):
        queue.enqueue("StopTransaction", {"transactionId": 3}, tx_key="t", now=0.0)
    with pytest.raises(ValueError):
        queue.enqueue("MeterValues", {"value": float("nan")}, tx_key="t", now=0.0)
    assert len(queue) == 0


def test_security_events_wait_in_line_and_need_no_transaction_id(tmp_path: Path) -> None:
    queue = TransactionQueue(tmp_path / "queue.db")
    queue.enqueue("StartTransaction", {"connectorId": 1}, tx_key="s1", now=0.0)
    event = {"type": "StartupOfTheDevice", "timestamp": "2026-01-01T00:00:00Z"}
    queue.enqueue("SecurityEventNotification", event, tx_key="security-event:1", now=1.0)
    head = queue.peek_oldest()
    assert head is not None and head.action == "StartTransaction"
    queue.mark_delivered(head.seq, transaction_id=7)
    head = queue.peek_oldest()
    assert head is not None and head.action == "SecurityEventNotification"
    assert not head.needs_transaction_id and head.payload == event  # no transactionId filled in
    queue.mark_delivered(head.seq)
    assert len(queue) == 0


def test_failed_attempts_wait_interval_times_n_then_the_message_is_discarded(tmp_path: Path) -> None:
    queue = TransactionQueue(tmp_path / "queue.db")
    start = queue.enqueue("StartTransaction", {"idTag": "A"}, tx_key="t1", now=0.0)
    stop = queue.enqueue("StopTransaction", {"meterStop": 1}, tx_key="t1", now=0.0)
    first = queue.record_failed_attempt(start, now=100.0, max_attempts=3, retry_interval=60)
    assert (first.attempts, first.discarded, first.next_attempt_at) == (1, False, 160.0)
    head = queue.peek_oldest()
    assert head is not None and head.attempts == 1 and not head.due(159.0) and head.due(160.0)
    second = queue.record_failed_attempt(start, now=160.0, max_attempts=3, retry_interval=60)
    assert second.next_attempt_at == 280.0  # 60 s x 2 preceding transmissions
    third = queue.record_failed_attempt(start, now=280.0, max_attempts=3, retry_interval=60)
    assert third.discarded and third.next_attempt_at is None
    [gone] = queue.discarded()
    assert (gone["seq"], gone["action"], gone["attempts"], gone["payload"]) == (
        start,
        "StartTransaction",
        3,
        {"idTag": "A"},
    )
    head = queue.peek_oldest()
    assert head is not None and head.seq == stop and head.needs_transaction_id
    queue.discard(stop, now=300.0, reason="its StartTransaction was discarded")
    assert len(queue) == 0 and [d["reason"] for d in queue.discarded()][1] == "its StartTransaction was discarded"


actions = st.sampled_from(["StartTransaction", "MeterValues", "StopTransaction"])
operations = st.lists(
    st.one_of(
        st.tuples(st.just("enqueue"), st.sampled_from(["t0", "t1", "t2"]), actions),
        st.tuples(st.just("deliver"), st.just(""), st.just("")),
        st.tuples(st.just("fail"), st.just(""), st.just("")),
        st.tuples(st.just("reopen"), st.just(""), st.just("")),
    ),
    max_size=40,
)


@settings(max_examples=60, deadline=None)
@given(operations)
def test_queue_follows_a_fifo_model_across_reopening(ops: list[tuple[str, str, str]]) -> None:
    with tempfile.TemporaryDirectory() as state_dir:
        path = Path(state_dir) / "queue.db"
        queue = TransactionQueue(path)
        model: deque[tuple[int, str, str]] = deque()  # (n, tx_key, action)
        attempts: dict[int, int] = {}
        ids: dict[str, int] = {}
        for n, (op, tx_key, action) in enumerate(ops):
            if op == "enqueue":
                queue.enqueue(action, {"n": n}, tx_key=tx_key, now=float(n))
                model.append((n, tx_key, action))
            elif op == "reopen":
                queue.close()
                queue = TransactionQueue(path)
            elif model and op == "deliver":
                head = queue.peek_oldest()
                assert head is not None
                first, tx, act = model.popleft()
                queue.mark_delivered(head.seq, transaction_id=1000 + first if act == "StartTransaction" else None)
                if act == "StartTransaction":
                    ids[tx] = 1000 + first
                if act == "StopTransaction" and all(m[1] != tx for m in model):
                    ids.pop(tx, None)
            elif model and op == "fail":
                head = queue.peek_oldest()
                assert head is not None
                attempts[model[0][0]] = attempts.get(model[0][0], 0) + 1
                outcome = queue.record_failed_attempt(head.seq, now=float(n), max_attempts=2, retry_interval=5)
                assert outcome.discarded == (attempts[model[0][0]] >= 2)
                if outcome.discarded:
                    _, tx, act = model.popleft()
                    if act == "StopTransaction" and all(m[1] != tx for m in model):
                        ids.pop(tx, None)
            seen = [(m.payload["n"], m.tx_key, m.action) for m in queue.messages()]
            assert seen == list(model)
            for m in queue.messages():
                expected_id = None if m.action == "StartTransaction" else ids.get(m.tx_key)
                assert m.payload.get("transactionId") == expected_id
        queue.close()


# --- SIGKILL at any point -----------------------------------------------------------------------------------


def _produce(path: str, first: int, acks: Connection) -> None:
    queue = TransactionQueue(path)
    n = first
    while True:
        queue.enqueue("MeterValues", {"n": n}, tx_key="tx", now=0.0)
        acks.send(n)  # acknowledged only after the enqueue has returned
        n += 1


def _produce_and_deliver(path: str, first_tx: int, acks: Connection) -> None:
    queue = TransactionQueue(path)
    tx = first_tx
    while True:
        for action in ("StartTransaction", "MeterValues", "StopTransaction"):
            queue.enqueue(action, {"tx": tx, "a": action}, tx_key=f"tx{tx}", now=0.0)
            acks.send(("enqueued", tx, action))
        for _ in range(2):
            head = queue.peek_oldest()
            assert head is not None
            is_start = head.action == "StartTransaction"
            queue.mark_delivered(head.seq, transaction_id=100_000 + head.payload["tx"] if is_start else None)
            acks.send(("delivered", head.payload["tx"], head.action))
        tx += 1


def _run_until_killed(target: Any, args: tuple[Any, ...], acks_before_kill: int) -> list[Any]:
    """Start `target` in a forked child, SIGKILL it after some acknowledgements, return every acknowledgement."""
    ctx = multiprocessing.get_context("fork")
    reader, writer = ctx.Pipe(duplex=False)
    child = ctx.Process(target=target, args=(*args, writer))
    child.start()
    writer.close()
    acks = [reader.recv() for _ in range(acks_before_kill)]
    os.kill(child.pid or 0, signal.SIGKILL)
    child.join()
    assert child.exitcode == -signal.SIGKILL
    while True:
        try:
            acks.append(reader.recv())
        except EOFError:
            break
    reader.close()
    return acks


def test_acknowledged_enqueues_survive_sigkill_without_loss_or_duplicates(tmp_path: Path) -> None:
    path = str(tmp_path / "queue.db")
    rng = random.Random(4)
    committed = 0
    for _ in range(4):  # several kills on the same file: recovery after a kill is exercised too
        acks = _run_until_killed(_produce, (path, committed), rng.randint(1, 300))
        assert acks == list(range(committed, committed + len(acks)))
        queue = TransactionQueue(path)
        numbers = [m.payload["n"] for m in queue.messages()]
        queue.close()
        # Everything acknowledged is there, once, in order; at most the one enqueue in flight was committed too.
        assert numbers in (list(range(acks[-1] + 1)), list(range(acks[-1] + 2)))
        committed = len(numbers)


def test_queue_and_transaction_ids_stay_consistent_under_sigkill(tmp_path: Path) -> None:
    path = str(tmp_path / "queue.db")
    rng = random.Random(7)
    remaining: list[tuple[int, str]] = []
    for round_number in range(4):
        first_tx = round_number * 1000
        acks = _run_until_killed(_produce_and_deliver, (path, first_tx), rng.randint(1, 400))
        enqueued = [(tx, action) for kind, tx, action in acks if kind == "enqueued"]
        delivered = [(tx, action) for kind, tx, action in acks if kind == "delivered"]
        queue = TransactionQueue(path)
        messages = queue.messages()
        queue.close()
        found = [(m.payload["tx"], m.payload["a"]) for m in messages]
        # What the child will have enqueued, committed or not, in order: last round's leftovers first.
        order = remaining + [
            (tx, a)
            for tx in range(first_tx, first_tx + 500)
            for a in ("StartTransaction", "MeterValues", "StopTransaction")
        ]
        assert order[: len(delivered)] == delivered  # FIFO delivery
        ends = {len(remaining) + len(enqueued), len(remaining) + len(enqueued) + 1}
        starts = {len(delivered), len(delivered) + 1}
        assert any(found == order[s:e] for s in starts for e in ends), (len(found), starts, ends)
        # The transactionId was stored in the same commit that removed its StartTransaction.
        still_starting = {tx for tx, action in found if action == "StartTransaction"}
        for m in messages:
            tx = m.payload["tx"]
            if m.action != "StartTransaction":
                expected = None if tx in still_starting else 100_000 + tx
                assert m.transaction_id == expected and m.payload.get("transactionId") == expected
        remaining = found
