"""BackendLink security profiles (Security Whitepaper ed. 3) against both CSMS peers, with certificates
made at test time: 1 = HTTP Basic auth, 2 = TLS with the CSMS verified against the configured CA plus
Basic auth, 3 = mutual TLS. Wrong credentials and untrusted servers are refused, a profile is never
downgraded, and the AuthorizationKey never reaches a log.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from pathlib import Path

import pytest
from charger.sim.csms import EventKind

from charger.errors import CallError
from tests.actors.test_backend_link_harness import Station, eventually, station
from tests.support.certs import TlsFiles, make_tls_files
from tests.support.csms import PEER_KINDS, PeerOptions

PASSWORD = "0123456789abcdef"  # what the CSMS knows: the AuthorizationKey's bytes
KEY_HEX = PASSWORD.encode().hex()  # what the station is configured with (hex, as ChangeConfiguration sends it)


@pytest.fixture
def tls(tmp_path: Path) -> TlsFiles:
    directory = tmp_path / "pki"
    directory.mkdir()
    return make_tls_files(directory, cp_id="CP1", organization="Test CPO")


def connected(st: Station) -> None:
    eventually(lambda: st.link().online and st.link().registration == "Accepted", "an accepted connection")
    assert st.csms.invalid_inbound() == []


def refused(st: Station, reason: str) -> str:
    def why() -> str | None:
        error = st.link().last_error
        return error if error and reason in error else None

    error: str = eventually(why, f"a refusal mentioning {reason!r}")
    assert not st.link().online
    return error


def no_secret_in(tmp_path: Path) -> None:
    log = (tmp_path / "system.log").read_text()
    assert PASSWORD not in log and KEY_HEX not in log


@pytest.mark.parametrize("peer", PEER_KINDS)
def test_profile_1_basic_auth(tmp_path: Path, peer: str) -> None:
    options = PeerOptions(basic_auth={"CP1": PASSWORD})
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "cp1.key").write_text(KEY_HEX + "\n")
    with station(
        tmp_path, peer, options=options, light=True, security_profile=1, authorization_key_file="cp1.key"
    ) as st:
        connected(st)
        assert st.link().security_profile == 1
        # A change of the key is stored and used from the next connection on (and never logged).
        assert st.call_action("ChangeConfiguration", {"key": "AuthorizationKey", "value": "ab" * 16}).payload == {
            "status": "Accepted"
        }
        st.kill_backend()
        refused(st, "HTTP 401")  # the CSMS still expects the old key
    no_secret_in(tmp_path)
    assert "ab" * 16 not in (tmp_path / "system.log").read_text()


def test_profile_1_with_a_wrong_key_is_refused(tmp_path: Path) -> None:
    options = PeerOptions(basic_auth={"CP1": "the-right-password"})
    with station(tmp_path, options=options, light=True, security_profile=1, authorization_key=KEY_HEX) as st:
        refused(st, "HTTP 401")
        assert st.csms.events(EventKind.OPEN) == []
    no_secret_in(tmp_path)


@pytest.mark.parametrize("peer", PEER_KINDS)
def test_profile_2_tls_and_basic_auth(tmp_path: Path, peer: str, tls: TlsFiles) -> None:
    options = PeerOptions(basic_auth={"CP1": PASSWORD}, tls_cert=tls.server_cert, tls_key=tls.server_key)
    backend = {"security_profile": 2, "authorization_key": KEY_HEX, "ca_file": str(tls.ca_cert)}
    with station(tmp_path, peer, options=options, light=True, url_scheme="wss", **backend) as st:
        connected(st)
        assert st.link().security_profile == 2
        # No downgrade, and no upgrade without what profile 3 needs.
        for value in ("1", "0", "3"):
            answer = st.call_action("ChangeConfiguration", {"key": "SecurityProfile", "value": value})
            assert answer.payload == {"status": "Rejected"}, value
    no_secret_in(tmp_path)


def test_profile_2_refuses_a_csms_its_ca_did_not_sign(tmp_path: Path, tls: TlsFiles) -> None:
    options = PeerOptions(basic_auth={"CP1": PASSWORD}, tls_cert=tls.server_cert, tls_key=tls.server_key)
    backend = {"security_profile": 2, "authorization_key": KEY_HEX, "ca_file": str(tls.rogue_ca_cert)}
    with station(tmp_path, options=options, light=True, url_scheme="wss", **backend) as st:
        refused(st, "CERTIFICATE_VERIFY_FAILED")
        assert st.csms.events(EventKind.OPEN) == []
        time.sleep(3.0)  # a few more refused attempts: still one security event
        assert security_log(st.state) == ["StartupOfTheDevice", "InvalidCentralSystemCertificate"]
        assert st.link().queued_messages == 2  # both wait for a CSMS the station can trust
    no_secret_in(tmp_path)


def security_log(state: Path) -> list[str]:
    with contextlib.closing(sqlite3.connect(state / "backend-security.db")) as db:
        return [row[0] for row in db.execute("SELECT type FROM event ORDER BY seq")]


def test_profile_2_never_connects_without_tls(tmp_path: Path, tls: TlsFiles) -> None:
    """A ws:// URL with profile 2 is a configuration error: the link refuses to start (and so does the
    station, as for any child that fails its first start)."""
    backend = {"security_profile": 2, "authorization_key": KEY_HEX, "ca_file": str(tls.ca_cert)}
    with (
        pytest.raises(CallError, match="security profile 2 needs TLS"),
        station(tmp_path, light=True, url_scheme="ws", **backend),
    ):
        pass
    no_secret_in(tmp_path)


@pytest.mark.parametrize("peer", PEER_KINDS)
def test_profile_3_mutual_tls(tmp_path: Path, peer: str, tls: TlsFiles) -> None:
    options = PeerOptions(
        tls_cert=tls.server_cert, tls_key=tls.server_key, client_ca=tls.ca_cert, client_organization="Test CPO"
    )
    backend = {
        "security_profile": 3,
        "ca_file": str(tls.ca_cert),
        "client_cert_file": str(tls.client_cert),
        "client_key_file": str(tls.client_key),
    }
    with station(tmp_path, peer, options=options, light=True, url_scheme="wss", **backend) as st:
        connected(st)
        assert st.link().security_profile == 3


def test_profile_3_with_another_cpos_certificate_is_refused(tmp_path: Path, tls: TlsFiles) -> None:
    options = PeerOptions(
        tls_cert=tls.server_cert, tls_key=tls.server_key, client_ca=tls.ca_cert, client_organization="Test CPO"
    )
    backend = {
        "security_profile": 3,
        "ca_file": str(tls.ca_cert),
        "client_cert_file": str(tls.other_org_client_cert),
        "client_key_file": str(tls.other_org_client_key),
    }
    with station(tmp_path, options=options, light=True, url_scheme="wss", **backend) as st:
        refused(st, "HTTP 401")
