"""The backend link's ledger and `queued_in`: after a crash between an intent and its confirmation, the
link can tell from the queue alone whether a StartTransaction or StopTransaction made it in."""

from __future__ import annotations

from pathlib import Path

from charger.actors.ocpp_ledger import MAX_TRANSACTION_DATA, Ledger, queued_in

from charger.ocpp_store import TransactionQueue

START, STOP = "StartTransaction", "StopTransaction"
START_PAYLOAD = {"connectorId": 1, "idTag": "T", "meterStart": 10, "timestamp": "2024-05-01T12:00:00.000Z"}
STOP_PAYLOAD = {"meterStop": 20, "timestamp": "2024-05-01T13:00:00.000Z", "reason": "Local"}


def test_intents_survive_a_reopen_until_confirmed(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "l.db")
    ledger.intend_start("s1", 1, START_PAYLOAD)
    ledger.record_preexisting(2, ["old1", "old2"])
    ledger.close()
    ledger = Ledger(tmp_path / "l.db")
    (unconfirmed,) = ledger.unconfirmed()
    assert (unconfirmed.session_id, unconfirmed.start_payload, unconfirmed.open) == ("s1", START_PAYLOAD, True)
    ledger.mark_queued("s1", START)
    assert ledger.unconfirmed() == [] and [r.session_id for r in ledger.open_sessions()] == ["s1"]
    ledger.intend_stop("s1", STOP_PAYLOAD)
    assert ledger.open_sessions() == [] and ledger.unconfirmed()[0].stop_payload == STOP_PAYLOAD
    old = ledger.get("old1")
    assert old is not None and old.preexisting and not old.open
    ledger.set_meta("scheduled", {"1": False})
    assert ledger.meta("scheduled") == {"1": False} and ledger.meta("nothing") is None
    ledger.close()


def test_transaction_data_survives_a_reopen_keeps_the_newest_and_goes_with_the_session(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "l.db")
    ledger.intend_start("s1", 1, START_PAYLOAD)
    ledger.mark_queued("s1", START)
    for n in range(MAX_TRANSACTION_DATA + 5):
        ledger.add_transaction_data("s1", {"timestamp": f"t{n}", "sampledValue": [{"value": str(n)}]})
    ledger.add_transaction_data("s2", {"timestamp": "other", "sampledValue": []})
    ledger.close()
    ledger = Ledger(tmp_path / "l.db")
    kept = ledger.transaction_data("s1")
    assert len(kept) == MAX_TRANSACTION_DATA and kept[0]["timestamp"] == "t5" and kept[-1]["timestamp"] == "t504"
    ledger.intend_stop("s1", STOP_PAYLOAD)
    ledger.mark_queued("s1", STOP)
    ledger.prune()  # the stop is queued with its data: nothing left to keep, nor for unknown sessions
    assert ledger.transaction_data("s1") == [] and ledger.transaction_data("s2") == []
    ledger.close()


def test_queued_in_follows_a_session_through_the_queue(tmp_path: Path) -> None:
    queue = TransactionQueue(tmp_path / "q.db")
    assert not queued_in(queue, "s1", START)
    start = queue.enqueue(START, START_PAYLOAD, tx_key="s1", now=1.0)
    assert queued_in(queue, "s1", START) and not queued_in(queue, "s1", STOP)
    queue.mark_delivered(start, transaction_id=7)
    assert queued_in(queue, "s1", START) and not queued_in(queue, "s1", STOP)  # the mapping remembers it
    stop = queue.enqueue(STOP, STOP_PAYLOAD, tx_key="s1", now=2.0)
    assert queued_in(queue, "s1", STOP)
    queue.mark_delivered(stop)
    assert queued_in(queue, "s1", STOP)  # delivered: nothing of the session is left, so it went through
    queue.close()


def test_queued_in_with_a_discarded_start(tmp_path: Path) -> None:
    queue = TransactionQueue(tmp_path / "q.db")
    start = queue.enqueue(START, START_PAYLOAD, tx_key="s2", now=1.0)
    queue.record_failed_attempt(start, now=1.0, max_attempts=1, retry_interval=1)
    assert queued_in(queue, "s2", START) and not queued_in(queue, "s2", STOP)  # the Stop must still go in
    stop = queue.enqueue(STOP, STOP_PAYLOAD, tx_key="s2", now=2.0)
    queue.discard(stop, now=3.0, reason="no transactionId")
    assert queued_in(queue, "s2", STOP)
    queue.close()
