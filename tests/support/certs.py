"""Certificates made at test time for the OCPP security profiles 2 and 3 (`cryptography`, EC P-256).

`make_tls_files` writes a CA, a server certificate for 127.0.0.1 and localhost, a charge point's client
certificate (O = the CPO's name, CN = the charge point id, as the Security Whitepaper asks), and, for
negative tests, a client certificate of another O and a second, untrusted CA with a client certificate.
`client_context` builds the charge point's side of the TLS handshake.
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["FirmwareSigning", "TlsFiles", "client_context", "make_firmware_signing", "make_tls_files"]

_VALID_FOR = datetime.timedelta(days=2)


@dataclass(frozen=True, slots=True, kw_only=True)
class TlsFiles:
    """PEM files of one test PKI."""

    ca_cert: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    """Signed by `ca_cert` for charge point `cp_id` of `organization`."""
    rogue_ca_cert: Path
    """A CA nobody trusts."""
    rogue_client_cert: Path
    rogue_client_key: Path
    """Signed by the rogue CA, with the same subject as the good client certificate."""
    other_org_client_cert: Path
    other_org_client_key: Path
    """Signed by `ca_cert` for the same charge point, but with another O than `organization`."""
    cp_id: str
    organization: str


@dataclass(frozen=True, slots=True)
class _Issued:
    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey


def _name(common_name: str, organization: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _issue(
    subject: x509.Name,
    issuer: _Issued | None,
    *,
    is_ca: bool,
    usage: x509.ObjectIdentifier | None = None,
    alt_names: list[x509.GeneralName] | None = None,
) -> _Issued:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    signer_key = key if issuer is None else issuer.key
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject if issuer is None else issuer.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + _VALID_FOR)
        .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(signer_key.public_key()), critical=False)
        .add_extension(
            x509.KeyUsage(
                digital_signature=not is_ca,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=is_ca,
                crl_sign=is_ca,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    )
    if usage is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if alt_names:
        builder = builder.add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
    return _Issued(builder.sign(signer_key, hashes.SHA256()), key)


def _write(directory: Path, stem: str, issued: _Issued) -> tuple[Path, Path]:
    cert_path, key_path = directory / f"{stem}.pem", directory / f"{stem}.key"
    cert_path.write_bytes(issued.certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        issued.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    key_path.chmod(0o600)
    return cert_path, key_path


def make_tls_files(directory: Path, *, cp_id: str = "CP1", organization: str = "Test CPO") -> TlsFiles:
    """Write a fresh PKI into `directory` (which must exist)."""
    ca = _issue(_name("Test CSMS Root CA", organization), None, is_ca=True)
    server = _issue(
        _name("localhost", organization),
        ca,
        is_ca=False,
        usage=ExtendedKeyUsageOID.SERVER_AUTH,
        alt_names=[x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))],
    )
    client = _issue(_name(cp_id, organization), ca, is_ca=False, usage=ExtendedKeyUsageOID.CLIENT_AUTH)
    rogue_ca = _issue(_name("Rogue Root CA", "Rogue"), None, is_ca=True)
    rogue_client = _issue(_name(cp_id, organization), rogue_ca, is_ca=False, usage=ExtendedKeyUsageOID.CLIENT_AUTH)
    other_org = _issue(_name(cp_id, f"Not {organization}"), ca, is_ca=False, usage=ExtendedKeyUsageOID.CLIENT_AUTH)
    ca_cert, _ = _write(directory, "ca", ca)
    server_cert, server_key = _write(directory, "server", server)
    client_cert, client_key = _write(directory, "client", client)
    rogue_ca_cert, _ = _write(directory, "rogue-ca", rogue_ca)
    rogue_client_cert, rogue_client_key = _write(directory, "rogue-client", rogue_client)
    other_org_client_cert, other_org_client_key = _write(directory, "other-org-client", other_org)
    return TlsFiles(
        ca_cert=ca_cert,
        server_cert=server_cert,
        server_key=server_key,
        client_cert=client_cert,
        client_key=client_key,
        rogue_ca_cert=rogue_ca_cert,
        rogue_client_cert=rogue_client_cert,
        rogue_client_key=rogue_client_key,
        other_org_client_cert=other_org_client_cert,
        other_org_client_key=other_org_client_key,
        cp_id=cp_id,
        organization=organization,
    )


def client_context(trust: Path, cert: Path | None = None, key: Path | None = None) -> ssl.SSLContext:
    """A charge point's TLS context: verify the CSMS against `trust`; present `cert` for profile 3."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(trust))
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if cert is not None:
        context.load_cert_chain(cert, key)
    return context


@dataclass(frozen=True, slots=True, kw_only=True)
class FirmwareSigning:
    """A firmware signing PKI: a manufacturer root, a signing certificate it issued, and `sign` with that
    certificate's key; plus a signing certificate from a CA nobody trusts."""

    root_pem: str
    signing_pem: str
    rogue_signing_pem: str
    _signing: _Issued
    _rogue: _Issued

    def sign(self, image: bytes, *, rogue: bool = False) -> str:
        """The Base64 ECDSA-SHA256 signature of `image`."""
        key = (self._rogue if rogue else self._signing).key
        return base64.b64encode(key.sign(image, ec.ECDSA(hashes.SHA256()))).decode()


def _pem(issued: _Issued) -> str:
    return issued.certificate.public_bytes(serialization.Encoding.PEM).decode()


def make_firmware_signing(organization: str = "Test Maker") -> FirmwareSigning:
    root = _issue(_name("Firmware Root CA", organization), None, is_ca=True)
    signing = _issue(_name("Firmware Signing", organization), root, is_ca=False, usage=ExtendedKeyUsageOID.CODE_SIGNING)
    rogue_root = _issue(_name("Rogue Firmware CA", "Rogue"), None, is_ca=True)
    rogue = _issue(_name("Firmware Signing", organization), rogue_root, is_ca=False)
    return FirmwareSigning(
        root_pem=_pem(root), signing_pem=_pem(signing), rogue_signing_pem=_pem(rogue), _signing=signing, _rogue=rogue
    )
