"""Security profiles of the simulated CSMS (OCPP 1.6 Security Whitepaper ed.3).

- profile 1: HTTP Basic auth on ws://, user = charge point id, password = its AuthorizationKey;
- profile 2: the same over TLS with the CSMS's server certificate;
- profile 3: TLS with a client certificate that must verify against `client_ca` (and, if configured,
  carry the CPO's name as its O RDN).

A refused upgrade is answered with an HTTP status before any WebSocket frame (401 for credentials).
Keys never reach a log or a repr.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import Any

__all__ = ["CsmsSecurity", "Refusal", "check_upgrade"]


@dataclass(frozen=True, slots=True, kw_only=True)
class CsmsSecurity:
    """What a charge point must show to connect. The default accepts anyone on plain ws://."""

    basic_auth: Mapping[str, str] = field(default_factory=dict, repr=False)
    """AuthorizationKey per charge point id; when not empty, every upgrade needs matching Basic auth."""
    tls_cert: Path | None = None
    """PEM server certificate (chain): serve wss:// (profiles 2 and 3)."""
    tls_key: Path | None = None
    client_ca: Path | None = None
    """PEM CA bundle: require a client certificate that verifies against it (profile 3)."""
    client_organization: str | None = None
    """Profile 3: the O RDN the client certificate must carry (the CPO's name)."""

    def __post_init__(self) -> None:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key go together")
        if self.tls_cert is None and (self.client_ca is not None or self.client_organization is not None):
            raise ValueError("client certificates need TLS: give tls_cert and tls_key")
        if self.client_organization is not None and self.client_ca is None:
            raise ValueError("client_organization needs client_ca")

    @property
    def scheme(self) -> str:
        return "ws" if self.tls_cert is None else "wss"

    def ssl_context(self) -> ssl.SSLContext | None:
        if self.tls_cert is None or self.tls_key is None:
            return None
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2  # the whitepaper's recommendation; 1.0/1.1 are legacy
        context.load_cert_chain(self.tls_cert, self.tls_key)
        if self.client_ca is not None:
            context.load_verify_locations(cafile=self.client_ca)
            context.verify_mode = ssl.CERT_REQUIRED
        return context


@dataclass(frozen=True, slots=True, kw_only=True)
class Refusal:
    """Why an upgrade is refused, as an HTTP status and a reason safe to log and send."""

    status: HTTPStatus
    reason: str


def check_upgrade(
    security: CsmsSecurity, cp_id: str, authorization: str | None, peer_certificate: Mapping[str, Any] | None
) -> Refusal | None:
    """None when `cp_id` may connect with this Authorization header and (verified) client certificate."""
    if not cp_id:
        return Refusal(status=HTTPStatus.NOT_FOUND, reason="no charge point id in the URL path")
    if security.basic_auth:
        refusal = _check_basic_auth(security.basic_auth, cp_id, authorization)
        if refusal is not None:
            return refusal
    if security.client_organization is not None:
        organizations = _subject_values(peer_certificate or {}, "organizationName")
        if security.client_organization not in organizations:
            return Refusal(
                status=HTTPStatus.UNAUTHORIZED,
                reason=f"client certificate O is {organizations or 'missing'}, not the CPO's",
            )
    return None


def _check_basic_auth(keys: Mapping[str, str], cp_id: str, authorization: str | None) -> Refusal | None:
    if authorization is None:
        return Refusal(status=HTTPStatus.UNAUTHORIZED, reason="missing credentials")
    scheme, _, encoded = authorization.strip().partition(" ")
    if scheme.lower() != "basic":
        return Refusal(status=HTTPStatus.UNAUTHORIZED, reason="credentials are not HTTP Basic")
    try:
        user_pass = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        return Refusal(status=HTTPStatus.UNAUTHORIZED, reason="malformed Basic credentials")
    # The user is the charge point id, which may itself hold a colon: split after the id, not at the first colon.
    prefix = cp_id.encode() + b":"
    expected = keys.get(cp_id)
    if not user_pass.startswith(prefix):
        return Refusal(status=HTTPStatus.UNAUTHORIZED, reason="Basic user is not the charge point id")
    if expected is None or not hmac.compare_digest(user_pass[len(prefix) :], expected.encode()):
        return Refusal(status=HTTPStatus.UNAUTHORIZED, reason="wrong AuthorizationKey")
    return None


def _subject_values(certificate: Mapping[str, Any], attribute: str) -> list[str]:
    """Values of one RDN attribute in a certificate as `ssl.SSLSocket.getpeercert()` returns it."""
    return [value for rdn in certificate.get("subject", ()) for name, value in rdn if name == attribute]
