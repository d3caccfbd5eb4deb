"""What the OCPP backend link keeps across restarts: configuration values, the local authorization list
and cache, and the queue of transaction-related messages (DESIGN §6).

SQLite in WAL mode with ``synchronous=FULL``, one file per concern under the state directory, like
`charger.journal`: every write has committed when the method returns, so whatever the link
acknowledged after a write (a ChangeConfiguration, a SendLocalList, a queued StopTransaction) survives
a SIGKILL of the process or a power cut.

The transaction queue (OCPP 1.6 §3.7 and §4.10) is a FIFO of StartTransaction, StopTransaction and
transaction-related MeterValues CALLs, delivered in order. Only a CALLERROR counts as a failed attempt
(`record_failed_attempt`): the n-th resend waits TransactionMessageRetryInterval x n, and a message
that failed TransactionMessageAttempts times is discarded (kept in a `discarded` table for diagnosis).
A lost connection or a timeout is not an attempt: the message simply stays at the head. Messages of a
transaction refer to it by a local key; when StartTransaction.conf brings the CSMS's transactionId,
`mark_delivered` records it in the same commit that removes the StartTransaction, and every later
message of that transaction is handed out with ``transactionId`` filled in. Delivery is at least once:
a CALL the CSMS processed just before a crash is sent again after the restart.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from charger.journal import open_database
from charger.protocols.ocpp_local_auth import (
    AuthEntry,
    AuthorizationCache,
    AuthorizationStatus,
    CacheChange,
    IdTagInfo,
    ListUpdate,
    LocalAuthList,
    UpdateStatus,
    id_key,
    parse_datetime,
)

__all__ = [
    "QUEUED_ACTIONS",
    "SECURITY_EVENT",
    "TRANSACTION_ACTIONS",
    "AuthStore",
    "ConfigStore",
    "FailedAttempt",
    "OcppStore",
    "QueuedMessage",
    "TransactionQueue",
]

START_TRANSACTION, STOP_TRANSACTION, METER_VALUES = "StartTransaction", "StopTransaction", "MeterValues"
SECURITY_EVENT = "SecurityEventNotification"
TRANSACTION_ACTIONS: Final = frozenset({START_TRANSACTION, STOP_TRANSACTION, METER_VALUES})
QUEUED_ACTIONS: Final = TRANSACTION_ACTIONS | {SECURITY_EVENT}
"""What the queue carries: the transaction-related messages, and the security events (Security
Whitepaper: queued while offline, delivered in order like them). A security event's `tx_key` names
the event, not a transaction."""
_EPOCH = datetime.fromtimestamp(0, UTC)


@contextlib.contextmanager
def _transaction(db: sqlite3.Connection) -> Iterator[None]:
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


class ConfigStore:
    """Values set by ChangeConfiguration (canonical wire strings). The file is readable by its owner only:
    it holds the AuthorizationKey."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._db = open_database(
            self.path, "CREATE TABLE IF NOT EXISTS value (key TEXT PRIMARY KEY, value TEXT NOT NULL);", private=True
        )

    def load(self) -> dict[str, str]:
        return dict(self._db.execute("SELECT key, value FROM value ORDER BY key"))

    def save(self, key: str, value: str) -> None:
        self._db.execute(
            "INSERT INTO value (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    def close(self) -> None:
        self._db.close()


_AUTH_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS local_list (id_key TEXT PRIMARY KEY, id_tag TEXT NOT NULL, status TEXT NOT NULL,
                                       expiry TEXT, parent TEXT);
CREATE TABLE IF NOT EXISTS cache (id_key TEXT PRIMARY KEY, id_tag TEXT NOT NULL, status TEXT NOT NULL,
                                  expiry TEXT, parent TEXT, stored_at TEXT NOT NULL);
"""


def _info_row(info: IdTagInfo) -> tuple[str, str | None, str | None]:
    expiry = None if info.expiry_date is None else info.expiry_date.isoformat()
    return info.status.value, expiry, info.parent_id_tag


def _info(status: str, expiry: str | None, parent: str | None) -> IdTagInfo:
    return IdTagInfo(
        status=AuthorizationStatus(status),
        expiry_date=None if expiry is None else parse_datetime(expiry),
        parent_id_tag=parent,
    )


class AuthStore:
    """The local authorization list with its version, and the authorization cache."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._db = open_database(self.path, _AUTH_SCHEMA)

    def load_local_list(self) -> LocalAuthList:
        row = self._db.execute("SELECT value FROM meta WHERE key = 'list_version'").fetchone()
        rows = self._db.execute("SELECT id_tag, status, expiry, parent FROM local_list ORDER BY rowid")
        return LocalAuthList(0 if row is None else int(row[0]), (AuthEntry(t, _info(s, e, p)) for t, s, e, p in rows))

    def save_list_update(self, update: ListUpdate) -> None:
        """Persist an Accepted SendLocalList in one commit (others are ignored)."""
        if update.status is not UpdateStatus.ACCEPTED:
            return
        with _transaction(self._db):
            if update.replace_all:
                self._db.execute("DELETE FROM local_list")
            self._db.executemany("DELETE FROM local_list WHERE id_key = ?", [(id_key(t),) for t in update.deletes])
            self._db.executemany(
                "INSERT OR REPLACE INTO local_list (id_key, id_tag, status, expiry, parent) VALUES (?, ?, ?, ?, ?)",
                [(id_key(e.id_tag), e.id_tag, *_info_row(e.info)) for e in update.upserts],
            )
            self._db.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('list_version', ?)",
                (update.version,),
            )

    def load_cache(self, capacity: int) -> AuthorizationCache:
        rows = self._db.execute("SELECT id_tag, status, expiry, parent, stored_at FROM cache")
        entries = sorted(
            (AuthEntry(t, _info(s, e, p), parse_datetime(at)) for t, s, e, p, at in rows),
            key=lambda entry: entry.stored_at or _EPOCH,
        )
        # A smaller capacity than before keeps the newest entries.
        return AuthorizationCache(capacity, entries[-capacity:])

    def save_cache_change(self, change: CacheChange) -> None:
        with _transaction(self._db):
            if change.clear:
                self._db.execute("DELETE FROM cache")
            self._db.executemany("DELETE FROM cache WHERE id_key = ?", [(id_key(t),) for t in change.evict])
            if change.put is not None:
                put, stored_at = change.put, change.put.stored_at
                if stored_at is None:
                    raise ValueError("a cache entry needs the time it was stored (eviction order)")
                self._db.execute(
                    "INSERT OR REPLACE INTO cache (id_key, id_tag, status, expiry, parent, stored_at)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (id_key(put.id_tag), put.id_tag, *_info_row(put.info), stored_at.astimezone(UTC).isoformat()),
                )

    def close(self) -> None:
        self._db.close()


_QUEUE_SCHEMA = """
CREATE TABLE IF NOT EXISTS message (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, tx_key TEXT NOT NULL, action TEXT NOT NULL, payload TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0, next_attempt_at REAL NOT NULL, enqueued_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS transaction_id (tx_key TEXT PRIMARY KEY, transaction_id INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS discarded (
    seq INTEGER PRIMARY KEY, tx_key TEXT NOT NULL, action TEXT NOT NULL, payload TEXT NOT NULL,
    attempts INTEGER NOT NULL, enqueued_at REAL NOT NULL, discarded_at REAL NOT NULL, reason TEXT NOT NULL);
"""
_MESSAGE_COLUMNS = (
    "m.seq, m.tx_key, m.action, m.payload, m.attempts, m.next_attempt_at, m.enqueued_at, t.transaction_id"
)


@dataclass(frozen=True, slots=True, kw_only=True)
class QueuedMessage:
    """One queued CALL. `payload` already carries ``transactionId`` when it is known."""

    seq: int
    tx_key: str
    action: str
    payload: dict[str, Any]
    attempts: int
    """CALLERRORs received for it so far."""
    next_attempt_at: float
    enqueued_at: float
    transaction_id: int | None

    @property
    def needs_transaction_id(self) -> bool:
        """A Stop/MeterValues whose StartTransaction never got a transactionId (it was discarded)."""
        return self.action in (STOP_TRANSACTION, METER_VALUES) and self.transaction_id is None

    def due(self, now: float) -> bool:
        return now >= self.next_attempt_at


@dataclass(frozen=True, slots=True)
class FailedAttempt:
    attempts: int
    discarded: bool
    next_attempt_at: float | None
    """When to resend; None once discarded."""


class TransactionQueue:
    """The persistent FIFO of transaction-related messages. `now` is wall-clock seconds (time.time())."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._db = open_database(self.path, _QUEUE_SCHEMA)

    def enqueue(self, action: str, payload: Mapping[str, Any], *, tx_key: str, now: float) -> int:
        """Append a CALL (camelCase payload, without transactionId); committed when it returns.

        `tx_key` names the transaction locally and must not be reused for another transaction."""
        if action not in QUEUED_ACTIONS:
            raise ValueError(f"{action} is not a message the queue carries")
        if "transactionId" in payload:
            raise ValueError("the queue fills in transactionId; leave it out of the payload")
        text = json.dumps(dict(payload), separators=(",", ":"), allow_nan=False)
        cursor = self._db.execute(
            "INSERT INTO message (tx_key, action, payload, next_attempt_at, enqueued_at) VALUES (?, ?, ?, ?, ?)",
            (tx_key, action, text, now, now),
        )
        return int(cursor.lastrowid or 0)

    def peek_oldest(self) -> QueuedMessage | None:
        """The head of the queue, due or not: later messages wait behind it to keep the order."""
        row = self._db.execute(
            f"SELECT {_MESSAGE_COLUMNS} FROM message m LEFT JOIN transaction_id t USING (tx_key) ORDER BY m.seq LIMIT 1"
        ).fetchone()
        return None if row is None else _message(row)

    def messages(self) -> list[QueuedMessage]:
        """Every queued message, oldest first."""
        rows = self._db.execute(
            f"SELECT {_MESSAGE_COLUMNS} FROM message m LEFT JOIN transaction_id t USING (tx_key) ORDER BY m.seq"
        )
        return [_message(row) for row in rows]

    def __len__(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM message").fetchone()[0])

    def mark_delivered(self, seq: int, *, transaction_id: int | None = None) -> None:
        """The CSMS answered with a CALLRESULT. A StartTransaction needs the `transaction_id` it returned."""
        with _transaction(self._db):
            tx_key, action = self._take(seq)
            if action == START_TRANSACTION:
                if transaction_id is None:
                    raise ValueError("a delivered StartTransaction needs the transactionId of its answer")
                self._db.execute("INSERT OR REPLACE INTO transaction_id VALUES (?, ?)", (tx_key, transaction_id))
            self._forget_finished(tx_key, action)

    def record_failed_attempt(self, seq: int, *, now: float, max_attempts: int, retry_interval: float) -> FailedAttempt:
        """The CSMS answered with a CALLERROR: schedule the resend, or discard after `max_attempts` failures
        (TransactionMessageAttempts; `retry_interval` is TransactionMessageRetryInterval)."""
        with _transaction(self._db):
            row = self._db.execute("SELECT attempts FROM message WHERE seq = ?", (seq,)).fetchone()
            if row is None:
                raise KeyError(f"no queued message {seq}")
            attempts = int(row[0]) + 1
            if attempts >= max_attempts:
                self._discard(seq, now=now, reason=f"failed {attempts} times", attempts=attempts)
                return FailedAttempt(attempts, True, None)
            due = now + retry_interval * attempts
            self._db.execute("UPDATE message SET attempts = ?, next_attempt_at = ? WHERE seq = ?", (attempts, due, seq))
            return FailedAttempt(attempts, False, due)

    def discard(self, seq: int, *, now: float, reason: str) -> None:
        """Give up on a message without sending it (e.g. `needs_transaction_id`)."""
        with _transaction(self._db):
            self._discard(seq, now=now, reason=reason, attempts=None)

    def discarded(self) -> list[dict[str, Any]]:
        rows = self._db.execute("SELECT seq, tx_key, action, payload, attempts, reason FROM discarded ORDER BY seq")
        keys = ("seq", "tx_key", "action", "payload", "attempts", "reason")
        return [dict(zip(keys, (*row[:3], json.loads(row[3]), *row[4:]), strict=True)) for row in rows]

    def transaction_id(self, tx_key: str) -> int | None:
        row = self._db.execute("SELECT transaction_id FROM transaction_id WHERE tx_key = ?", (tx_key,)).fetchone()
        return None if row is None else int(row[0])

    def close(self) -> None:
        self._db.close()

    def _take(self, seq: int) -> tuple[str, str]:
        row = self._db.execute("SELECT tx_key, action FROM message WHERE seq = ?", (seq,)).fetchone()
        if row is None:
            raise KeyError(f"no queued message {seq}")
        self._db.execute("DELETE FROM message WHERE seq = ?", (seq,))
        return str(row[0]), str(row[1])

    def _discard(self, seq: int, *, now: float, reason: str, attempts: int | None) -> None:
        row = self._db.execute(
            "SELECT tx_key, action, payload, attempts, enqueued_at FROM message WHERE seq = ?", (seq,)
        ).fetchone()
        if row is None:
            raise KeyError(f"no queued message {seq}")
        tx_key, action, payload, stored_attempts, enqueued_at = row
        self._db.execute(
            "INSERT INTO discarded VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (seq, tx_key, action, payload, stored_attempts if attempts is None else attempts, enqueued_at, now, reason),
        )
        self._take(seq)
        self._forget_finished(tx_key, action)

    def _forget_finished(self, tx_key: str, action: str) -> None:
        # The id is needed until the transaction's last message has left the queue.
        if (
            action == STOP_TRANSACTION
            and not self._db.execute("SELECT 1 FROM message WHERE tx_key = ? LIMIT 1", (tx_key,)).fetchone()
        ):
            self._db.execute("DELETE FROM transaction_id WHERE tx_key = ?", (tx_key,))


def _message(row: tuple[Any, ...]) -> QueuedMessage:
    seq, tx_key, action, payload_text, attempts, next_attempt_at, enqueued_at, transaction_id = row
    payload = json.loads(payload_text)
    if action != START_TRANSACTION and transaction_id is not None:
        payload["transactionId"] = transaction_id
    return QueuedMessage(
        seq=seq,
        tx_key=tx_key,
        action=action,
        payload=payload,
        attempts=attempts,
        next_attempt_at=next_attempt_at,
        enqueued_at=enqueued_at,
        transaction_id=transaction_id,
    )


class OcppStore:
    """The three stores of one backend link under `state_dir` (one file per concern).

    Like `charger.journal.Journal`, not thread-safe: open it on the thread that uses it (SQLite refuses
    a connection used from another thread)."""

    def __init__(self, state_dir: str | Path, link_name: str = "ocpp") -> None:
        base = Path(state_dir)
        self.config = ConfigStore(base / f"{link_name}-config.db")
        self.auth = AuthStore(base / f"{link_name}-auth.db")
        self.queue = TransactionQueue(base / f"{link_name}-queue.db")

    def close(self) -> None:
        self.config.close()
        self.auth.close()
        self.queue.close()
