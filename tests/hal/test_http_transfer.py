"""HTTP(S) transfers against a real local server: download, upload, 404, refused connections, size limits,
credentials in the URL (sent as Basic auth, never in an error), and HTTPS verified against a test CA."""

from __future__ import annotations

import base64
import hashlib
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from charger.hal.firmware import FirmwareImage, load_install_hook, sil_install
from charger.hal.http_transfer import TransferError, download, upload

from tests.support.certs import make_tls_files
from tests.support.http_files import FileServer
from tests.support.resources import no_leaks


@pytest.fixture(autouse=True)
def _no_leaks() -> Iterator[None]:
    yield from no_leaks()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def test_download_and_upload(tmp_path: Path) -> None:
    with FileServer() as server:
        server.files["/fw.bin"] = b"image" * 1000
        target = tmp_path / "dl" / "fw.bin"
        assert download(server.url("/fw.bin"), target) == 5000
        assert target.read_bytes() == b"image" * 1000
        assert not list(target.parent.glob("*.part"))
        assert upload(server.url("/up/fw.bin"), target) == 201
        assert server.uploads["/up/fw.bin"] == b"image" * 1000


def test_failures_say_why(tmp_path: Path) -> None:
    target = tmp_path / "fw.bin"
    with FileServer() as server:
        server.files["/big"] = b"x" * 100
        with pytest.raises(TransferError, match="HTTP 404"):
            download(server.url("/missing"), target)
        server.fail_next("/big")
        with pytest.raises(TransferError, match="HTTP 500"):
            download(server.url("/big"), target)
        with pytest.raises(TransferError, match="too large"):
            download(server.url("/big"), target, max_bytes=10)
        assert not target.exists() and not list(tmp_path.glob("*.part"))
        server.refuse_uploads = True
        source = tmp_path / "source"
        source.write_bytes(b"log")
        with pytest.raises(TransferError, match="HTTP 403"):
            upload(server.url("/up/x"), source)
    with pytest.raises(TransferError, match="refused"):
        download(f"http://127.0.0.1:{_closed_port()}/fw.bin", target, timeout_s=5)


def test_credentials_in_the_url_become_basic_auth_and_stay_out_of_errors(tmp_path: Path) -> None:
    with FileServer() as server:
        server.files["/fw.bin"] = b"fw"
        url = f"http://maker:s3cr%40t@127.0.0.1:{server.port}/fw.bin"
        download(url, tmp_path / "fw.bin")
        headers = server.requests[-1][2]
        assert headers["Authorization"] == "Basic " + base64.b64encode(b"maker:s3cr@t").decode()
        with pytest.raises(TransferError) as caught:
            download(f"http://maker:s3cr%40t@127.0.0.1:{server.port}/nothing", tmp_path / "x")
        assert "s3cr" not in str(caught.value)


def test_https_is_verified_against_the_given_ca(tmp_path: Path) -> None:
    files = make_tls_files(tmp_path)
    with FileServer(tls=(files.server_cert, files.server_key)) as server:
        server.files["/fw.bin"] = b"secure image"
        assert download(server.url("/fw.bin"), tmp_path / "ok.bin", ca_file=str(files.ca_cert)) == 12
        with pytest.raises(TransferError, match="TLS: CERTIFICATE_VERIFY_FAILED"):
            download(server.url("/fw.bin"), tmp_path / "no.bin", ca_file=str(files.rogue_ca_cert))


def test_the_sil_install_hook_verifies_and_records(tmp_path: Path) -> None:
    hook = load_install_hook("charger.hal.firmware:sil_install")
    assert hook is sil_install
    image = tmp_path / "image.bin"
    image.write_bytes(b"firmware v2")
    digest = "3e0f5b2d0e8b3b1b"  # not the image's: the hook must notice
    refused = hook(FirmwareImage(path=image, location="http://h/fw", sha256=digest, signed=False, state_dir=tmp_path))
    assert not refused.installed and "changed" in refused.detail
    sha = hashlib.sha256(b"firmware v2").hexdigest()
    done = hook(FirmwareImage(path=image, location="http://h/fw", sha256=sha, signed=True, state_dir=tmp_path))
    assert done.installed and not done.reboot
    history = (tmp_path / "firmware" / "installed" / "history.jsonl").read_text().splitlines()
    assert len(history) == 1 and sha in history[0]
    assert (tmp_path / "firmware" / "installed" / f"{sha[:16]}.bin").read_bytes() == b"firmware v2"
    image.write_bytes(b"")
    empty = hook(
        FirmwareImage(
            path=image, location="x", sha256=hashlib.sha256(b"").hexdigest(), signed=False, state_dir=tmp_path
        )
    )
    assert (empty.installed, empty.detail) == (False, "the image is empty")
    for bad in ("nomodule", "charger.nosuchmodule:f", "charger.hal.firmware:nothing"):
        with pytest.raises(ValueError, match="install hook"):
            load_install_hook(bad)
