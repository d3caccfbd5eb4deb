"""Firmware updates on the backend link: UpdateFirmware (OCPP 1.6 §5.16, Firmware Management) and
SignedUpdateFirmware (Security Whitepaper L01), and the FirmwareStatusNotification a TriggerMessage asks
for. The status sequences are `charger.protocols.ocpp_firmware`'s.

A job waits for retrieveDate, downloads the image over HTTP(S) (`charger.hal.http_transfer`) with
`retries` retries `retryInterval` seconds apart, checks a signed image's signature, waits for
installDateTime and then until no transaction runs (connectors are not made Unavailable meanwhile: a
new transaction simply delays the install again), and calls the install hook (`charger.hal.firmware`)
on the I/O thread. A newer request replaces a job that has not begun to install (a signed one is
answered AcceptedCanceled); a request while installing is refused (Rejected, or ignored for the 1.6
UpdateFirmware, whose answer has no status). A job lives in memory: a restart of the link drops it.

Locations must be http or https; another scheme is refused at once: a CALLERROR
PropertyConstraintViolation for UpdateFirmware (its answer has no status), Rejected for
SignedUpdateFirmware. A signing certificate that does not chain to the configured or installed
manufacturer root is InvalidCertificate (and the InvalidFirmwareSigningCertificate security event);
a signature that does not match the image is InvalidSignature (and InvalidFirmwareSignature), and
nothing is installed.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Generator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from charger.actors.ocpp_base import LINK_UNAVAILABLE
from charger.actors.ocpp_link import CsmsAnswer, CsmsError
from charger.hal.firmware import FirmwareImage, InstallHook, InstallOutcome, load_install_hook
from charger.hal.http_transfer import TransferError, download
from charger.protocols.ocpp_certificates import (
    CertificateProblem,
    load_certificate,
    signing_certificate_problem,
    verify_firmware_signature,
)
from charger.protocols.ocpp_firmware import (
    FirmwareRequest,
    FirmwareStatus,
    SecurityEvent,
    firmware_notification,
    safe_url,
    transfer_url_problem,
)
from charger.protocols.ocpp_frames import ErrorCode

from charger.behaviour import Pending

if TYPE_CHECKING:
    from charger.actors.backend_link import BackendLink

__all__ = ["FIRMWARE_CONFIG", "FIRMWARE_HANDLERS", "FirmwareJobs", "send_firmware_status", "state_path"]

FIRMWARE_CONFIG = {
    "type": "object",
    "additionalProperties": False,
    "default": {},
    "description": "Firmware updates and diagnostics uploads.",
    "properties": {
        "install_hook": {
            "type": "string",
            "default": "charger.hal.firmware:sil_install",
            "description": "package.module:function that installs a downloaded image (see charger.hal.firmware).",
        },
        "signing_ca_file": {
            "type": ["string", "null"],
            "default": None,
            "description": "PEM CA(s) that issue firmware signing certificates (relative: state dir).",
        },
        "max_image_bytes": {"type": "integer", "minimum": 1, "default": 512 * 1024 * 1024},
        "transfer_timeout_s": {"type": "number", "exclusiveMinimum": 0, "default": 30},
        "transfer_ca_file": {
            "type": ["string", "null"],
            "default": None,
            "description": "PEM CA(s) for https transfers (relative: state dir); null: the system's CAs.",
        },
        "log_files": {
            "type": "array",
            "items": {"type": "string", "minLength": 1},
            "default": ["charger.log"],
            "description": "Log files (relative: state dir) put into diagnostics archives when present.",
        },
    },
}
_TRANSACTION_POLL_S = 2.0
_FINAL = frozenset(
    {
        FirmwareStatus.DOWNLOAD_FAILED,
        FirmwareStatus.INVALID_SIGNATURE,
        FirmwareStatus.INSTALLATION_FAILED,
        FirmwareStatus.INSTALLED,
    }
)


@dataclass
class FirmwareJob:
    request: FirmwareRequest
    generation: int
    status: FirmwareStatus = FirmwareStatus.IDLE
    installing: bool = False


class FirmwareJobs:
    """The firmware job of one backend link (at most one at a time)."""

    def __init__(self, link: BackendLink) -> None:
        self.hook: InstallHook = load_install_hook(link.config["firmware"]["install_hook"])
        self.directory = Path(link.state_dir) / "firmware" / "downloads"
        self.current: FirmwareJob | None = None
        self.generation = 0

    def replace(self, request: FirmwareRequest) -> FirmwareJob:
        self.generation += 1
        self.current = FirmwareJob(request, self.generation)
        return self.current

    def is_current(self, job: FirmwareJob) -> bool:
        return self.current is job


# --- the requests --------------------------------------------------------------------------------------


def update_firmware(link: BackendLink, payload: dict[str, Any]) -> dict[str, Any] | CsmsAnswer:
    problem = transfer_url_problem(payload["location"])
    if problem is not None:
        link.log.warning("UpdateFirmware refused: %s", problem)
        return CsmsAnswer(error=ErrorCode.PROPERTY_CONSTRAINT_VIOLATION, description=problem)
    jobs: FirmwareJobs = link.firmware
    if jobs.current is not None and jobs.current.installing:
        link.log.warning("UpdateFirmware ignored: an update is being installed")
        return {}
    job = jobs.replace(FirmwareRequest.from_update_firmware(payload))
    link.log.info("UpdateFirmware from %s accepted", safe_url(job.request.location))
    return CsmsAnswer(payload={}, after=lambda: _run(link, job))


def signed_update_firmware(link: BackendLink, payload: dict[str, Any]) -> dict[str, Any] | CsmsAnswer:
    request = FirmwareRequest.from_signed_update_firmware(payload)
    problem = transfer_url_problem(request.location)
    if problem is not None:
        link.log.warning("SignedUpdateFirmware %s rejected: %s", request.request_id, problem)
        return {"status": "Rejected"}
    problem = _certificate_problem(link, request.signing_certificate or "")
    if problem is not None:
        link.log.warning("SignedUpdateFirmware %s: InvalidCertificate (%s)", request.request_id, problem)
        link.security.event(SecurityEvent.INVALID_FIRMWARE_SIGNING_CERTIFICATE, problem)
        return {"status": "InvalidCertificate"}
    jobs: FirmwareJobs = link.firmware
    if jobs.current is not None and jobs.current.installing:
        link.log.warning("SignedUpdateFirmware %s rejected: an update is being installed", request.request_id)
        return {"status": "Rejected"}
    status = "AcceptedCanceled" if jobs.current is not None else "Accepted"
    job = jobs.replace(request)
    link.log.info("SignedUpdateFirmware %s from %s: %s", request.request_id, safe_url(request.location), status)
    return CsmsAnswer(payload={"status": status}, after=lambda: _run(link, job))


def _certificate_problem(link: BackendLink, pem: str) -> str | None:
    try:
        certificate = load_certificate(pem)
        roots = link.security.firmware_roots()
    except CertificateProblem as exc:
        return str(exc)
    except (OSError, ValueError) as exc:
        link.log.error("the firmware signing CA cannot be read: %s", exc)
        return "the firmware signing CA cannot be read"
    return signing_certificate_problem(certificate, roots)


# --- the job -------------------------------------------------------------------------------------------


def _notify(link: BackendLink, job: FirmwareJob, status: FirmwareStatus) -> Generator[Pending, Any, None]:
    if not link.firmware.is_current(job):
        return  # replaced by a newer request, which does the reporting
    job.status = status
    if status in _FINAL:
        link.firmware.current = None  # done before the CSMS hears it: its next request finds the station free
    link.log.info("firmware update: %s", status.value)
    call = firmware_notification(job.request.request_id, status)
    if call is None:
        return
    try:
        yield link.call_csms(*call)
    except (*LINK_UNAVAILABLE, CsmsError) as exc:
        link.log.info("%s %s not delivered: %s", call[0], status.value, exc)


def _seconds_until(moment: datetime | None) -> float:
    return 0.0 if moment is None else (moment - datetime.now(UTC)).total_seconds()


def _run(link: BackendLink, job: FirmwareJob) -> Generator[Pending, Any, None]:
    jobs: FirmwareJobs = link.firmware
    image = jobs.directory / f"image-{job.generation}.bin"
    try:
        yield from _download_verify_install(link, jobs, job, image)
    finally:
        with contextlib.suppress(OSError):
            image.unlink()
        if jobs.is_current(job):
            jobs.current = None


def _download_verify_install(
    link: BackendLink, jobs: FirmwareJobs, job: FirmwareJob, image: Path
) -> Generator[Pending, Any, None]:
    request = job.request
    wait = _seconds_until(request.retrieve_at)
    if wait > 0:
        if request.signed:
            yield from _notify(link, job, FirmwareStatus.DOWNLOAD_SCHEDULED)
        yield link.sleep(wait)
    if not jobs.is_current(job) or not (yield from _download(link, jobs, job, image)) or not jobs.is_current(job):
        return
    yield from _notify(link, job, FirmwareStatus.DOWNLOADED)
    sha256, problem = yield link.run_io(_inspect, image, request)
    if problem is not None:
        link.security.event(SecurityEvent.INVALID_FIRMWARE_SIGNATURE, problem)
        yield from _notify(link, job, FirmwareStatus.INVALID_SIGNATURE)
        return
    if request.signed:
        yield from _notify(link, job, FirmwareStatus.SIGNATURE_VERIFIED)
    wait = _seconds_until(request.install_at)
    if wait > 0:
        yield from _notify(link, job, FirmwareStatus.INSTALL_SCHEDULED)
        yield link.sleep(wait)
    while jobs.is_current(job) and any(link.running_session(c) is not None for c in link.connector_of.values()):
        yield link.sleep(_TRANSACTION_POLL_S)  # install once no transaction runs
    if jobs.is_current(job):
        yield from _install(link, jobs, job, image, sha256)


def _download(link: BackendLink, jobs: FirmwareJobs, job: FirmwareJob, image: Path) -> Generator[Pending, Any, bool]:
    """Downloading, with the request's retries; False once it failed (DownloadFailed) or was replaced."""
    request, settings = job.request, link.config["firmware"]
    yield from _notify(link, job, FirmwareStatus.DOWNLOADING)
    ca_file = state_path(link, settings["transfer_ca_file"])
    for attempt in range(1, request.attempts + 1):
        try:
            size = yield link.run_io(
                lambda: download(
                    request.location,
                    image,
                    timeout_s=settings["transfer_timeout_s"],
                    max_bytes=settings["max_image_bytes"],
                    ca_file=ca_file,
                )
            )
        except TransferError as exc:
            link.log.warning("firmware download %d of %d failed: %s", attempt, request.attempts, exc)
            if attempt < request.attempts:
                yield link.sleep(request.retry_interval_s)
                if not jobs.is_current(job):
                    return False
                continue
            yield from _notify(link, job, FirmwareStatus.DOWNLOAD_FAILED)
            return False
        link.log.info("firmware downloaded from %s (%d bytes)", safe_url(request.location), size)
        return True
    return False


def _install(
    link: BackendLink, jobs: FirmwareJobs, job: FirmwareJob, image: Path, sha256: str
) -> Generator[Pending, Any, None]:
    job.installing = True
    yield from _notify(link, job, FirmwareStatus.INSTALLING)
    target = FirmwareImage(
        path=image,
        location=safe_url(job.request.location),
        sha256=sha256,
        signed=job.request.signed,
        state_dir=Path(link.state_dir),
    )
    try:
        outcome: InstallOutcome = yield link.run_io(jobs.hook, target)
    except Exception as exc:  # noqa: BLE001 - a failing hook is a failed installation, not a crashed link
        outcome = InstallOutcome(False, f"the install hook failed: {type(exc).__name__}: {exc}")
    if not outcome.installed:
        link.log.error("firmware installation failed: %s", outcome.detail)
        yield from _notify(link, job, FirmwareStatus.INSTALLATION_FAILED)
        return
    link.log.info("firmware installed: %s%s", outcome.detail, " (runs after a reboot)" if outcome.reboot else "")
    link.security.event(SecurityEvent.FIRMWARE_UPDATED, outcome.detail)
    yield from _notify(link, job, FirmwareStatus.INSTALLED)


def _inspect(image: Path, request: FirmwareRequest) -> tuple[str, str | None]:
    """I/O thread: the image's SHA256, and why its signature does not hold (None: it holds, or unsigned)."""
    data = image.read_bytes()
    problem = None
    if request.signed:
        certificate = load_certificate(request.signing_certificate or "")
        problem = verify_firmware_signature(certificate, data, request.signature or "")
    return hashlib.sha256(data).hexdigest(), problem


def state_path(link: BackendLink, path: str | None) -> str | None:
    """A configured file: relative to the state directory (an absolute path stays as it is)."""
    return None if path is None else os.path.join(link.state_dir, path)


def send_firmware_status(link: BackendLink, connector: int | None) -> Generator[Pending, Any, None]:
    """TriggerMessage(FirmwareStatusNotification): the running job's status, or Idle."""
    job: FirmwareJob | None = link.firmware.current
    call = None if job is None else firmware_notification(job.request.request_id, job.status)
    if call is None:
        call = ("FirmwareStatusNotification", {"status": FirmwareStatus.IDLE.value})
    try:
        yield link.call_csms(*call, triggered=True)
    except (*LINK_UNAVAILABLE, CsmsError) as exc:
        link.log.info("triggered %s failed: %s", call[0], exc)


FIRMWARE_HANDLERS = {
    "SignedUpdateFirmware": signed_update_firmware,
    "UpdateFirmware": update_firmware,
}
