"""Firmware updates on the backend link: UpdateFirmware (OCPP 1.6 §5.16, Firmware Management) and
SignedUpdateFirmware (Security Whitepaper L01), and the FirmwareStatusNotification a TriggerMessage asks
for. The status sequences are `charger.protocols.ocpp_firmware`'s.

A job waits for retrieveDate, downloads the image over HTTP(S) (`charger.hal.http_transfer`) with
`retries` retries `retryInterval` seconds apart, checks a signed image's signature, waits for
installDateTime and then until no transaction runs (connectors are not made Unavailable meanwhile: a
new transaction simply delays the install again), and calls the install hook (`charger.hal.firmware`)
on the I/O thread. A newer request replaces a job that has not begun to install (a signed one is
answered AcceptedCanceled); a request while installing is refused (Rejected, or ignored for the 1.6
UpdateFirmware, whose answer has no status).

A job survives a restart of the link or of the box (`charger.actors.ocpp_firmware_store`): each status
is stored before its notification goes out, and a restarted link goes on from there without sending a
status the CSMS already acknowledged. Not yet downloaded: wait for retrieveDate, download (an attempt
that the restart cut off counts as one). Downloaded: the image's SHA256 on disk is checked again (a
missing or changed image is downloaded again), then verification and install go on. Killed while the
install hook ran: InstallationFailed (hooks are not required to be idempotent). A final status the
CSMS did not acknowledge is sent again; after that the job is gone.

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
import time
from collections.abc import Generator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from charger.actors.ocpp_base import LINK_UNAVAILABLE
from charger.actors.ocpp_firmware_store import FirmwareStore
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
_ONLINE_POLL_S = 0.5
_NOTIFY_WAIT_S = 60.0
"""How long a status notification waits for the link to be connected and accepted (after a restart)."""
_PLAN = [
    FirmwareStatus.IDLE,
    FirmwareStatus.DOWNLOAD_SCHEDULED,
    FirmwareStatus.DOWNLOADING,
    FirmwareStatus.DOWNLOADED,
    FirmwareStatus.SIGNATURE_VERIFIED,
    FirmwareStatus.INSTALL_SCHEDULED,
    FirmwareStatus.INSTALLING,
]
"""The order of the statuses before a final one."""
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
    notified: bool = True
    """The CSMS acknowledged `status` (or there was nothing to send)."""
    installing: bool = False
    attempts_started: int = 0
    sha256: str | None = None
    """The downloaded image's, once it is downloaded."""


class FirmwareJobs:
    """The firmware job of one backend link (at most one at a time), stored in ``<link>-firmware.db``."""

    def __init__(self, link: BackendLink) -> None:
        self.hook: InstallHook = load_install_hook(link.config["firmware"]["install_hook"])
        self.directory = Path(link.state_dir) / "firmware" / "downloads"
        self.store = FirmwareStore(Path(link.state_dir) / f"{link.name}-firmware.db")
        self.current: FirmwareJob | None = None

    def close(self) -> None:
        self.store.close()

    def replace(self, request: FirmwareRequest) -> FirmwareJob:
        self.current = FirmwareJob(request, self.store.begin(request))
        return self.current

    def is_current(self, job: FirmwareJob) -> bool:
        return self.current is job

    def image(self, job: FirmwareJob) -> Path:
        return self.directory / f"image-{job.generation}.bin"

    def resume(self, link: BackendLink) -> None:
        """After a (re)start: go on with the stored job, if there is one; drop images of no job."""
        stored = self.store.current()
        if stored is not None:
            job = FirmwareJob(
                stored.request,
                stored.generation,
                status=stored.status,
                notified=stored.notified,
                installing=stored.status is FirmwareStatus.INSTALLING,
                attempts_started=stored.attempts_started,
                sha256=stored.sha256,
            )
            if stored.status not in _FINAL:  # a final one only has its notification left to send
                self.current = job
            link.log.info("firmware update resumed at %s", stored.status.value)
            link.run_task(_run(link, job))
        keep = None if stored is None else f"image-{stored.generation}.bin"
        for leftover in self.directory.glob("image-*.bin") if self.directory.exists() else ():
            if leftover.name != keep:
                with contextlib.suppress(OSError):
                    leftover.unlink()


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


def _rank(status: FirmwareStatus) -> int:
    return len(_PLAN) if status in _FINAL else _PLAN.index(status)


def _notify(link: BackendLink, job: FirmwareJob, status: FirmwareStatus) -> Generator[Pending, Any, None]:
    """Reach `status`: stored first, then told to the CSMS. A status the job had reached (and told)
    before a restart is not sent again."""
    jobs: FirmwareJobs = link.firmware
    if not jobs.is_current(job):
        return  # replaced by a newer request, which does the reporting
    if _rank(status) < _rank(job.status) or (status is job.status and job.notified):
        return
    job.status, job.notified = status, False
    jobs.store.reached(job.generation, status)
    if status in _FINAL:
        jobs.current = None  # done before the CSMS hears it: its next request finds the station free
    link.log.info("firmware update: %s", status.value)
    yield from _tell(link, jobs, job)


def _tell(link: BackendLink, jobs: FirmwareJobs, job: FirmwareJob) -> Generator[Pending, Any, None]:
    """Send the job's status; once the CSMS answered, the store knows it was told. A final status that
    was told ends the stored job; one that was not is sent again after a restart."""
    call = firmware_notification(job.request.request_id, job.status)
    if call is not None:
        deadline = time.monotonic() + _NOTIFY_WAIT_S
        while not link.accepted and time.monotonic() < deadline:  # e.g. just restarted: not booted yet
            yield link.sleep(_ONLINE_POLL_S)
        try:
            yield link.call_csms(*call)
        except (*LINK_UNAVAILABLE, CsmsError) as exc:
            link.log.info("%s %s not delivered: %s", call[0], job.status.value, exc)
            return
    job.notified = True
    if job.status in _FINAL:
        jobs.store.finish(job.generation)
    else:
        jobs.store.notified(job.generation, job.status)


def _seconds_until(moment: datetime | None) -> float:
    return 0.0 if moment is None else (moment - datetime.now(UTC)).total_seconds()


def _run(link: BackendLink, job: FirmwareJob) -> Generator[Pending, Any, None]:
    jobs: FirmwareJobs = link.firmware
    try:
        yield from _resume(link, jobs, job)
    except GeneratorExit:
        raise  # the link is stopping: the stored job goes on after the restart
    except BaseException:
        if jobs.is_current(job):  # a job that crashes the link must not be resumed again and again
            jobs.current = None
            jobs.store.finish(job.generation)
        raise
    finally:
        if not jobs.is_current(job):
            with contextlib.suppress(OSError):
                jobs.image(job).unlink()


def _resume(link: BackendLink, jobs: FirmwareJobs, job: FirmwareJob) -> Generator[Pending, Any, None]:
    """The job from the phase it reached: a fresh one from the start, a restored one where it stopped."""
    if not job.notified and job.status is not FirmwareStatus.INSTALLING:  # Installing: its end follows at once
        yield from _tell(link, jobs, job)  # reached, but the restart may have come before the CSMS heard it
    if job.status in _FINAL:
        return
    if job.status is FirmwareStatus.INSTALLING:
        # The hook may have been cut off half-way; it is not required to be idempotent, so the
        # installation is reported failed and the CSMS decides whether to ask again.
        link.log.error("the link restarted while firmware was being installed")
        yield from _notify(link, job, FirmwareStatus.INSTALLATION_FAILED)
        return
    image, request = jobs.image(job), job.request
    ready, problem = yield from _image(link, jobs, job, image)
    if not ready:
        return
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
    if jobs.is_current(job) and job.sha256 is not None:
        yield from _install(link, jobs, job, image, job.sha256)


def _image(
    link: BackendLink, jobs: FirmwareJobs, job: FirmwareJob, image: Path
) -> Generator[Pending, Any, tuple[bool, str | None]]:
    """The image on disk: the one downloaded before a restart if its SHA256 still holds, or a new
    download (after retrieveDate). Whether there is one for this job, and its signature problem."""
    request, problem = job.request, None
    if job.sha256 is not None:
        sha256, problem = yield link.run_io(_inspect, image, request)
        if sha256 == job.sha256:
            return True, problem
        link.log.warning("the downloaded firmware image is missing or changed: downloading it again")
        job.sha256, job.status, job.notified = None, FirmwareStatus.IDLE, True
        jobs.store.downloaded(job.generation, None, None)
    wait = _seconds_until(request.retrieve_at)
    if wait > 0:
        if request.signed:
            yield from _notify(link, job, FirmwareStatus.DOWNLOAD_SCHEDULED)
        yield link.sleep(wait)
    if not jobs.is_current(job) or not (yield from _download(link, jobs, job, image)) or not jobs.is_current(job):
        return False, None
    job.sha256, problem = yield link.run_io(_inspect, image, request)
    jobs.store.downloaded(job.generation, str(image), job.sha256)
    yield from _notify(link, job, FirmwareStatus.DOWNLOADED)
    return True, problem


def _download(link: BackendLink, jobs: FirmwareJobs, job: FirmwareJob, image: Path) -> Generator[Pending, Any, bool]:
    """Downloading, with the request's retries (an attempt cut off by a restart counts); False once it
    failed (DownloadFailed) or was replaced."""
    request, settings = job.request, link.config["firmware"]
    yield from _notify(link, job, FirmwareStatus.DOWNLOADING)
    ca_file = state_path(link, settings["transfer_ca_file"])
    for attempt in range(job.attempts_started + 1, request.attempts + 1):
        if attempt > job.attempts_started + 1:
            yield link.sleep(request.retry_interval_s)
            if not jobs.is_current(job):
                return False
        job.attempts_started = attempt
        jobs.store.attempt_started(job.generation, attempt)
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
            continue
        link.log.info("firmware downloaded from %s (%d bytes)", safe_url(request.location), size)
        return True
    if jobs.is_current(job):
        yield from _notify(link, job, FirmwareStatus.DOWNLOAD_FAILED)
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


def _inspect(image: Path, request: FirmwareRequest) -> tuple[str | None, str | None]:
    """I/O thread: the image's SHA256 (None: there is no image), and why its signature does not hold
    (None: it holds, or unsigned)."""
    try:
        data = image.read_bytes()
    except FileNotFoundError:
        return None, None
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
