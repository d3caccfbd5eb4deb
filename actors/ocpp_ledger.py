"""The backend link's own journal: which charging sessions it has reported, and the availability the
CSMS asked for (SQLite, WAL, ``synchronous=FULL``, like `charger.ocpp_store`).

The transaction queue (`charger.ocpp_store.TransactionQueue`) delivers what was enqueued; this ledger
remembers what was *meant* to be enqueued, so that nothing is reported twice or never, whatever kills
the process. Every StartTransaction and StopTransaction is written here as an intent first (with its
payload), then enqueued, then marked queued. After a crash between those steps, `BackendLink` asks the
queue whether the message made it (`queued_in`) and enqueues it only if it did not.

Sessions the EVSE managers completed before the link first ran are recorded as ``preexisting`` and
never reported. Availability (OCPP 1.6 §5.2: it "SHALL persist ... across reboots") is kept per
connector, with the change scheduled for the end of a transaction.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from charger.journal import open_database
from charger.ocpp_store import START_TRANSACTION, STOP_TRANSACTION, TransactionQueue

__all__ = ["MAX_TRANSACTION_DATA", "Ledger", "SessionRecord", "queued_in"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS session (
    session_id TEXT PRIMARY KEY, connector_id INTEGER NOT NULL,
    start_payload TEXT, start_queued INTEGER NOT NULL DEFAULT 0,
    stop_payload TEXT, stop_queued INTEGER NOT NULL DEFAULT 0,
    preexisting INTEGER NOT NULL DEFAULT 0, updated_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS transaction_data (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, session_id TEXT NOT NULL, meter_value TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS transaction_data_session ON transaction_data (session_id);
"""
_KEEP_SESSIONS = 2000  # finished sessions kept to recognise their late events; older ones are pruned
MAX_TRANSACTION_DATA = 500
"""MeterValues kept per session for StopTransaction's transactionData: the newest, so that a session of
days at a short interval still fits a frame the CSMS accepts."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionRecord:
    session_id: str
    connector_id: int
    start_payload: dict[str, Any] | None
    start_queued: bool
    stop_payload: dict[str, Any] | None
    stop_queued: bool
    preexisting: bool

    @property
    def open(self) -> bool:
        """Started (as far as the CSMS will know) and not yet stopped."""
        return self.start_payload is not None and self.stop_payload is None and not self.preexisting


def _record(row: tuple[Any, ...]) -> SessionRecord:
    session_id, connector_id, start, start_queued, stop, stop_queued, preexisting = row
    return SessionRecord(
        session_id=session_id,
        connector_id=connector_id,
        start_payload=None if start is None else json.loads(start),
        start_queued=bool(start_queued),
        stop_payload=None if stop is None else json.loads(stop),
        stop_queued=bool(stop_queued),
        preexisting=bool(preexisting),
    )


_COLUMNS = "session_id, connector_id, start_payload, start_queued, stop_payload, stop_queued, preexisting"


class Ledger:
    """Not thread-safe: open and use it on the actor's thread."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._db = open_database(self.path, _SCHEMA)

    def close(self) -> None:
        self._db.close()

    # -- sessions -----------------------------------------------------------------------------------

    def get(self, session_id: str) -> SessionRecord | None:
        row = self._db.execute(f"SELECT {_COLUMNS} FROM session WHERE session_id = ?", (session_id,)).fetchone()
        return None if row is None else _record(row)

    def open_sessions(self) -> list[SessionRecord]:
        rows = self._db.execute(
            f"SELECT {_COLUMNS} FROM session WHERE start_payload IS NOT NULL AND stop_payload IS NULL"
            " AND preexisting = 0 ORDER BY rowid"
        )
        return [_record(r) for r in rows]

    def unconfirmed(self) -> list[SessionRecord]:
        """Sessions with a Start or Stop meant for the queue and not confirmed queued, oldest first."""
        rows = self._db.execute(
            f"SELECT {_COLUMNS} FROM session WHERE (start_payload IS NOT NULL AND start_queued = 0)"
            " OR (stop_payload IS NOT NULL AND stop_queued = 0) ORDER BY rowid"
        )
        return [_record(r) for r in rows]

    def intend_start(self, session_id: str, connector_id: int, payload: dict[str, Any]) -> None:
        self._db.execute(
            "INSERT INTO session (session_id, connector_id, start_payload, updated_at) VALUES (?, ?, ?, ?)",
            (session_id, connector_id, json.dumps(payload), time.time()),
        )

    def intend_stop(self, session_id: str, payload: dict[str, Any]) -> None:
        self._db.execute(
            "UPDATE session SET stop_payload = ?, updated_at = ? WHERE session_id = ?",
            (json.dumps(payload), time.time(), session_id),
        )

    def mark_queued(self, session_id: str, action: str) -> None:
        column = "start_queued" if action == START_TRANSACTION else "stop_queued"
        self._db.execute(f"UPDATE session SET {column} = 1 WHERE session_id = ?", (session_id,))

    def add_transaction_data(self, session_id: str, meter_value: dict[str, Any]) -> None:
        """One MeterValue (StopTxnSampledData or StopTxnAlignedData) for the session's StopTransaction."""
        with self._db:
            self._db.execute("BEGIN")
            self._db.execute(
                "INSERT INTO transaction_data (session_id, meter_value) VALUES (?, ?)",
                (session_id, json.dumps(meter_value)),
            )
            self._db.execute(
                "DELETE FROM transaction_data WHERE seq IN (SELECT seq FROM transaction_data WHERE session_id = ?"
                " ORDER BY seq DESC LIMIT -1 OFFSET ?)",
                (session_id, MAX_TRANSACTION_DATA),
            )

    def transaction_data(self, session_id: str) -> list[dict[str, Any]]:
        rows = self._db.execute(
            "SELECT meter_value FROM transaction_data WHERE session_id = ? ORDER BY seq", (session_id,)
        )
        return [json.loads(r[0]) for r in rows]

    def record_preexisting(self, connector_id: int, session_ids: list[str]) -> None:
        now = time.time()
        self._db.executemany(
            "INSERT OR IGNORE INTO session (session_id, connector_id, preexisting, updated_at) VALUES (?, ?, 1, ?)",
            [(s, connector_id, now) for s in session_ids],
        )

    def prune(self) -> None:
        """Forget the oldest finished sessions beyond what is worth keeping."""
        self._db.execute(
            "DELETE FROM session WHERE rowid IN (SELECT rowid FROM session WHERE stop_queued = 1 OR preexisting = 1"
            " ORDER BY rowid DESC LIMIT -1 OFFSET ?)",
            (_KEEP_SESSIONS,),
        )
        self._db.execute(
            "DELETE FROM transaction_data WHERE session_id IN (SELECT session_id FROM session WHERE stop_queued = 1)"
            " OR session_id NOT IN (SELECT session_id FROM session)"
        )

    # -- small persistent settings ------------------------------------------------------------------

    def meta(self, key: str) -> Any:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else json.loads(row[0])

    def set_meta(self, key: str, value: Any) -> None:
        self._db.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, json.dumps(value)),
        )


def queued_in(queue: TransactionQueue, session_id: str, action: str) -> bool:
    """Whether a Start or Stop of this session ever entered the queue (waiting, delivered or discarded).

    For a Stop, the session's Start must be known to have entered the queue (`BackendLink` recovers the
    Start first). A delivered StartTransaction leaves its transactionId mapping behind until the
    session's StopTransaction has left the queue too; so a Stop is gone (delivered) exactly when neither
    the mapping nor a waiting or discarded Start remains."""
    if any(m.tx_key == session_id and m.action == action for m in queue.messages()):
        return True
    discarded = [(d["tx_key"], d["action"]) for d in queue.discarded()]
    if (session_id, action) in discarded:
        return True
    if action == START_TRANSACTION:
        return queue.transaction_id(session_id) is not None
    if action == STOP_TRANSACTION:
        start_left = queue.transaction_id(session_id) is not None or (session_id, START_TRANSACTION) in discarded
        start_waits = any(m.tx_key == session_id and m.action == START_TRANSACTION for m in queue.messages())
        return not start_left and not start_waits
    return False
