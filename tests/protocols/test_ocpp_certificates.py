"""Certificate hash data (checked against `cryptography`'s OCSP request, an independent encoder), root
checks for InstallCertificate, and firmware signing certificates and signatures."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from charger.protocols.ocpp_certificates import (
    CertificateProblem,
    HashData,
    hash_data,
    load_certificate,
    make_csr,
    root_problem,
    signed_chain_problem,
    signing_certificate_problem,
    verify_firmware_signature,
)
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
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


def test_a_csr_and_the_chain_signed_for_it(tmp_path: Path) -> None:
    files = make_tls_files(tmp_path)
    key_pem, csr_pem = make_csr("CP1", "Test CPO")
    csr = x509.load_pem_x509_csr(csr_pem.encode())
    assert csr.is_signature_valid and csr.subject.rfc4514_string() == "CN=CP1,O=Test CPO"
    assert x509.load_pem_x509_csr(make_csr("CP1", None)[1].encode()).subject.rfc4514_string() == "CN=CP1"
    ca = x509.load_pem_x509_certificate(files.ca_cert.read_bytes())
    ca_key = serialization.load_pem_private_key((tmp_path / "ca.key").read_bytes(), password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)

    def issue(public_key: Any, days: float = 1) -> str:
        now = datetime.now(UTC)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(csr.subject)
            .issuer_name(ca.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=2))
            .not_valid_after(now + timedelta(days=days))
            .sign(ca_key, hashes.SHA256())
        )
        return certificate.public_bytes(serialization.Encoding.PEM).decode()

    ca_pem = files.ca_cert.read_text()
    assert signed_chain_problem(issue(csr.public_key()) + ca_pem, key_pem) is None
    assert signed_chain_problem(issue(csr.public_key()), key_pem) is None  # the leaf alone
    assert signed_chain_problem(issue(ca_key.public_key()) + ca_pem, key_pem) == (
        "the certificate is not for the key of the last SignCertificate"
    )
    assert signed_chain_problem(issue(csr.public_key(), days=-1) + ca_pem, key_pem) == "the certificate has expired"
    rogue = files.rogue_ca_cert.read_text()
    assert signed_chain_problem(issue(csr.public_key()) + rogue, key_pem) == (
        "the chain is broken: a certificate is not signed by the next one"
    )
    assert signed_chain_problem("garbage", key_pem) is not None
