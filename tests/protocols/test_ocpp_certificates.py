"""Certificate hash data (checked against `cryptography`'s OCSP request, an independent encoder), root
checks for InstallCertificate, and firmware signing certificates and signatures."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from charger.protocols.ocpp_certificates import (
    CertificateProblem,
    HashData,
    hash_data,
    load_certificate,
    root_problem,
    signing_certificate_problem,
    verify_firmware_signature,
)
from cryptography.hazmat.primitives import hashes
from cryptography.x509 import ocsp

from tests.support.certs import make_firmware_signing, make_tls_files


@pytest.mark.parametrize("algorithm", ["SHA256", "SHA384", "SHA512"])
def test_hash_data_matches_an_ocsp_cert_id(tmp_path: Path, algorithm: str) -> None:
    files = make_tls_files(tmp_path)
    ca, server = load_certificate(files.ca_cert.read_bytes()), load_certificate(files.server_cert.read_bytes())
    digest = {"SHA256": hashes.SHA256(), "SHA384": hashes.SHA384(), "SHA512": hashes.SHA512()}[algorithm]
    for certificate, issuer in ((ca, ca), (server, ca)):
        request = ocsp.OCSPRequestBuilder().add_certificate(certificate, issuer, digest).build()
        ours = hash_data(certificate, issuer, algorithm)
        assert ours.issuer_name_hash == request.issuer_name_hash.hex()
        assert ours.issuer_key_hash == request.issuer_key_hash.hex()
        assert ours.serial_number == format(request.serial_number, "x")
        assert ours.hash_algorithm == algorithm


def test_hash_data_round_trips_through_the_wire() -> None:
    data = HashData("AB" * 32, "cd" * 32, "00f1")
    wire = data.to_wire()
    assert wire["hashAlgorithm"] == "SHA256" and set(wire) == {
        "hashAlgorithm",
        "issuerNameHash",
        "issuerKeyHash",
        "serialNumber",
    }
    assert HashData.from_wire(wire) == HashData("ab" * 32, "cd" * 32, "f1")


def test_only_valid_self_signed_cas_are_roots(tmp_path: Path) -> None:
    files = make_tls_files(tmp_path)
    ca = load_certificate(files.ca_cert.read_text())
    assert root_problem(ca) is None
    assert root_problem(load_certificate(files.server_cert.read_text())) == "not a CA certificate"
    assert root_problem(ca, now=datetime.now(UTC) + timedelta(days=30)) == "the certificate has expired"
    assert root_problem(ca, now=datetime.now(UTC) - timedelta(days=1)) == "the certificate is not valid yet"
    with pytest.raises(CertificateProblem):
        load_certificate("-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n")


def test_signing_certificates_and_signatures() -> None:
    pki = make_firmware_signing()
    root, signing = load_certificate(pki.root_pem), load_certificate(pki.signing_pem)
    rogue = load_certificate(pki.rogue_signing_pem)
    assert signing_certificate_problem(signing, [root]) is None
    assert signing_certificate_problem(rogue, [root]) == "not signed by a trusted firmware signing CA"
    assert signing_certificate_problem(signing, []) == "no firmware signing CA is configured or installed"
    image = b"\x7fELF firmware " * 100
    assert verify_firmware_signature(signing, image, pki.sign(image)) is None
    assert verify_firmware_signature(signing, image + b"!", pki.sign(image)) == "the signature does not match the image"
    assert (
        verify_firmware_signature(signing, image, pki.sign(image, rogue=True))
        == "the signature does not match the image"
    )
    assert verify_firmware_signature(signing, image, "***") == "the signature is not Base64"
    assert verify_firmware_signature(signing, image, base64.b64encode(b"short").decode()) == (
        "the signature does not match the image"
    )
