"""Diagnostics and logs on the backend link: GetDiagnostics (OCPP 1.6 §5.8) and GetLog (Security Whitepaper
N01), uploaded over HTTP(S) with a PUT (`charger.hal.http_transfer`), and the status notifications a
TriggerMessage or ExtendedTriggerMessage asks for.

- A diagnostics archive (GetDiagnostics, or GetLog with DiagnosticsLog) is a ``.tar.gz`` of the
  configured log files (``firmware.log_files``; only their lines between startTime and stopTime, or
  oldestTimestamp and latestTimestamp, when the request gives either) and ``summary.json``: the link's state
  (registration, queue, connector states, configuration as GetConfiguration reports it, so without
  the write-only AuthorizationKey, installed certificate ids, the CSMS URL without credentials). It
  never contains the state databases or key files.
- A security log (GetLog with SecurityLog) is the security events between oldestTimestamp and
  latestTimestamp, one line each.

A location ending in ``/`` is a directory: the file goes to location + fileName; any other location
names the file. Only http and https: another scheme is a CALLERROR PropertyConstraintViolation for
GetDiagnostics (whose answer has no status) and Rejected for GetLog. One upload at a time: a GetLog
while another runs replaces it (AcceptedCanceled); a GetDiagnostics while one runs is answered
without a fileName (nothing to upload now). Progress goes out as DiagnosticsStatusNotification
(Uploading, Uploaded, UploadFailed) or LogStatusNotification with the requestId.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import tarfile
import tempfile
import time
import uuid
from collections.abc import Generator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from charger.actors.ocpp_base import LINK_UNAVAILABLE
from charger.actors.ocpp_firmware import state_path
from charger.actors.ocpp_link import CsmsAnswer, CsmsError
from charger.hal.http_transfer import TransferError, upload
from charger.protocols.ocpp_firmware import (
    LogRequest,
    log_lines_between,
    log_notification,
    safe_url,
    transfer_url_problem,
    upload_target,
)
from charger.protocols.ocpp_frames import ErrorCode
from charger.protocols.ocpp_meter import ocpp_time

from charger.behaviour import Pending

if TYPE_CHECKING:
    from charger.actors.backend_link import BackendLink

__all__ = ["DIAGNOSTICS_HANDLERS", "UploadJobs", "send_diagnostics_status", "send_log_status"]


@dataclass
class UploadJob:
    request: LogRequest
    file_name: str
    uploading: bool = False


class UploadJobs:
    """The upload of one backend link (at most one at a time)."""

    def __init__(self, link: BackendLink) -> None:
        self.directory = Path(link.state_dir) / "diagnostics"
        self.current: UploadJob | None = None


def _stamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")


def get_diagnostics(link: BackendLink, payload: dict[str, Any]) -> dict[str, Any] | CsmsAnswer:
    problem = transfer_url_problem(payload["location"])
    if problem is not None:
        link.log.warning("GetDiagnostics refused: %s", problem)
        return CsmsAnswer(error=ErrorCode.PROPERTY_CONSTRAINT_VIOLATION, description=problem)
    jobs: UploadJobs = link.uploads
    if jobs.current is not None:
        link.log.warning("GetDiagnostics: an upload is running; nothing to upload now")
        return {}
    name = f"diagnostics-{link.config['charge_point_id']}-{_stamp()}.tar.gz"
    job = jobs.current = UploadJob(LogRequest.from_get_diagnostics(payload), name)
    link.log.info("GetDiagnostics: %s to %s", name, safe_url(job.request.location))
    return CsmsAnswer(payload={"fileName": name}, after=lambda: _run(link, job))


def get_log(link: BackendLink, payload: dict[str, Any]) -> dict[str, Any] | CsmsAnswer:
    request = LogRequest.from_get_log(payload)
    problem = transfer_url_problem(request.location)
    if problem is not None:
        link.log.warning("GetLog %s rejected: %s", request.request_id, problem)
        return {"status": "Rejected"}
    jobs: UploadJobs = link.uploads
    status = "AcceptedCanceled" if jobs.current is not None else "Accepted"
    security = request.log_type == "SecurityLog"
    kind, extension = ("security-log", "txt") if security else ("diagnostics-log", "tar.gz")
    name = f"{kind}-{link.config['charge_point_id']}-{_stamp()}.{extension}"
    job = jobs.current = UploadJob(request, name)
    link.log.info("GetLog %s (%s): %s to %s", request.request_id, request.log_type, status, safe_url(request.location))
    return CsmsAnswer(payload={"status": status, "filename": name}, after=lambda: _run(link, job))


# --- the upload ----------------------------------------------------------------------------------------


def _notify(link: BackendLink, job: UploadJob, uploaded: bool | None) -> Generator[Pending, Any, None]:
    action, payload = log_notification(job.request.request_id, uploaded)
    if uploaded is not None and link.uploads.current is job:
        link.uploads.current = None  # done before the CSMS hears it: its next request finds the station free
    try:
        yield link.call_csms(action, payload)
    except (*LINK_UNAVAILABLE, CsmsError) as exc:
        link.log.info("%s %s not delivered: %s", action, payload["status"], exc)


def _run(link: BackendLink, job: UploadJob) -> Generator[Pending, Any, None]:
    jobs: UploadJobs = link.uploads
    path = jobs.directory / f"{uuid.uuid4().hex}-{job.file_name}"  # a replaced job's cleanup never hits its successor's
    try:
        yield from _build_and_upload(link, job, path)
    finally:
        with contextlib.suppress(OSError):
            path.unlink()
        if jobs.current is job:
            jobs.current = None


def _build_and_upload(link: BackendLink, job: UploadJob, path: Path) -> Generator[Pending, Any, None]:
    request, settings = job.request, link.config["firmware"]
    if request.log_type == "SecurityLog":
        events = link.security.store.events(request.oldest, request.latest)
        text = "".join(f"{ocpp_time(e.at)} {e.type}{' ' + e.tech_info if e.tech_info else ''}\n" for e in events)
        yield link.run_io(_write, path, text.encode())
    else:
        files = [p for name in settings["log_files"] if (p := state_path(link, name)) is not None]
        summary = json.dumps(_summary(link), indent=2, sort_keys=True).encode()
        yield link.run_io(_archive, path, files, summary, request.oldest, request.latest)
    if link.uploads.current is not job:
        return  # replaced by a newer GetLog
    job.uploading = True
    yield from _notify(link, job, None)
    target = upload_target(request.location, job.file_name)
    ca_file = state_path(link, settings["transfer_ca_file"])
    for attempt in range(1, request.attempts + 1):
        try:
            yield link.run_io(lambda: upload(target, path, timeout_s=settings["transfer_timeout_s"], ca_file=ca_file))
        except TransferError as exc:
            link.log.warning("upload %d of %d to %s failed: %s", attempt, request.attempts, safe_url(target), exc)
            if attempt < request.attempts:
                yield link.sleep(request.retry_interval_s)
                continue
            yield from _notify(link, job, False)
            return
        link.log.info("%s uploaded to %s", job.file_name, safe_url(target))
        yield from _notify(link, job, True)
        return


def _summary(link: BackendLink) -> dict[str, Any]:
    """The link's state for a diagnostics archive: nothing secret (see the module docstring)."""
    return {
        "generated_at": ocpp_time(time.time()),
        "charge_point_id": link.config["charge_point_id"],
        "csms_url": safe_url(link.config["csms_url"]),
        "security_profile": link.settings.security_profile,
        "registration": link.registration.value,
        "online": link.connection != 0,
        "queued_messages": len(link.store.queue),
        "discarded_messages": len(link.store.queue.discarded()),
        "connectors": {str(c): s.state for c, s in sorted(link.status.items())},
        "configuration": link.keys.get_configuration(None).to_wire(),
        "installed_certificates": [{"use": c.use, **c.hash_data.to_wire()} for c in link.security.store.certificates()],
        "security_events": len(link.security.store.events()),
    }


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _archive(path: Path, files: list[str], summary: bytes, oldest: datetime | None, latest: datetime | None) -> None:
    """I/O thread: the .tar.gz of the summary and the log files that exist (their lines between
    `oldest` and `latest` when either is given)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    local = datetime.now().astimezone().tzinfo or UTC  # the log's times are local, as `logging` writes them
    with tarfile.open(path, "w:gz") as archive:
        info = tarfile.TarInfo("summary.json")
        info.size, info.mtime = len(summary), int(time.time())
        archive.addfile(info, io.BytesIO(summary))
        for name in files:
            if not os.path.isfile(name):
                continue
            arcname = f"logs/{os.path.basename(name)}"
            if oldest is None and latest is None:
                archive.add(name, arcname=arcname, recursive=False)
                continue
            with tempfile.TemporaryFile() as cut, open(name, encoding="utf-8", errors="replace") as log:
                for line in log_lines_between(log, oldest, latest, local):
                    cut.write(line.encode())
                member = tarfile.TarInfo(arcname)
                member.size, member.mtime = cut.tell(), int(os.path.getmtime(name))
                cut.seek(0)
                archive.addfile(member, cut)


def _triggered(link: BackendLink, action: str, payload: dict[str, Any]) -> Generator[Pending, Any, None]:
    try:
        yield link.call_csms(action, payload, triggered=True)
    except (*LINK_UNAVAILABLE, CsmsError) as exc:
        link.log.info("triggered %s failed: %s", action, exc)


def send_diagnostics_status(link: BackendLink, connector: int | None) -> Generator[Pending, Any, None]:
    """TriggerMessage(DiagnosticsStatusNotification): Uploading while a GetDiagnostics uploads, else Idle."""
    job: UploadJob | None = link.uploads.current
    busy = job is not None and job.uploading and job.request.request_id is None
    yield from _triggered(link, "DiagnosticsStatusNotification", {"status": "Uploading" if busy else "Idle"})


def send_log_status(link: BackendLink, connector: int | None) -> Generator[Pending, Any, None]:
    """ExtendedTriggerMessage(LogStatusNotification): Uploading with the GetLog's requestId, else Idle."""
    job: UploadJob | None = link.uploads.current
    if job is not None and job.uploading and job.request.request_id is not None:
        payload: dict[str, Any] = {"status": "Uploading", "requestId": job.request.request_id}
    else:
        payload = {"status": "Idle"}
    yield from _triggered(link, "LogStatusNotification", payload)


DIAGNOSTICS_HANDLERS = {
    "GetDiagnostics": get_diagnostics,
    "GetLog": get_log,
}
