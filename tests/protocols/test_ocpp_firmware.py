"""Firmware and log requests as data: parsing, transfer URLs, and the notifications' statuses."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from charger.protocols.ocpp_firmware import (
    DEFAULT_RETRIES,
    FirmwareRequest,
    FirmwareStatus,
    LogRequest,
    firmware_notification,
    log_lines_between,
    log_notification,
    parse_wire_time,
    safe_url,
    transfer_url_problem,
    upload_target,
)


def test_update_firmware_request_with_and_without_retries() -> None:
    plain = FirmwareRequest.from_update_firmware(
        {"location": "http://h/fw.bin", "retrieveDate": "2026-01-02T03:04:05Z"}
    )
    assert plain.retrieve_at == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert (plain.retries, plain.attempts, plain.signed) == (DEFAULT_RETRIES, DEFAULT_RETRIES + 1, False)
    asked = FirmwareRequest.from_update_firmware(
        {"location": "http://h/fw.bin", "retrieveDate": "2026-01-02T03:04:05Z", "retries": 0, "retryInterval": 5}
    )
    assert (asked.attempts, asked.retry_interval_s) == (1, 5)
    greedy = FirmwareRequest.from_update_firmware(
        {"location": "http://h/x", "retrieveDate": "2026-01-02T03:04:05Z", "retries": 10**6, "retryInterval": -3}
    )
    assert (greedy.retries, greedy.retry_interval_s) == (10, 0)  # bounded: a download must end


def test_signed_update_firmware_request() -> None:
    request = FirmwareRequest.from_signed_update_firmware(
        {
            "requestId": 7,
            "retries": 1,
            "firmware": {
                "location": "https://h/fw.bin",
                "retrieveDateTime": "2026-01-02T03:04:05+01:00",
                "installDateTime": "2026-01-02T04:00:00Z",
                "signingCertificate": "PEM",
                "signature": "c2ln",
            },
        }
    )
    assert request.signed and request.request_id == 7 and request.attempts == 2
    assert request.retrieve_at == datetime(2026, 1, 2, 2, 4, 5, tzinfo=UTC)
    assert request.install_at == datetime(2026, 1, 2, 4, 0, tzinfo=UTC)


def test_a_time_without_zone_is_utc() -> None:
    assert parse_wire_time("2026-05-01T00:00:00") == datetime(2026, 5, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://127.0.0.1:8080/fw.bin", None),
        ("HTTPS://example.com/a", None),
        ("ftp://user:secret@example.com/fw.bin", "the location's scheme 'ftp' is not supported (only http, https)"),
        ("file:///etc/passwd", "the location's scheme 'file' is not supported (only http, https)"),
        ("fw.bin", "the location's scheme 'none' is not supported (only http, https)"),
        ("http:///nohost", "the location has no host"),
        ("http://[::1", "the location is not a URL"),
    ],
)
def test_transfer_urls(url: str, problem: str | None) -> None:
    assert transfer_url_problem(url) == problem
    if problem:
        assert "secret" not in problem


def test_credentials_never_reach_a_log_line() -> None:
    assert safe_url("https://cp1:hunter2@example.com:8443/up/") == "https://***@example.com:8443/up/"
    assert safe_url("http://example.com/x") == "http://example.com/x"


@pytest.mark.parametrize(
    ("location", "target"),
    [
        ("http://h/uploads/", "http://h/uploads/diag.tar.gz"),
        ("http://h", "http://h/diag.tar.gz"),
        ("http://h/uploads/mine.tgz", "http://h/uploads/mine.tgz"),
        ("http://h/up/?token=1", "http://h/up/diag.tar.gz?token=1"),
    ],
)
def test_upload_target(location: str, target: str) -> None:
    assert upload_target(location, "diag.tar.gz") == target


def test_firmware_notifications_for_plain_and_signed_jobs() -> None:
    plain = [firmware_notification(None, s) for s in FirmwareStatus]
    assert plain[:7] == [("FirmwareStatusNotification", {"status": s.value}) for s in list(FirmwareStatus)[:7]]
    assert plain[7:] == [None] * 5  # the 1.6 enum has no DownloadScheduled, InvalidSignature...
    assert firmware_notification(3, FirmwareStatus.INVALID_SIGNATURE) == (
        "SignedFirmwareStatusNotification",
        {"status": "InvalidSignature", "requestId": 3},
    )


def test_log_requests_and_notifications() -> None:
    diagnostics = LogRequest.from_get_diagnostics(
        {"location": "http://h/", "startTime": "2026-01-01T00:00:00Z", "retries": 0}
    )
    assert diagnostics.request_id is None and diagnostics.attempts == 1 and diagnostics.latest is None
    assert diagnostics.oldest == datetime(2026, 1, 1, tzinfo=UTC)
    log = LogRequest.from_get_log(
        {
            "logType": "SecurityLog",
            "requestId": 9,
            "log": {"remoteLocation": "http://h/", "latestTimestamp": "2026-02-01T00:00:00Z"},
        }
    )
    assert (log.log_type, log.request_id, log.location) == ("SecurityLog", 9, "http://h/")
    assert [log_notification(None, u) for u in (None, True, False)] == [
        ("DiagnosticsStatusNotification", {"status": "Uploading"}),
        ("DiagnosticsStatusNotification", {"status": "Uploaded"}),
        ("DiagnosticsStatusNotification", {"status": "UploadFailed"}),
    ]
    assert [log_notification(9, u)[1]["status"] for u in (None, True, False)] == [
        "Uploading",
        "Uploaded",
        "UploadFailure",
    ]
    assert log_notification(9, True) == ("LogStatusNotification", {"status": "Uploaded", "requestId": 9})


def test_log_lines_between_keeps_whole_entries_in_the_window() -> None:
    log = [
        "2026-01-01 10:00:00,000 INFO    a: before\n",
        "2026-01-01 11:00:00,500 ERROR   a: inside\n",
        "Traceback (most recent call last):\n",
        "  boom\n",
        "2026-01-01 12:30:00,000 INFO    a: after\n",
    ]
    plus_one = timezone(timedelta(hours=1))
    oldest = datetime(2026, 1, 1, 11, 30, tzinfo=plus_one)  # 10:30 UTC
    latest = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    assert list(log_lines_between(log, oldest, latest, UTC)) == log[1:4]
    assert list(log_lines_between(log, None, None, UTC)) == log
    assert list(log_lines_between(log, None, datetime(2026, 1, 1, 9, 0, tzinfo=UTC), plus_one)) == log[:1]
    assert list(log_lines_between(["no time at all\n"], oldest, latest, UTC)) == ["no time at all\n"]
