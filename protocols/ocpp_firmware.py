"""OCPP 1.6 Firmware Management and the Security Whitepaper's firmware and log requests, as data: what a
request asks for, which transfer URLs the station can serve, the status notifications a job sends in
which order, and the security events (Whitepaper ed. 3, appendix 1). No I/O.

A firmware job runs one of two plans:
- UpdateFirmware (1.6 §5.16): Downloading, then Downloaded or DownloadFailed, then Installing, then
  Installed or InstallationFailed, each as a FirmwareStatusNotification;
- SignedUpdateFirmware (Whitepaper L01): the same, as SignedFirmwareStatusNotification with the
  requestId, plus DownloadScheduled (retrieveDateTime in the future), SignatureVerified or
  InvalidSignature after the download, and InstallScheduled (installDateTime in the future).

`retries` counts the tries *after* the first one (1 + retries downloads at most), `retryInterval` is
the wait between them in seconds.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from typing import Any
from urllib.parse import urlsplit, urlunsplit

__all__ = [
    "CRITICAL_SECURITY_EVENTS",
    "DEFAULT_RETRIES",
    "DEFAULT_RETRY_INTERVAL_S",
    "SUPPORTED_SCHEMES",
    "FirmwareRequest",
    "FirmwareStatus",
    "LogRequest",
    "SecurityEvent",
    "UploadLogStatus",
    "firmware_notification",
    "log_lines_between",
    "log_notification",
    "parse_wire_time",
    "safe_url",
    "transfer_url_problem",
    "upload_target",
]

SUPPORTED_SCHEMES = ("http", "https")
DEFAULT_RETRIES = 2
"""When the CSMS leaves `retries` out ("left to the Charge Point")."""
DEFAULT_RETRY_INTERVAL_S = 30
_MAX_RETRIES = 10  # a CSMS asking for 1000 retries gets 10: a download must end some day
_MAX_RETRY_INTERVAL_S = 3600


class FirmwareStatus(enum.StrEnum):
    """SignedFirmwareStatusNotification's statuses; the first seven are also 1.6 FirmwareStatus."""

    DOWNLOADED = "Downloaded"
    DOWNLOAD_FAILED = "DownloadFailed"
    DOWNLOADING = "Downloading"
    IDLE = "Idle"
    INSTALLATION_FAILED = "InstallationFailed"
    INSTALLING = "Installing"
    INSTALLED = "Installed"
    DOWNLOAD_SCHEDULED = "DownloadScheduled"
    INSTALL_SCHEDULED = "InstallScheduled"
    INSTALL_VERIFICATION_FAILED = "InstallVerificationFailed"
    INVALID_SIGNATURE = "InvalidSignature"
    SIGNATURE_VERIFIED = "SignatureVerified"


_UNSIGNED = frozenset(list(FirmwareStatus)[:7])


class UploadLogStatus(enum.StrEnum):
    """LogStatusNotification's statuses (the ones the station uses)."""

    IDLE = "Idle"
    UPLOADING = "Uploading"
    UPLOADED = "Uploaded"
    UPLOAD_FAILURE = "UploadFailure"


class SecurityEvent(enum.StrEnum):
    """The Whitepaper's security events the station can notice."""

    FIRMWARE_UPDATED = "FirmwareUpdated"
    FAILED_TO_AUTHENTICATE_AT_CENTRAL_SYSTEM = "FailedToAuthenticateAtCentralSystem"
    STARTUP_OF_THE_DEVICE = "StartupOfTheDevice"
    RESET_OR_REBOOT = "ResetOrReboot"
    RECONFIGURATION_OF_SECURITY_PARAMETERS = "ReconfigurationOfSecurityParameters"
    INVALID_FIRMWARE_SIGNATURE = "InvalidFirmwareSignature"
    INVALID_FIRMWARE_SIGNING_CERTIFICATE = "InvalidFirmwareSigningCertificate"
    INVALID_CENTRAL_SYSTEM_CERTIFICATE = "InvalidCentralSystemCertificate"
    INVALID_CHARGE_POINT_CERTIFICATE = "InvalidChargePointCertificate"


CRITICAL_SECURITY_EVENTS = frozenset(
    {
        SecurityEvent.FIRMWARE_UPDATED,
        SecurityEvent.STARTUP_OF_THE_DEVICE,
        SecurityEvent.RESET_OR_REBOOT,
        SecurityEvent.RECONFIGURATION_OF_SECURITY_PARAMETERS,
        SecurityEvent.INVALID_FIRMWARE_SIGNATURE,
        SecurityEvent.INVALID_FIRMWARE_SIGNING_CERTIFICATE,
        SecurityEvent.INVALID_CENTRAL_SYSTEM_CERTIFICATE,
        SecurityEvent.INVALID_CHARGE_POINT_CERTIFICATE,
    }
)
"""Sent to the CSMS (the Whitepaper's "critical" ones); the others are only written to the security log."""


def parse_wire_time(text: str) -> datetime:
    """An OCPP date-time (RFC 3339); a time without zone is taken as UTC."""
    value = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def transfer_url_problem(url: str) -> str | None:
    """Why the station cannot transfer a file to or from `url`, or None. Never repeats credentials."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "the location is not a URL"
    scheme = parts.scheme.lower()
    if scheme not in SUPPORTED_SCHEMES:
        shown = scheme or "none"
        return f"the location's scheme {shown!r} is not supported (only {', '.join(SUPPORTED_SCHEMES)})"
    if not parts.hostname:
        return "the location has no host"
    return None


def safe_url(url: str) -> str:
    """`url` without user name and password, for logs."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<not a URL>"
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, f"***@{netloc}", parts.path, parts.query, parts.fragment))


def upload_target(location: str, file_name: str) -> str:
    """Where a file goes: a location ending in ``/`` is a directory (the file name is appended), any
    other location names the file itself."""
    parts = urlsplit(location)
    if parts.path.endswith("/") or not parts.path:
        path = (parts.path or "/") + file_name
        return urlunsplit((parts.scheme, parts.netloc, path, parts.query, parts.fragment))
    return location


def _bounded(value: Any, default: int, limit: int) -> int:
    return default if value is None else max(0, min(int(value), limit))


@dataclass(frozen=True, slots=True, kw_only=True)
class FirmwareRequest:
    """An UpdateFirmware or SignedUpdateFirmware, as the station uses it."""

    location: str
    retrieve_at: datetime
    retries: int
    retry_interval_s: int
    request_id: int | None = None
    """Set for SignedUpdateFirmware only: its notifications carry it."""
    install_at: datetime | None = None
    signing_certificate: str | None = None
    signature: str | None = None

    @property
    def signed(self) -> bool:
        return self.request_id is not None

    @property
    def attempts(self) -> int:
        return 1 + self.retries

    @classmethod
    def from_update_firmware(cls, payload: dict[str, Any]) -> FirmwareRequest:
        return cls(
            location=payload["location"],
            retrieve_at=parse_wire_time(payload["retrieveDate"]),
            retries=_bounded(payload.get("retries"), DEFAULT_RETRIES, _MAX_RETRIES),
            retry_interval_s=_bounded(payload.get("retryInterval"), DEFAULT_RETRY_INTERVAL_S, _MAX_RETRY_INTERVAL_S),
        )

    @classmethod
    def from_signed_update_firmware(cls, payload: dict[str, Any]) -> FirmwareRequest:
        firmware = payload["firmware"]
        install = firmware.get("installDateTime")
        return cls(
            location=firmware["location"],
            retrieve_at=parse_wire_time(firmware["retrieveDateTime"]),
            retries=_bounded(payload.get("retries"), DEFAULT_RETRIES, _MAX_RETRIES),
            retry_interval_s=_bounded(payload.get("retryInterval"), DEFAULT_RETRY_INTERVAL_S, _MAX_RETRY_INTERVAL_S),
            request_id=int(payload["requestId"]),
            install_at=None if install is None else parse_wire_time(install),
            signing_certificate=firmware["signingCertificate"],
            signature=firmware["signature"],
        )


def firmware_notification(request_id: int | None, status: FirmwareStatus) -> tuple[str, dict[str, Any]] | None:
    """The CALL that reports `status` for a job (request_id None: a plain UpdateFirmware), or None when
    the plain 1.6 notification has no such status (it is only logged then)."""
    if request_id is not None:
        return "SignedFirmwareStatusNotification", {"status": status.value, "requestId": request_id}
    if status not in _UNSIGNED:
        return None
    return "FirmwareStatusNotification", {"status": status.value}


@dataclass(frozen=True, slots=True, kw_only=True)
class LogRequest:
    """A GetDiagnostics or GetLog, as the station uses it."""

    location: str
    retries: int
    retry_interval_s: int
    oldest: datetime | None = None
    latest: datetime | None = None
    log_type: str = "DiagnosticsLog"
    """DiagnosticsLog or SecurityLog."""
    request_id: int | None = None
    """Set for GetLog only."""

    @classmethod
    def from_get_diagnostics(cls, payload: dict[str, Any]) -> LogRequest:
        start, stop = payload.get("startTime"), payload.get("stopTime")
        return cls(
            location=payload["location"],
            retries=_bounded(payload.get("retries"), DEFAULT_RETRIES, _MAX_RETRIES),
            retry_interval_s=_bounded(payload.get("retryInterval"), DEFAULT_RETRY_INTERVAL_S, _MAX_RETRY_INTERVAL_S),
            oldest=None if start is None else parse_wire_time(start),
            latest=None if stop is None else parse_wire_time(stop),
        )

    @classmethod
    def from_get_log(cls, payload: dict[str, Any]) -> LogRequest:
        log = payload["log"]
        oldest, latest = log.get("oldestTimestamp"), log.get("latestTimestamp")
        return cls(
            location=log["remoteLocation"],
            retries=_bounded(payload.get("retries"), DEFAULT_RETRIES, _MAX_RETRIES),
            retry_interval_s=_bounded(payload.get("retryInterval"), DEFAULT_RETRY_INTERVAL_S, _MAX_RETRY_INTERVAL_S),
            oldest=None if oldest is None else parse_wire_time(oldest),
            latest=None if latest is None else parse_wire_time(latest),
            log_type=payload["logType"],
            request_id=int(payload["requestId"]),
        )

    @property
    def attempts(self) -> int:
        return 1 + self.retries


def log_notification(request_id: int | None, uploaded: bool | None) -> tuple[str, dict[str, Any]]:
    """The CALL that reports an upload: started (`uploaded` None), done (True) or failed (False).
    GetDiagnostics (request_id None) reports with DiagnosticsStatusNotification, GetLog with
    LogStatusNotification and its requestId."""
    if request_id is None:
        status = "Uploading" if uploaded is None else ("Uploaded" if uploaded else "UploadFailed")
        return "DiagnosticsStatusNotification", {"status": status}
    log_status = (
        UploadLogStatus.UPLOADING
        if uploaded is None
        else (UploadLogStatus.UPLOADED if uploaded else UploadLogStatus.UPLOAD_FAILURE)
    )
    return "LogStatusNotification", {"status": log_status.value, "requestId": request_id}


_LOG_TIME = re.compile(r"(\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2})")


def log_lines_between(
    lines: Iterable[str], oldest: datetime | None, latest: datetime | None, local: tzinfo
) -> Iterator[str]:
    """The lines of a plain log (each entry starts with its local time, ``2026-01-02 03:04:05,678``)
    written between `oldest` and `latest`; a line without a time (a traceback) goes with its entry."""
    keep = True
    for line in lines:
        stamp = _LOG_TIME.match(line)
        if stamp is not None:
            at = datetime.fromisoformat(stamp.group(1).replace(" ", "T")).replace(tzinfo=local)
            keep = (oldest is None or at >= oldest) and (latest is None or at <= latest)
        if keep:
            yield line
