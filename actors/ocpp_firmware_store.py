"""The firmware job of the backend link, kept across restarts (SQLite, WAL, ``synchronous=FULL``, one file
``<link>-firmware.db`` under the state directory), so that a SIGKILL of the link or of the whole box
does not leave the CSMS without a final FirmwareStatusNotification.

One row per job (at most one job is kept: a new request deletes the old row in the same commit that
adds its own). It holds the request, the last status the job reached and whether the CSMS was told
(every status is written before its notification is sent, and marked told once the CSMS answered), how
many download attempts were started, and the downloaded image with its SHA256. Writes name the job's
`generation`, so a job that a newer request replaced can no longer change anything. Generations are
never reused (AUTOINCREMENT), which also names the image file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from charger.protocols.ocpp_firmware import FirmwareRequest, FirmwareStatus, parse_wire_time

from charger.journal import open_database

__all__ = ["FirmwareStore", "StoredFirmwareJob", "request_from_record", "request_record"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS job (
    generation INTEGER PRIMARY KEY AUTOINCREMENT, request TEXT NOT NULL, status TEXT NOT NULL,
    notified INTEGER NOT NULL, attempts_started INTEGER NOT NULL, image TEXT, sha256 TEXT);
"""


def _time(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def request_record(request: FirmwareRequest) -> dict[str, Any]:
    """A request as JSON-able data (`request_from_record` reads it back)."""
    return {
        "location": request.location,
        "retrieve_at": _time(request.retrieve_at),
        "retries": request.retries,
        "retry_interval_s": request.retry_interval_s,
        "request_id": request.request_id,
        "install_at": _time(request.install_at),
        "signing_certificate": request.signing_certificate,
        "signature": request.signature,
    }


def request_from_record(record: dict[str, Any]) -> FirmwareRequest:
    install = record.get("install_at")
    return FirmwareRequest(
        location=str(record["location"]),
        retrieve_at=parse_wire_time(record["retrieve_at"]),
        retries=int(record["retries"]),
        retry_interval_s=int(record["retry_interval_s"]),
        request_id=None if record.get("request_id") is None else int(record["request_id"]),
        install_at=None if install is None else parse_wire_time(install),
        signing_certificate=record.get("signing_certificate"),
        signature=record.get("signature"),
    )


@dataclass(frozen=True, slots=True)
class StoredFirmwareJob:
    generation: int
    request: FirmwareRequest
    status: FirmwareStatus
    notified: bool
    """The CSMS answered the notification of `status` (or the plan has no notification for it)."""
    attempts_started: int
    image: str | None
    sha256: str | None
    """Set once the image was downloaded (with `image`)."""


class FirmwareStore:
    """Not thread-safe: open and use it on the actor's thread. Every write has committed on return."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._db = open_database(self.path, _SCHEMA)

    def close(self) -> None:
        self._db.close()

    def begin(self, request: FirmwareRequest) -> int:
        """A new job replaces any other; its generation."""
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute("DELETE FROM job")
            cursor = self._db.execute(
                "INSERT INTO job (request, status, notified, attempts_started) VALUES (?, ?, 1, 0)",
                (json.dumps(request_record(request)), FirmwareStatus.IDLE.value),
            )
        return int(cursor.lastrowid or 0)

    def current(self) -> StoredFirmwareJob | None:
        row = self._db.execute(
            "SELECT generation, request, status, notified, attempts_started, image, sha256 FROM job"
            " ORDER BY generation DESC LIMIT 1"
        ).fetchone()
        if row is None:
            return None
        generation, request, status, notified, attempts, image, sha256 = row
        return StoredFirmwareJob(
            int(generation),
            request_from_record(json.loads(request)),
            FirmwareStatus(status),
            bool(notified),
            int(attempts),
            image,
            sha256,
        )

    def reached(self, generation: int, status: FirmwareStatus, *, notified: bool = False) -> None:
        self._db.execute(
            "UPDATE job SET status = ?, notified = ? WHERE generation = ?", (status.value, int(notified), generation)
        )

    def notified(self, generation: int, status: FirmwareStatus) -> None:
        self._db.execute("UPDATE job SET notified = 1 WHERE generation = ? AND status = ?", (generation, status.value))

    def attempt_started(self, generation: int, attempt: int) -> None:
        self._db.execute("UPDATE job SET attempts_started = ? WHERE generation = ?", (attempt, generation))

    def downloaded(self, generation: int, image: str | None, sha256: str | None) -> None:
        """The image is on disk with this SHA256 (None, None: it is not, download again)."""
        self._db.execute("UPDATE job SET image = ?, sha256 = ? WHERE generation = ?", (image, sha256, generation))

    def finish(self, generation: int) -> None:
        self._db.execute("DELETE FROM job WHERE generation = ?", (generation,))
