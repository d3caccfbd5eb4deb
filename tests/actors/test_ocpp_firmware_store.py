"""The firmware job store: a job and every phase it reached survive reopening (and a SIGKILL of the
writer), a new request replaces the old job, a replaced job can change nothing, and generations are
never reused."""

from __future__ import annotations

import multiprocessing
import os
import signal
from datetime import UTC, datetime
from pathlib import Path

from charger.actors.ocpp_firmware_store import FirmwareStore, request_from_record, request_record
from charger.protocols.ocpp_firmware import FirmwareRequest, FirmwareStatus

AT = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
PLAIN = FirmwareRequest.from_update_firmware(
    {"location": "http://fw.example.com/a.bin", "retrieveDate": "2026-03-01T12:00:00Z", "retries": 3}
)
SIGNED = FirmwareRequest.from_signed_update_firmware(
    {
        "requestId": 7,
        "retries": 1,
        "retryInterval": 5,
        "firmware": {
            "location": "https://fw.example.com/b.bin",
            "retrieveDateTime": "2026-03-01T12:00:00Z",
            "installDateTime": "2026-03-01T13:00:00+01:00",
            "signingCertificate": "-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n",
            "signature": "c2lnbmF0dXJl",
        },
    }
)


def test_requests_round_trip_through_their_record() -> None:
    for request in (PLAIN, SIGNED):
        assert request_from_record(request_record(request)) == request
    assert SIGNED.install_at == AT  # 13:00+01:00 is 12:00 UTC, and stays that instant


def test_a_job_and_its_phases_survive_reopening(tmp_path: Path) -> None:
    path = tmp_path / "link-firmware.db"
    store = FirmwareStore(path)
    assert store.current() is None
    generation = store.begin(SIGNED)
    store.reached(generation, FirmwareStatus.DOWNLOADING)
    store.attempt_started(generation, 1)
    store.close()
    store = FirmwareStore(path)
    job = store.current()
    assert job is not None
    assert (job.generation, job.request, job.status, job.notified) == (
        generation,
        SIGNED,
        FirmwareStatus.DOWNLOADING,
        False,
    )
    assert (job.attempts_started, job.image, job.sha256) == (1, None, None)
    store.notified(generation, FirmwareStatus.DOWNLOADING)
    store.downloaded(generation, "/state/image.bin", "ab" * 32)
    store.reached(generation, FirmwareStatus.DOWNLOADED)
    store.notified(generation, FirmwareStatus.DOWNLOADING)  # an older status's answer changes nothing
    job = store.current()
    assert job is not None and (job.status, job.notified) == (FirmwareStatus.DOWNLOADED, False)
    assert (job.image, job.sha256) == ("/state/image.bin", "ab" * 32)
    store.finish(generation)
    assert store.current() is None
    store.close()


def test_a_new_job_replaces_the_old_one_which_can_change_nothing_more(tmp_path: Path) -> None:
    store = FirmwareStore(tmp_path / "f.db")
    old = store.begin(PLAIN)
    new = store.begin(SIGNED)
    assert new > old
    store.reached(old, FirmwareStatus.INSTALLING)
    store.attempt_started(old, 3)
    store.finish(old)
    job = store.current()
    assert job is not None and (job.generation, job.status, job.attempts_started) == (new, FirmwareStatus.IDLE, 0)
    store.finish(new)
    assert store.begin(PLAIN) > new  # never reused, even once the table was empty: image names stay unique
    store.close()


def _write_then_die(path: str) -> None:
    store = FirmwareStore(path)
    generation = store.begin(PLAIN)
    store.attempt_started(generation, 2)
    store.reached(generation, FirmwareStatus.DOWNLOADING)
    os.kill(os.getpid(), signal.SIGKILL)


def test_what_was_written_survives_a_sigkill(tmp_path: Path) -> None:
    path = tmp_path / "f.db"
    process = multiprocessing.get_context("spawn").Process(target=_write_then_die, args=(str(path),))
    process.start()
    process.join(timeout=60)
    assert process.exitcode == -signal.SIGKILL
    job = FirmwareStore(path).current()
    assert job is not None and (job.request, job.status, job.attempts_started) == (
        PLAIN,
        FirmwareStatus.DOWNLOADING,
        2,
    )
