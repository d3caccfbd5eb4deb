"""Certificate management and security events through the whole station: InstallCertificate,
GetInstalledCertificateIds and DeleteCertificate (kept across a kill), bad certificates and an unknown
certificate type; SecurityEventNotification for a start, a Reset, a changed security parameter, queued
while the CSMS is away and delivered after the reconnect; SignCertificate and CertificateSigned renewing
the client certificate of security profile 3.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from charger.protocols.ocpp_certificates import hash_data, load_certificate
from charger.sim.csms import EventKind
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from tests.actors.test_backend_link_firmware import accepted, security_events
from tests.actors.test_backend_link_harness import eventually, station
from tests.actors.test_backend_link_requests import _call
from tests.support.certs import make_firmware_signing, make_tls_files
from tests.support.csms import PEER_KINDS, PeerOptions

AUTH_KEY_HEX = "30313233343536373839616263646566"
NEW_KEY_HEX = "41424344454647484950515253545556"


@pytest.mark.parametrize("peer", PEER_KINDS)
def test_install_list_and_delete_root_certificates(tmp_path: Path, peer: str) -> None:
    tls = make_tls_files(tmp_path)
    maker = make_firmware_signing()
    central_pem = tls.ca_cert.read_text()
    with station(tmp_path, peer, light=True) as st:
        accepted(st)
        central = {"certificateType": "CentralSystemRootCertificate"}
        assert st.call_action("GetInstalledCertificateIds", central).payload == {"status": "NotFound"}
        assert st.call_action("InstallCertificate", {**central, "certificate": central_pem}).payload == {
            "status": "Accepted"
        }
        manufacturer = {"certificateType": "ManufacturerRootCertificate", "certificate": maker.root_pem}
        assert st.call_action("InstallCertificate", manufacturer).payload == {"status": "Accepted"}
        leaf = {**central, "certificate": tls.server_cert.read_text()}
        assert st.call_action("InstallCertificate", leaf).payload == {"status": "Rejected"}  # not a CA
        garbage = {**central, "certificate": "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----"}
        assert st.call_action("InstallCertificate", garbage).payload == {"status": "Rejected"}
        unknown_type = _call(
            "InstallCertificate", {"certificateType": "V2GRootCertificate", "certificate": central_pem}
        )
        assert st.raw_call(unknown_type).error_code == "FormationViolation"
        unknown_list = _call("GetInstalledCertificateIds", {"certificateType": "MORootCertificate"})
        assert st.raw_call(unknown_list).error_code == "FormationViolation"

        expected = hash_data(load_certificate(central_pem)).to_wire()
        listed = st.call_action("GetInstalledCertificateIds", central).payload
        assert listed == {"status": "Accepted", "certificateHashData": [expected]}
        st.kill_backend()  # installed certificates are kept
        accepted(st)
        assert st.call_action("GetInstalledCertificateIds", central).payload == listed
        made = st.call_action("GetInstalledCertificateIds", {"certificateType": "ManufacturerRootCertificate"})
        assert made.payload["certificateHashData"] == [hash_data(load_certificate(maker.root_pem)).to_wire()]

        delete = {"certificateHashData": expected}
        assert st.call_action("DeleteCertificate", delete).payload == {"status": "Accepted"}
        assert st.call_action("DeleteCertificate", delete).payload == {"status": "NotFound"}
        assert st.call_action("GetInstalledCertificateIds", central).payload == {"status": "NotFound"}
        # ocpp-rpc flags our answers to its untracked raw CALLs, and nothing else
        assert all("unrecognised message ID" in e.fields["error"] for e in st.csms.invalid_inbound())


def test_security_events_are_queued_offline_and_never_carry_secrets(tmp_path: Path) -> None:
    with station(tmp_path, light=True, authorization_key=AUTH_KEY_HEX, security_profile=1) as st:
        accepted(st)
        eventually(lambda: security_events(st) == ["StartupOfTheDevice"], "the startup event")
        after = st.csms.next_seq()
        assert st.call_action("ChangeConfiguration", {"key": "AuthorizationKey", "value": NEW_KEY_HEX}).payload == {
            "status": "Accepted"
        }
        event = st.wait_call("SecurityEventNotification", after)
        assert event.payload["type"] == "ReconfigurationOfSecurityParameters"
        assert event.payload["techInfo"] == "AuthorizationKey changed"

        st.csms.go_offline()  # type: ignore[attr-defined]
        eventually(lambda: not st.link().online, "the link noticing the outage")
        st.kill_backend()  # it starts again while the CSMS is away: its startup event waits in the queue
        eventually(lambda: st.link().queued_messages >= 1, "the event queued")
        after = st.csms.next_seq()
        st.csms.go_online()  # type: ignore[attr-defined]
        st.wait_drained()
        assert security_events(st, after) == ["StartupOfTheDevice"]

        after = st.csms.next_seq()
        assert st.call_action("Reset", {"type": "Soft"}).payload == {"status": "Accepted"}
        st.wait_call("SecurityEventNotification", after, where=lambda f: f.payload["type"] == "ResetOrReboot")
        assert "StartupOfTheDevice" not in security_events(st, after)
    log = (tmp_path / "system.log").read_text()
    assert NEW_KEY_HEX not in log and AUTH_KEY_HEX not in log


def _sign_csr(csr_pem: str, ca_cert: Path, ca_key: Path) -> str:
    """What a CSMS's CA does with the station's CSR: a client certificate for its subject and key."""
    csr = x509.load_pem_x509_csr(csr_pem.encode())
    ca = x509.load_pem_x509_certificate(ca_cert.read_bytes())
    key = serialization.load_pem_private_key(ca_key.read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(csr.subject)
        .issuer_name(ca.subject)
        .public_key(csr.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.PEM).decode() + ca_cert.read_text()


@pytest.mark.parametrize("peer", PEER_KINDS)
def test_the_csms_renews_the_client_certificate_of_profile_3(tmp_path: Path, peer: str) -> None:
    pki = tmp_path / "pki"
    pki.mkdir()
    tls = make_tls_files(pki, cp_id="CP1", organization="Test CPO")
    options = PeerOptions(
        tls_cert=tls.server_cert, tls_key=tls.server_key, client_ca=tls.ca_cert, client_organization="Test CPO"
    )
    backend = {
        "security_profile": 3,
        "ca_file": str(tls.ca_cert),
        "client_cert_file": str(tls.client_cert),
        "client_key_file": str(tls.client_key),
        "configuration": {"CpoName": "Test CPO"},
    }
    with station(tmp_path, peer, options=options, light=True, url_scheme="wss", **backend) as st:
        accepted(st)
        assert st.call_action("CertificateSigned", {"certificateChain": tls.client_cert.read_text()}).payload == {
            "status": "Rejected"  # nothing was asked for
        }
        after = st.csms.next_seq()
        trigger = {"requestedMessage": "SignChargePointCertificate"}
        assert st.call_action("ExtendedTriggerMessage", trigger).payload == {"status": "Accepted"}
        csr_pem = st.wait_call("SignCertificate", after).payload["csr"]
        subject = x509.load_pem_x509_csr(csr_pem.encode()).subject.rfc4514_string()
        assert subject == "CN=CP1,O=Test CPO"
        after = st.csms.next_seq()
        wrong_key = {"certificateChain": tls.client_cert.read_text()}  # valid, but not for the new key
        assert st.call_action("CertificateSigned", wrong_key).payload == {"status": "Rejected"}
        event = st.wait_call("SecurityEventNotification", after)
        assert event.payload["type"] == "InvalidChargePointCertificate"
        chain = _sign_csr(csr_pem, tls.ca_cert, pki / "ca.key")
        assert st.call_action("CertificateSigned", {"certificateChain": chain}).payload == {"status": "Accepted"}
        assert (st.state / "backend-client.pem").stat().st_mode & 0o777 == 0o600  # it holds the key
        assert not (st.state / "backend-client-pending.key").exists()
        tls.client_cert.unlink()  # from now on only the renewed certificate can get the station in
        tls.client_key.unlink()
        opened = len(st.csms.events(EventKind.OPEN))
        st.kill_backend()
        accepted(st)
        assert len(st.csms.events(EventKind.OPEN)) == opened + 1


def test_an_installed_central_system_root_is_trusted_until_it_is_deleted(tmp_path: Path) -> None:
    pki = tmp_path / "pki"
    pki.mkdir()
    tls = make_tls_files(pki, cp_id="CP1", organization="Test CPO")
    trust = tmp_path / "trust.pem"  # the configured ca_file, read at every connection
    trust.write_bytes(tls.ca_cert.read_bytes())
    options = PeerOptions(basic_auth={"CP1": "0123456789abcdef"}, tls_cert=tls.server_cert, tls_key=tls.server_key)
    backend = {"security_profile": 2, "authorization_key": AUTH_KEY_HEX, "ca_file": str(trust)}
    with station(tmp_path, options=options, light=True, url_scheme="wss", **backend) as st:
        accepted(st)
        root = {"certificateType": "CentralSystemRootCertificate", "certificate": tls.ca_cert.read_text()}
        assert st.call_action("InstallCertificate", root).payload == {"status": "Accepted"}
        trust.write_bytes(tls.rogue_ca_cert.read_bytes())  # ca_file alone no longer trusts the CSMS
        st.kill_backend()
        accepted(st)  # the installed root does
        hashes = hash_data(load_certificate(tls.ca_cert.read_text())).to_wire()
        assert st.call_action("DeleteCertificate", {"certificateHashData": hashes}).payload == {"status": "Accepted"}
        st.kill_backend()
        eventually(lambda: "CERTIFICATE_VERIFY_FAILED" in (st.link().last_error or ""), "the CSMS no longer trusted")
