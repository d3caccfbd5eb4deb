"""A firmware job outlives a SIGKILL of the backend link: a download cut off half-way is done again
(counting the attempt), a job waiting for its retrieveDate still waits for it, and the CSMS hears each
status once, in order, ending with one final status."""

from __future__ import annotations

import time
from pathlib import Path

from charger.actors.ocpp_firmware_store import FirmwareStore, StoredFirmwareJob
from charger.hal.firmware import FirmwareImage, InstallOutcome
from charger.protocols.ocpp_firmware import parse_wire_time

from tests.actors.test_backend_link_firmware import (
    FW_PATH,
    IMAGE,
    _now,
    _signed_request,
    accepted,
    files,
    installed,
    statuses,
    wait_status,
)
from tests.actors.test_backend_link_harness import eventually, station
from tests.support.certs import make_firmware_signing
from tests.support.http_files import FileServer

__all__ = ["files"]  # the fixture, shared with the firmware tests


def _stored_job(state: Path) -> StoredFirmwareJob | None:
    store = FirmwareStore(state / "backend-firmware.db")
    try:
        return store.current()
    finally:
        store.close()


def _told(state: Path, status: str) -> None:
    """Wait until the link knows the CSMS acknowledged `status` (a kill before that resends it)."""

    def check() -> bool:
        job = _stored_job(state)
        return job is not None and job.status.value == status and job.notified

    eventually(check, f"{status} acknowledged")


def _no_job_left(state: Path) -> None:
    """Once the CSMS answered the final status, the stored job and its image are gone."""
    eventually(lambda: _stored_job(state) is None, "the finished job dropped from the store")
    assert not list((state / "firmware" / "downloads").glob("*"))


def test_a_download_cut_off_by_a_sigkill_is_done_again_and_reported_once(tmp_path: Path, files: FileServer) -> None:
    with station(tmp_path, light=True) as st:
        accepted(st)
        files.delay_next(FW_PATH, 10.0)  # the first GET hangs: the link is killed while it waits
        after = st.csms.next_seq()
        request = {"location": files.url(FW_PATH), "retrieveDate": _now(), "retries": 1, "retryInterval": 1}
        assert st.call_action("UpdateFirmware", request).ok
        eventually(lambda: files.hits("GET", FW_PATH) == 1, "the download under way")
        assert statuses(st, "FirmwareStatusNotification", after) == ["Downloading"]
        st.kill_backend()
        final = ("Installed", "InstallationFailed", "DownloadFailed")
        sequence = wait_status(st, "FirmwareStatusNotification", after, *final, timeout=90)
        assert sequence == ["Downloading", "Downloaded", "Installing", "Installed"]
        assert files.hits("GET", FW_PATH) == 2  # the cut-off attempt counted: 1 + retries
        assert len(installed(st)) == 1
        time.sleep(2.0)  # nothing more arrives later
        assert statuses(st, "FirmwareStatusNotification", after) == sequence
        _no_job_left(st.state)
        assert st.csms.invalid_inbound() == []


def test_a_cut_off_last_attempt_is_download_failed(tmp_path: Path, files: FileServer) -> None:
    with station(tmp_path, light=True) as st:
        accepted(st)
        files.delay_next(FW_PATH, 10.0)
        after = st.csms.next_seq()
        request = {"location": files.url(FW_PATH), "retrieveDate": _now(), "retries": 0}
        assert st.call_action("UpdateFirmware", request).ok
        eventually(lambda: files.hits("GET", FW_PATH) == 1, "the download under way")
        st.kill_backend()
        sequence = wait_status(st, "FirmwareStatusNotification", after, "Installed", "DownloadFailed", timeout=90)
        assert sequence == ["Downloading", "DownloadFailed"]
        assert files.hits("GET", FW_PATH) == 1 and installed(st) == []
        _no_job_left(st.state)


def test_a_signed_job_waiting_for_its_retrieve_date_survives_a_sigkill(tmp_path: Path, files: FileServer) -> None:
    pki = make_firmware_signing()
    (tmp_path / "maker-ca.pem").write_text(pki.root_pem)
    with station(tmp_path, light=True, firmware={"signing_ca_file": str(tmp_path / "maker-ca.pem")}) as st:
        accepted(st)
        action = "SignedFirmwareStatusNotification"
        after = st.csms.next_seq()
        request = _signed_request(pki, files.url(FW_PATH), IMAGE, request_id=41, retrieve_in_s=8.0)
        retrieve_at = parse_wire_time(request["firmware"]["retrieveDateTime"]).timestamp()
        assert st.call_action("SignedUpdateFirmware", request).payload == {"status": "Accepted"}
        assert st.wait_call(action, after).payload == {"status": "DownloadScheduled", "requestId": 41}
        _told(st.state, "DownloadScheduled")
        st.kill_backend()
        sequence = wait_status(st, action, after, "Installed", "InstallationFailed", "InvalidSignature", timeout=90)
        assert sequence == [
            "DownloadScheduled",
            "Downloading",
            "Downloaded",
            "SignatureVerified",
            "Installing",
            "Installed",
        ]
        assert {f.payload["requestId"] for f in st.calls(action, after)} == {41}
        [(_, _, fetched_at)] = [a for a in files.arrivals if a[:2] == ("GET", FW_PATH)]
        assert fetched_at >= retrieve_at - 0.5  # not before retrieveDateTime, restart or not
        assert [r["signed"] for r in installed(st)] == [True]
        _no_job_left(st.state)


def slow_flash(image: FirmwareImage) -> InstallOutcome:
    """An install hook that takes long enough for the link to be killed while it runs."""
    time.sleep(30.0)
    return InstallOutcome(True, f"flashed {image.path.name}")


def test_a_link_killed_while_installing_reports_installation_failed(tmp_path: Path, files: FileServer) -> None:
    with station(tmp_path, light=True, firmware={"install_hook": f"{__name__}:slow_flash"}) as st:
        accepted(st)
        after = st.csms.next_seq()
        assert st.call_action("UpdateFirmware", {"location": files.url(FW_PATH), "retrieveDate": _now()}).ok
        wait_status(st, "FirmwareStatusNotification", after, "Installing")
        st.kill_backend()
        final = ("Installed", "InstallationFailed")
        sequence = wait_status(st, "FirmwareStatusNotification", after, *final, timeout=90)
        assert sequence == ["Downloading", "Downloaded", "Installing", "InstallationFailed"]
        assert files.hits("GET", FW_PATH) == 1
        _no_job_left(st.state)
