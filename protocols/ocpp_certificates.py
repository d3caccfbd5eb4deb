"""Certificates for the Security Whitepaper's certificate management (M03-M05) and signed firmware (L01):
the CertificateHashData that names an installed certificate, the checks InstallCertificate makes, and
the verification of a firmware signing certificate and of the signature over a firmware image. Pure:
PEM text and bytes in, answers out (`cryptography`, no files).

CertificateHashData (as in OCSP, RFC 6960 §4.1.1): ``issuerNameHash`` is the hash of the DER-encoded
issuer name, ``issuerKeyHash`` the hash of the issuer's public key bits (the subjectPublicKey BIT
STRING's value, without tag and length), ``serialNumber`` the serial as lower-case hex without leading
zeroes; hashes are lower-case hex, SHA256. The certificates the CSMS installs are roots, so their
issuer is themselves; a certificate that is not self-signed is refused.
"""

from __future__ import annotations

import base64
import binascii
import enum
import itertools
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID

__all__ = [
    "CertificateProblem",
    "CertificateUse",
    "HashData",
    "hash_data",
    "load_certificate",
    "make_csr",
    "root_problem",
    "signed_chain_problem",
    "signing_certificate_problem",
    "verify_firmware_signature",
]


class CertificateUse(enum.StrEnum):
    """InstallCertificate's certificateType (OCPP 1.6 security extension)."""

    CENTRAL_SYSTEM_ROOT = "CentralSystemRootCertificate"
    MANUFACTURER_ROOT = "ManufacturerRootCertificate"


class CertificateProblem(ValueError):
    """The PEM text is no certificate, or not one the station may use."""


@dataclass(frozen=True, slots=True)
class HashData:
    """OCPP CertificateHashDataType."""

    issuer_name_hash: str
    issuer_key_hash: str
    serial_number: str
    hash_algorithm: str = "SHA256"

    def to_wire(self) -> dict[str, str]:
        return {
            "hashAlgorithm": self.hash_algorithm,
            "issuerNameHash": self.issuer_name_hash,
            "issuerKeyHash": self.issuer_key_hash,
            "serialNumber": self.serial_number,
        }

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> HashData:
        return cls(
            issuer_name_hash=str(data["issuerNameHash"]).lower(),
            issuer_key_hash=str(data["issuerKeyHash"]).lower(),
            serial_number=str(data["serialNumber"]).lower().lstrip("0") or "0",
            hash_algorithm=str(data["hashAlgorithm"]),
        )


_HASHES: dict[str, hashes.HashAlgorithm] = {
    "SHA256": hashes.SHA256(),
    "SHA384": hashes.SHA384(),
    "SHA512": hashes.SHA512(),
}


def _digest(data: bytes, algorithm: str) -> str:
    h = hashes.Hash(_HASHES[algorithm])
    h.update(data)
    return h.finalize().hex()


def _public_key_bits(certificate: x509.Certificate) -> bytes:
    # The DER SubjectPublicKeyInfo's last element is the BIT STRING; its value starts after the
    # unused-bits byte. Parsing the DER is simpler than special-casing each key type.
    info = certificate.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return _last_bit_string(info)


def _der_length(data: bytes, at: int) -> tuple[int, int]:
    first = data[at]
    if first < 0x80:
        return first, at + 1
    count = first & 0x7F
    return int.from_bytes(data[at + 1 : at + 1 + count], "big"), at + 1 + count


def _last_bit_string(spki: bytes) -> bytes:
    _, at = _der_length(spki, 1)  # inside the outer SEQUENCE
    algorithm_length, body = _der_length(spki, at + 1)  # the AlgorithmIdentifier SEQUENCE
    at = body + algorithm_length
    if spki[at] != 0x03:
        raise CertificateProblem("the public key is not a BIT STRING")
    length, body = _der_length(spki, at + 1)
    return spki[body + 1 : body + length]  # skip the unused-bits byte


def hash_data(
    certificate: x509.Certificate, issuer: x509.Certificate | None = None, algorithm: str = "SHA256"
) -> HashData:
    """The CertificateHashData of `certificate`, whose issuer is `issuer` (itself by default)."""
    issuer = issuer or certificate
    return HashData(
        issuer_name_hash=_digest(certificate.issuer.public_bytes(), algorithm),
        issuer_key_hash=_digest(_public_key_bits(issuer), algorithm),
        serial_number=format(certificate.serial_number, "x"),
        hash_algorithm=algorithm,
    )


def load_certificate(pem: str | bytes) -> x509.Certificate:
    """One PEM certificate; `CertificateProblem` for anything else."""
    data = pem.encode() if isinstance(pem, str) else pem
    try:
        return x509.load_pem_x509_certificate(data)
    except ValueError as exc:
        raise CertificateProblem(f"not a PEM certificate: {exc}") from None


def _validity_problem(certificate: x509.Certificate, now: datetime) -> str | None:
    if now < certificate.not_valid_before_utc:
        return "the certificate is not valid yet"
    if now > certificate.not_valid_after_utc:
        return "the certificate has expired"
    return None


def _is_ca(certificate: x509.Certificate) -> bool:
    try:
        return bool(certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def _signed_by(certificate: x509.Certificate, issuer: x509.Certificate) -> bool:
    if certificate.issuer != issuer.subject:
        return False
    try:
        certificate.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def root_problem(certificate: x509.Certificate, now: datetime | None = None) -> str | None:
    """Why `certificate` cannot be installed as a root (CentralSystem or Manufacturer), or None."""
    now = now or datetime.now(UTC)
    if not _is_ca(certificate):
        return "not a CA certificate"
    if not _signed_by(certificate, certificate):
        return "not a self-signed root certificate"
    return _validity_problem(certificate, now)


def signing_certificate_problem(
    certificate: x509.Certificate, trusted: list[x509.Certificate], now: datetime | None = None
) -> str | None:
    """Why a firmware signing certificate is not to be trusted, or None: it must be valid now and
    signed directly by one of the `trusted` (manufacturer root) certificates, themselves valid."""
    now = now or datetime.now(UTC)
    if not trusted:
        return "no firmware signing CA is configured or installed"
    problem = _validity_problem(certificate, now)
    if problem is not None:
        return problem
    for root in trusted:
        if _signed_by(certificate, root) and _validity_problem(root, now) is None:
            return None
    return "not signed by a trusted firmware signing CA"


def verify_firmware_signature(certificate: x509.Certificate, image: bytes, signature_b64: str) -> str | None:
    """Check the Base64 `signature` over `image` (SHA256 with the certificate's RSA or EC key). Returns
    why it does not hold, or None."""
    try:
        signature = base64.b64decode(signature_b64.strip(), validate=True)
    except (binascii.Error, ValueError):
        return "the signature is not Base64"
    key = certificate.public_key()
    try:
        if isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, image, padding.PKCS1v15(), hashes.SHA256())
        elif isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, image, ec.ECDSA(hashes.SHA256()))
        else:
            return f"unsupported signing key type {type(key).__name__}"
    except InvalidSignature:
        return "the signature does not match the image"
    return None


def make_csr(charge_point_id: str, organization: str | None) -> tuple[bytes, str]:
    """A new EC P-256 key (PKCS#8 PEM, unencrypted: keep it private) and a CSR for it (PEM) with
    CN = the charge point id and O = the CPO's name (Security Whitepaper A02)."""
    key = ec.generate_private_key(ec.SECP256R1())
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, charge_point_id)]
    if organization:
        attributes.insert(0, x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    csr = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(attributes)).sign(key, hashes.SHA256())
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return key_pem, csr.public_bytes(serialization.Encoding.PEM).decode()


def signed_chain_problem(chain_pem: str, key_pem: bytes, now: datetime | None = None) -> str | None:
    """Why a CertificateSigned chain cannot become the station's client certificate, or None: the
    first certificate must be for `key_pem`'s key, and every certificate valid now and signed by the
    next one in the chain."""
    now = now or datetime.now(UTC)
    try:
        chain = x509.load_pem_x509_certificates(chain_pem.encode())
    except ValueError as exc:
        return f"not a PEM certificate chain: {exc}"
    key = serialization.load_pem_private_key(key_pem, password=None)
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    mine = key.public_key().public_bytes(serialization.Encoding.DER, spki)
    if chain[0].public_key().public_bytes(serialization.Encoding.DER, spki) != mine:
        return "the certificate is not for the key of the last SignCertificate"
    for certificate in chain:
        problem = _validity_problem(certificate, now)
        if problem is not None:
            return problem
    for certificate, issuer in itertools.pairwise(chain):
        if not _signed_by(certificate, issuer):
            return "the chain is broken: a certificate is not signed by the next one"
    return None
