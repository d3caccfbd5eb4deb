"""Certificate management and security events through the whole station: InstallCertificate,
GetInstalledCertificateIds and DeleteCertificate (kept across a kill), bad certificates and an unknown
certificate type; SecurityEventNotification for a start, a Reset, a changed security parameter, queued
while the CSMS is away and delivered after the reconnect.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from charger.protocols.ocpp_certificates import hash_data, load_certificate

from tests.actors.test_backend_link_firmware import accepted, security_events
from tests.actors.test_backend_link_harness import eventually, station
from tests.actors.test_backend_link_requests import _call
from tests.support.certs import make_firmware_signing, make_tls_files
from tests.support.csms import PEER_KINDS

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
