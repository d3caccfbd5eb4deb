"""A small durable journal for actor state: SQLite in WAL mode, one file per concern (DESIGN §6).

Two shapes cover what actors keep: named records (the latest value of each key, e.g. a state-machine
snapshot) and an append-only log (e.g. completed sessions). Values are msgpack-native and stored as
msgpack. Every write commits with ``synchronous=FULL`` before it returns, so whatever an actor
acknowledged or published after a write survives a SIGKILL of the actor or of the whole box.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgpack

__all__ = ["Journal", "open_database", "write_file_atomically"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS record (key TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS log (seq INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, value BLOB NOT NULL);
"""


def open_database(path: str | Path, schema: str, *, private: bool = False) -> sqlite3.Connection:
    """One actor's SQLite file with `schema`, in WAL mode with ``synchronous=FULL`` (a commit is on disk
    when it returns) and autocommit, so each caller writes its own explicit transactions. `private`
    makes the file (and so its -wal and -shm files) readable by the owner only: for secrets."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if private:  # SQLite gives the -wal and -shm files the database file's mode
        os.close(os.open(path, os.O_CREAT | os.O_RDWR, 0o600))
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.executescript(schema)
    return db


class Journal:
    """One SQLite file. Not thread-safe: the actor that owns it uses it from its own thread."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._db = open_database(self.path, _SCHEMA)

    def get(self, key: str, default: Any = None) -> Any:
        row = self._db.execute("SELECT value FROM record WHERE key = ?", (key,)).fetchone()
        return default if row is None else msgpack.unpackb(row[0])

    def put(self, key: str, value: Any) -> None:
        self._db.execute(
            "INSERT INTO record (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, msgpack.packb(value)),
        )

    def delete(self, key: str) -> None:
        self._db.execute("DELETE FROM record WHERE key = ?", (key,))

    def append(self, kind: str, value: Any, *, also_put: dict[str, Any] | None = None) -> int:
        """Append to the log, optionally updating records in the same transaction; returns the sequence number."""
        with self._transaction():
            cursor = self._db.execute("INSERT INTO log (kind, value) VALUES (?, ?)", (kind, msgpack.packb(value)))
            for key, record in (also_put or {}).items():
                if record is None:
                    self.delete(key)
                else:
                    self.put(key, record)
        return int(cursor.lastrowid or 0)

    def entries(self, kind: str, limit: int | None = None) -> list[Any]:
        """The newest `limit` entries of `kind` (all when None), oldest first."""
        rows = self._db.execute(
            "SELECT value FROM log WHERE kind = ? ORDER BY seq DESC LIMIT ?", (kind, -1 if limit is None else limit)
        ).fetchall()
        return [msgpack.unpackb(v) for (v,) in reversed(rows)]

    def count(self, kind: str) -> int:
        return int(self._db.execute("SELECT count(*) FROM log WHERE kind = ?", (kind,)).fetchone()[0])

    def close(self) -> None:
        self._db.close()

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")


def write_file_atomically(path: str | Path, text: str) -> None:
    """Replace `path` with `text` so that a reader (or a reboot) sees the old or the new file, never half."""
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
