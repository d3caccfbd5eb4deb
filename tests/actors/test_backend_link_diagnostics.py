"""Diagnostics and logs through the whole station: GetDiagnostics and GetLog upload to a real local HTTP
server, with their status notifications; an archive holds the logs and a state summary and never a
secret; a refused upload is retried, then reported failed.
"""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.actors.test_backend_link_firmware import accepted, wait_status
from tests.actors.test_backend_link_harness import eventually, station
from tests.support.csms import PEER_KINDS
from tests.support.http_files import FileServer

AUTH_KEY_HEX = "30313233343536373839616263646566"


@pytest.fixture
def files() -> Iterator[FileServer]:
    with FileServer() as server:
        yield server


def _in(seconds: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")


def _members(archive: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}  # type: ignore[union-attr]


@pytest.mark.parametrize("peer", PEER_KINDS)
def test_get_diagnostics_uploads_logs_and_a_summary_without_secrets(
    tmp_path: Path, peer: str, files: FileServer
) -> None:
    firmware = {"log_files": [str(tmp_path / "system.log"), "no-such.log"]}
    with station(tmp_path, peer, light=True, firmware=firmware, authorization_key=AUTH_KEY_HEX) as st:
        accepted(st)
        after = st.csms.next_seq()
        answer = st.call_action("GetDiagnostics", {"location": files.url("/uploads/"), "retries": 0})
        name = answer.payload["fileName"]
        assert name.startswith("diagnostics-CP1-") and name.endswith(".tar.gz")
        statuses = wait_status(st, "DiagnosticsStatusNotification", after, "Uploaded", "UploadFailed")
        assert statuses == ["Uploading", "Uploaded"]
        archive = files.uploads[f"/uploads/{name}"]
        members = _members(archive)
        assert set(members) == {"summary.json", "logs/system.log"}
        summary = json.loads(members["summary.json"])
        assert summary["charge_point_id"] == "CP1" and summary["registration"] == "Accepted"
        keys = {kv["key"] for kv in summary["configuration"]["configurationKey"]}
        assert "HeartbeatInterval" in keys and "AuthorizationKey" not in keys
        assert b"BootNotification: Accepted" in members["logs/system.log"]
        for blob in members.values():
            assert AUTH_KEY_HEX.encode() not in blob and b"0123456789abcdef" not in blob
        after = st.csms.next_seq()
        future = {"location": files.url("/uploads/"), "retries": 0, "startTime": _in(3600), "stopTime": _in(7200)}
        name = st.call_action("GetDiagnostics", future).payload["fileName"]
        wait_status(st, "DiagnosticsStatusNotification", after, "Uploaded")
        assert _members(files.uploads[f"/uploads/{name}"])["logs/system.log"] == b""  # nothing logged then
        after = st.csms.next_seq()
        assert st.call_action("TriggerMessage", {"requestedMessage": "DiagnosticsStatusNotification"}).ok
        assert st.wait_call("DiagnosticsStatusNotification", after).payload == {"status": "Idle"}
        assert st.csms.invalid_inbound() == []
        assert not list((st.state / "diagnostics").glob("*"))  # the archive is cleaned up


def test_a_refused_upload_is_retried_then_reported_failed(tmp_path: Path, files: FileServer) -> None:
    with station(tmp_path, light=True) as st:
        accepted(st)
        files.refuse_uploads = True
        after = st.csms.next_seq()
        answer = st.call_action("GetDiagnostics", {"location": files.url("/up/"), "retries": 1, "retryInterval": 1})
        name = answer.payload["fileName"]
        assert wait_status(st, "DiagnosticsStatusNotification", after, "Uploaded", "UploadFailed") == [
            "Uploading",
            "UploadFailed",
        ]
        assert files.hits("PUT", f"/up/{name}") == 2
        files.refuse_uploads = False
        after = st.csms.next_seq()
        nobody = {
            "logType": "DiagnosticsLog",
            "requestId": 5,
            "retries": 0,
            "log": {"remoteLocation": "http://127.0.0.1:1/x/"},
        }
        assert st.call_action("GetLog", nobody).payload["status"] == "Accepted"  # port 1: connection refused
        failed = wait_status(st, "LogStatusNotification", after, "Uploaded", "UploadFailure")
        assert failed == ["Uploading", "UploadFailure"]


@pytest.mark.parametrize("peer", PEER_KINDS)
def test_get_log_uploads_the_security_log(tmp_path: Path, peer: str, files: FileServer) -> None:
    with station(tmp_path, peer, light=True) as st:
        accepted(st)
        eventually(lambda: st.calls("SecurityEventNotification"), "the startup event")
        after = st.csms.next_seq()
        request = {"logType": "SecurityLog", "requestId": 42, "log": {"remoteLocation": files.url("/logs/")}}
        answer = st.call_action("GetLog", request)
        assert answer.payload["status"] == "Accepted"
        name = answer.payload["filename"]
        assert name.startswith("security-log-CP1-") and name.endswith(".txt")
        assert wait_status(st, "LogStatusNotification", after, "Uploaded", "UploadFailure") == ["Uploading", "Uploaded"]
        assert {f.payload["requestId"] for f in st.calls("LogStatusNotification", after)} == {42}
        lines = files.uploads[f"/logs/{name}"].decode().splitlines()
        assert len(lines) == 1 and lines[0].endswith(" StartupOfTheDevice")
        after = st.csms.next_seq()
        assert st.call_action("ExtendedTriggerMessage", {"requestedMessage": "LogStatusNotification"}).ok
        assert st.wait_call("LogStatusNotification", after).payload == {"status": "Idle"}
        diagnostics = {"logType": "DiagnosticsLog", "requestId": 43, "log": {"remoteLocation": files.url("/logs/")}}
        after = st.csms.next_seq()
        answer = st.call_action("GetLog", diagnostics)
        assert answer.payload["filename"].endswith(".tar.gz")
        wait_status(st, "LogStatusNotification", after, "Uploaded")
        assert "summary.json" in _members(files.uploads[f"/logs/{answer.payload['filename']}"])
        assert st.csms.invalid_inbound() == []
