"""Firmware updates through the whole station: UpdateFirmware and SignedUpdateFirmware from a real local HTTP
server, with their status notifications, retries, failures, signature checks, the install waiting for a
transaction, and the SIL install hook's record. Against both CSMS peers where the flow is the same.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from charger.hal.firmware import FirmwareImage, InstallOutcome

from tests.actors.test_backend_link_harness import Station, eventually, station
from tests.support.certs import FirmwareSigning, make_firmware_signing
from tests.support.csms import PEER_KINDS
from tests.support.fake_evse import FakePlugIn
from tests.support.http_files import FileServer

IMAGE = b"\x7fELF charger firmware 2.0\n" * 512
FW_PATH = "/fw/charger-2.0.bin"


@pytest.fixture
def files() -> Iterator[FileServer]:
    with FileServer() as server:
        server.files[FW_PATH] = IMAGE
        yield server


def _now(offset_s: float = 0.0) -> str:
    return (datetime.now(UTC) + timedelta(seconds=offset_s)).isoformat().replace("+00:00", "Z")


def accepted(st: Station) -> Station:
    eventually(lambda: st.link().registration == "Accepted" and st.link().online, "the boot")
    return st


def statuses(st: Station, action: str, after: int) -> list[str]:
    return [f.payload["status"] for f in st.calls(action, after)]


def wait_status(st: Station, action: str, after: int, *final: str, timeout: float = 40.0) -> list[str]:
    """The statuses of `action` since `after`, once one of `final` was sent."""
    st.wait_call(action, after, where=lambda f: f.payload["status"] in final, timeout=timeout)
    return statuses(st, action, after)


def installed(st: Station) -> list[dict[str, Any]]:
    history = st.state / "firmware" / "installed" / "history.jsonl"
    return [json.loads(line) for line in history.read_text().splitlines()] if history.exists() else []


def security_events(st: Station, after: int = 0) -> list[str]:
    return [f.payload["type"] for f in st.calls("SecurityEventNotification", after)]


@pytest.mark.parametrize("peer", PEER_KINDS)
def test_update_firmware_downloads_installs_and_reports(tmp_path: Path, peer: str, files: FileServer) -> None:
    with station(tmp_path, peer, light=True) as st:
        accepted(st)
        after = st.csms.next_seq()
        answer = st.call_action("UpdateFirmware", {"location": files.url(FW_PATH), "retrieveDate": _now()})
        assert answer.ok and answer.payload == {}
        sequence = wait_status(st, "FirmwareStatusNotification", after, "Installed", "InstallationFailed")
        assert sequence == ["Downloading", "Downloaded", "Installing", "Installed"]
        [record] = installed(st)
        assert record["sha256"] == hashlib.sha256(IMAGE).hexdigest() and record["signed"] is False
        st.wait_call("SecurityEventNotification", after, where=lambda f: f.payload["type"] == "FirmwareUpdated")
        after = st.csms.next_seq()
        assert st.call_action("TriggerMessage", {"requestedMessage": "FirmwareStatusNotification"}).ok
        assert st.wait_call("FirmwareStatusNotification", after).payload == {"status": "Idle"}
        assert st.csms.invalid_inbound() == []
        assert not list((st.state / "firmware" / "downloads").glob("*"))  # the download is cleaned up


def test_download_retries_then_fails_and_a_404_fails(tmp_path: Path, files: FileServer) -> None:
    with station(tmp_path, light=True) as st:
        accepted(st)
        files.fail_next(FW_PATH, times=2)  # the first two tries get HTTP 500, the third the image
        after = st.csms.next_seq()
        request = {"location": files.url(FW_PATH), "retrieveDate": _now(), "retries": 2, "retryInterval": 1}
        assert st.call_action("UpdateFirmware", request).ok
        assert wait_status(st, "FirmwareStatusNotification", after, "Installed", "DownloadFailed") == [
            "Downloading",
            "Downloaded",
            "Installing",
            "Installed",
        ]
        assert files.hits("GET", FW_PATH) == 3
        files.fail_next(FW_PATH, times=10)
        after = st.csms.next_seq()
        request = {"location": files.url(FW_PATH), "retrieveDate": _now(), "retries": 1, "retryInterval": 1}
        assert st.call_action("UpdateFirmware", request).ok
        sequence = wait_status(st, "FirmwareStatusNotification", after, "Installed", "DownloadFailed")
        assert sequence == ["Downloading", "DownloadFailed"]
        assert files.hits("GET", FW_PATH) == 5  # 1 + retries more
        after = st.csms.next_seq()
        missing = {"location": files.url("/fw/nothing.bin"), "retrieveDate": _now(), "retries": 0}
        assert st.call_action("UpdateFirmware", missing).ok
        assert wait_status(st, "FirmwareStatusNotification", after, "DownloadFailed") == [
            "Downloading",
            "DownloadFailed",
        ]
        assert len(installed(st)) == 1
        assert "HTTP 404" in (tmp_path / "system.log").read_text()


def test_unsupported_locations_are_refused_clearly(tmp_path: Path) -> None:
    pki = make_firmware_signing()
    with station(tmp_path, light=True) as st:
        accepted(st)
        ftp = "ftp://maker:hunter2@files.example.com/fw.bin"
        refused = st.call_action("UpdateFirmware", {"location": ftp, "retrieveDate": _now()})
        assert (refused.ok, refused.error_code) == (False, "PropertyConstraintViolation")
        assert refused.error_description == "the location's scheme 'ftp' is not supported (only http, https)"
        diagnostics = st.call_action("GetDiagnostics", {"location": "ftp://files.example.com/up/"})
        assert (diagnostics.ok, diagnostics.error_code) == (False, "PropertyConstraintViolation")
        log = {"logType": "DiagnosticsLog", "requestId": 1, "log": {"remoteLocation": "sftp://h/up/"}}
        assert st.call_action("GetLog", log).payload == {"status": "Rejected"}
        signed = _signed_request(pki, "file:///etc/passwd", IMAGE, request_id=2)
        assert st.call_action("SignedUpdateFirmware", signed).payload == {"status": "Rejected"}
        assert st.calls("FirmwareStatusNotification") == []
        assert "hunter2" not in (tmp_path / "system.log").read_text()


def test_installing_waits_until_no_transaction_runs(tmp_path: Path, files: FileServer) -> None:
    with station(tmp_path, light=True) as st:
        accepted(st)
        st.system.client.call("evse-1", FakePlugIn())
        assert st.call_action("RemoteStartTransaction", {"idTag": "REMOTE1", "connectorId": 1}).ok
        start = st.wait_call("StartTransaction")
        after = start.seq
        assert st.call_action("UpdateFirmware", {"location": files.url(FW_PATH), "retrieveDate": _now()}).ok
        assert wait_status(st, "FirmwareStatusNotification", after, "Downloaded") == ["Downloading", "Downloaded"]
        time.sleep(3.0)  # a transaction runs: nothing is installed meanwhile
        assert statuses(st, "FirmwareStatusNotification", after) == ["Downloading", "Downloaded"]
        assert installed(st) == []
        transaction_id = _transaction_id(st)
        assert st.call_action("RemoteStopTransaction", {"transactionId": transaction_id}).payload == {
            "status": "Accepted"
        }
        sequence = wait_status(st, "FirmwareStatusNotification", after, "Installed", "InstallationFailed")
        assert sequence == ["Downloading", "Downloaded", "Installing", "Installed"]
        assert len(installed(st)) == 1


def _transaction_id(st: Station) -> int:
    results = [f for f in st.csms.frames() if f.direction.value == "tx" and f.action == "StartTransaction"]
    results = [f for f in results if f.message_type == 3]
    transaction_id: int = results[-1].payload["transactionId"]
    return transaction_id


# --- signed firmware -----------------------------------------------------------------------------------


def _signed_request(
    pki: FirmwareSigning,
    location: str,
    image: bytes,
    *,
    request_id: int,
    rogue: bool = False,
    signed: bytes | None = None,
    retrieve_in_s: float = 0.0,
) -> dict[str, Any]:
    return {
        "requestId": request_id,
        "retries": 0,
        "firmware": {
            "location": location,
            "retrieveDateTime": _now(retrieve_in_s),
            "signingCertificate": pki.rogue_signing_pem if rogue else pki.signing_pem,
            "signature": pki.sign(image if signed is None else signed, rogue=rogue),
        },
    }


@pytest.mark.parametrize("peer", PEER_KINDS)
def test_signed_firmware_is_verified_before_it_is_installed(tmp_path: Path, peer: str, files: FileServer) -> None:
    pki = make_firmware_signing()
    (tmp_path / "maker-ca.pem").write_text(pki.root_pem)
    firmware = {"signing_ca_file": str(tmp_path / "maker-ca.pem")}
    with station(tmp_path, peer, light=True, firmware=firmware) as st:
        accepted(st)
        action = "SignedFirmwareStatusNotification"
        after = st.csms.next_seq()
        good = _signed_request(pki, files.url(FW_PATH), IMAGE, request_id=11)
        assert st.call_action("SignedUpdateFirmware", good).payload == {"status": "Accepted"}
        sequence = wait_status(st, action, after, "Installed", "InstallationFailed", "InvalidSignature")
        assert sequence == ["Downloading", "Downloaded", "SignatureVerified", "Installing", "Installed"]
        assert {f.payload["requestId"] for f in st.calls(action, after)} == {11}
        assert [r["signed"] for r in installed(st)] == [True]

        after = st.csms.next_seq()
        forged = _signed_request(pki, files.url(FW_PATH), IMAGE, request_id=12, signed=IMAGE + b"tampered")
        assert st.call_action("SignedUpdateFirmware", forged).payload == {"status": "Accepted"}
        sequence = wait_status(st, action, after, "Installed", "InvalidSignature")
        assert sequence == ["Downloading", "Downloaded", "InvalidSignature"]
        st.wait_call(
            "SecurityEventNotification", after, where=lambda f: f.payload["type"] == "InvalidFirmwareSignature"
        )
        assert len(installed(st)) == 1  # nothing more was installed

        after = st.csms.next_seq()
        rogue = _signed_request(pki, files.url(FW_PATH), IMAGE, request_id=13, rogue=True)
        assert st.call_action("SignedUpdateFirmware", rogue).payload == {"status": "InvalidCertificate"}
        st.wait_call(
            "SecurityEventNotification", after, where=lambda f: f.payload["type"] == "InvalidFirmwareSigningCertificate"
        )
        assert files.hits("GET", FW_PATH) == 2  # the rogue request downloaded nothing
        assert st.calls(action, after) == []
        assert st.csms.invalid_inbound() == []


def test_an_installed_manufacturer_root_is_trusted_for_signed_firmware(tmp_path: Path, files: FileServer) -> None:
    pki = make_firmware_signing()
    with station(tmp_path, light=True) as st:
        accepted(st)
        request = _signed_request(pki, files.url(FW_PATH), IMAGE, request_id=21)
        assert st.call_action("SignedUpdateFirmware", request).payload == {"status": "InvalidCertificate"}
        install = {"certificateType": "ManufacturerRootCertificate", "certificate": pki.root_pem}
        assert st.call_action("InstallCertificate", install).payload == {"status": "Accepted"}
        after = st.csms.next_seq()
        request = _signed_request(pki, files.url(FW_PATH), IMAGE, request_id=22)
        assert st.call_action("SignedUpdateFirmware", request).payload == {"status": "Accepted"}
        wait_status(st, "SignedFirmwareStatusNotification", after, "Installed")
        assert [r["signed"] for r in installed(st)] == [True]


def test_a_newer_signed_request_cancels_a_scheduled_one(tmp_path: Path, files: FileServer) -> None:
    pki = make_firmware_signing()
    (tmp_path / "maker-ca.pem").write_text(pki.root_pem)
    with station(tmp_path, light=True, firmware={"signing_ca_file": str(tmp_path / "maker-ca.pem")}) as st:
        accepted(st)
        action = "SignedFirmwareStatusNotification"
        after = st.csms.next_seq()
        later = _signed_request(pki, files.url(FW_PATH), IMAGE, request_id=31, retrieve_in_s=4.0)
        assert st.call_action("SignedUpdateFirmware", later).payload == {"status": "Accepted"}
        assert st.wait_call(action, after).payload == {"status": "DownloadScheduled", "requestId": 31}
        now = _signed_request(pki, files.url(FW_PATH), IMAGE, request_id=32)
        assert st.call_action("SignedUpdateFirmware", now).payload == {"status": "AcceptedCanceled"}
        wait_status(st, action, after, "Installed")
        time.sleep(5.0)  # past the first request's retrieveDateTime: it stays cancelled
        reported = [(f.payload["requestId"], f.payload["status"]) for f in st.calls(action, after)]
        assert reported == [
            (31, "DownloadScheduled"),
            (32, "Downloading"),
            (32, "Downloaded"),
            (32, "SignatureVerified"),
            (32, "Installing"),
            (32, "Installed"),
        ]
        assert files.hits("GET", FW_PATH) == 1 and len(installed(st)) == 1


def broken_flash(image: FirmwareImage) -> InstallOutcome:
    """A charger maker's install hook whose flash tool crashes (loaded by the backend link's process)."""
    raise OSError(f"flash tool crashed on {image.path.name}")


def test_a_failing_install_is_installation_failed(tmp_path: Path, files: FileServer) -> None:
    files.files["/fw/empty.bin"] = b""
    with station(tmp_path, light=True) as st:
        accepted(st)
        after = st.csms.next_seq()
        assert st.call_action("UpdateFirmware", {"location": files.url("/fw/empty.bin"), "retrieveDate": _now()}).ok
        sequence = wait_status(st, "FirmwareStatusNotification", after, "Installed", "InstallationFailed")
        assert sequence == ["Downloading", "Downloaded", "Installing", "InstallationFailed"]  # the SIL hook refuses
        assert installed(st) == [] and "FirmwareUpdated" not in security_events(st)
    assert "the image is empty" in (tmp_path / "system.log").read_text()


def test_a_crashing_install_hook_is_installation_failed(tmp_path: Path, files: FileServer) -> None:
    with station(tmp_path, light=True, firmware={"install_hook": f"{__name__}:broken_flash"}) as st:
        accepted(st)
        after = st.csms.next_seq()
        assert st.call_action("UpdateFirmware", {"location": files.url(FW_PATH), "retrieveDate": _now()}).ok
        sequence = wait_status(st, "FirmwareStatusNotification", after, "Installed", "InstallationFailed")
        assert sequence == ["Downloading", "Downloaded", "Installing", "InstallationFailed"]
        assert st.link().online  # the link carries on
    assert "flash tool crashed" in (tmp_path / "system.log").read_text()
