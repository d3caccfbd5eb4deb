"""What the Security Whitepaper's features keep across restarts (SQLite, WAL, ``synchronous=FULL``, one
file ``<link>-security.db`` under the state directory): the security log (every security event the
station noticed, sent to the CSMS or not) and the root certificates the CSMS installed.

The security log keeps its newest `_KEEP_EVENTS` events. Installed certificates are stored as PEM
with their CertificateHashData (SHA256), the key DeleteCertificate names them by.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from charger.protocols.ocpp_certificates import HashData

from charger.journal import open_database

__all__ = ["InstalledCertificate", "LoggedEvent", "SecurityStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS event (seq INTEGER PRIMARY KEY AUTOINCREMENT, at REAL NOT NULL, type TEXT NOT NULL,
                                  tech_info TEXT);
CREATE TABLE IF NOT EXISTS certificate (
    use TEXT NOT NULL, issuer_name_hash TEXT NOT NULL, issuer_key_hash TEXT NOT NULL, serial TEXT NOT NULL,
    pem TEXT NOT NULL, installed_at REAL NOT NULL,
    PRIMARY KEY (use, issuer_name_hash, issuer_key_hash, serial));
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
_KEEP_EVENTS = 5000


@dataclass(frozen=True, slots=True)
class LoggedEvent:
    at: float
    type: str
    tech_info: str | None


@dataclass(frozen=True, slots=True)
class InstalledCertificate:
    use: str
    hash_data: HashData
    pem: str


class SecurityStore:
    """Not thread-safe: open and use it on the actor's thread."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._db = open_database(self.path, _SCHEMA)

    def close(self) -> None:
        self._db.close()

    # -- the security log -------------------------------------------------------------------------------

    def log_event(self, kind: str, tech_info: str | None, at: float | None = None) -> None:
        self._db.execute(
            "INSERT INTO event (at, type, tech_info) VALUES (?, ?, ?)",
            (time.time() if at is None else at, kind, tech_info),
        )
        self._db.execute(
            "DELETE FROM event WHERE seq IN (SELECT seq FROM event ORDER BY seq DESC LIMIT -1 OFFSET ?)",
            (_KEEP_EVENTS,),
        )

    def events(self, oldest: datetime | None = None, latest: datetime | None = None) -> list[LoggedEvent]:
        low = float("-inf") if oldest is None else oldest.timestamp()
        high = float("inf") if latest is None else latest.timestamp()
        rows = self._db.execute("SELECT at, type, tech_info FROM event ORDER BY seq")
        return [LoggedEvent(at, kind, info) for at, kind, info in rows if low <= at <= high]

    # -- installed certificates ------------------------------------------------------------------------

    def certificates(self, use: str | None = None) -> list[InstalledCertificate]:
        query = "SELECT use, issuer_name_hash, issuer_key_hash, serial, pem FROM certificate"
        rows = (
            self._db.execute(query + " ORDER BY installed_at")
            if use is None
            else self._db.execute(query + " WHERE use = ? ORDER BY installed_at", (use,))
        )
        return [InstalledCertificate(u, HashData(n, k, s), pem) for u, n, k, s, pem in rows]

    def install(self, use: str, hash_data: HashData, pem: str) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO certificate VALUES (?, ?, ?, ?, ?, ?)",
            (use, hash_data.issuer_name_hash, hash_data.issuer_key_hash, hash_data.serial_number, pem, time.time()),
        )

    def delete(self, hash_data: HashData) -> bool:
        """Remove the certificate with these hashes (any use); whether there was one."""
        cursor = self._db.execute(
            "DELETE FROM certificate WHERE issuer_name_hash = ? AND issuer_key_hash = ? AND serial = ?",
            (hash_data.issuer_name_hash, hash_data.issuer_key_hash, hash_data.serial_number),
        )
        return cursor.rowcount > 0

    # -- small settings ---------------------------------------------------------------------------------

    def meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str | None) -> None:
        if value is None:
            self._db.execute("DELETE FROM meta WHERE key = ?", (key,))
        else:
            self._db.execute(
                "INSERT INTO meta VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value", (key, value)
            )
