"""The Security Whitepaper's events and certificate management on the backend link.

- `SecurityCenter` (``link.security``) writes every security event the station notices to the
  security log and sends the critical ones as SecurityEventNotification through the persistent queue
  (so an event noticed offline reaches the CSMS after the reconnect, in order with the transaction
  messages). Events: StartupOfTheDevice or ResetOrReboot when the link starts, FirmwareUpdated,
  InvalidFirmwareSignature, InvalidFirmwareSigningCertificate, ReconfigurationOfSecurityParameters
  (SecurityProfile or AuthorizationKey changed; never the value), InvalidCentralSystemCertificate and
  FailedToAuthenticateAtCentralSystem (a refused TLS certificate or HTTP 401, at most once an hour).
  The station does not set the system clock and never clears its security log, so SettingSystemTime
  and SecurityLogWasCleared do not happen.
- ExtendedTriggerMessage(SignChargePointCertificate) makes a new key and sends its CSR in
  SignCertificate (A02/A03: CN = the charge point id, O = CpoName); CertificateSigned with a chain for
  that key, valid and unbroken, makes it the client certificate of security profile 3 from the next
  connection on (``<link>-client.pem`` in the state directory, chain and key, mode 0600, over the
  configured ``client_cert_file``); a bad chain is Rejected with the InvalidChargePointCertificate event.
- InstallCertificate, GetInstalledCertificateIds and DeleteCertificate (M03-M05) keep
  CentralSystemRootCertificate and ManufacturerRootCertificate roots in the security store, named by
  their CertificateHashData. An installed CentralSystemRootCertificate is trusted for the CSMS's TLS
  certificate beside ``ca_file`` (from the next connection on), an installed ManufacturerRootCertificate
  for signed firmware beside ``firmware.signing_ca_file``.
"""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from collections.abc import Generator
from typing import TYPE_CHECKING, Any

from charger.actors.ocpp_base import LINK_UNAVAILABLE
from charger.actors.ocpp_link import CsmsError
from charger.actors.ocpp_security_store import SecurityStore
from charger.protocols.ocpp_certificates import (
    CertificateProblem,
    HashData,
    hash_data,
    load_certificate,
    make_csr,
    root_problem,
    signed_chain_problem,
)
from charger.protocols.ocpp_firmware import CRITICAL_SECURITY_EVENTS, SecurityEvent
from charger.protocols.ocpp_meter import ocpp_time
from cryptography import x509

from charger.behaviour import Pending
from charger.ocpp_store import SECURITY_EVENT

if TYPE_CHECKING:
    from charger.actors.backend_link import BackendLink

__all__ = ["SECURITY_HANDLERS", "SecurityCenter", "request_client_certificate"]

_TECH_INFO_MAX = 255
_CONNECT_EVENT_EVERY_S = 3600.0
_SECURITY_KEYS = frozenset({"SecurityProfile", "AuthorizationKey", "CpoName", "AdditionalRootCertificateCheck"})


class SecurityCenter:
    """The security log, the installed roots, and the SecurityEventNotifications of one backend link."""

    def __init__(self, link: BackendLink) -> None:
        self.link = link
        self.store = SecurityStore(os.path.join(link.state_dir, f"{link.name}-security.db"))
        self._connect_events: dict[SecurityEvent, float] = {}

    def close(self) -> None:
        self.store.close()

    def _client_path(self, suffix: str) -> str:
        return os.path.join(self.link.state_dir, f"{self.link.name}-client{suffix}")

    def client_files(self) -> tuple[str, str] | None:
        """The client certificate chain the CSMS signed (CertificateSigned) and its key, if there are
        any: one file holds both, so that a renewal replaces them together."""
        path = self._client_path(".pem")
        return (path, path) if os.path.exists(path) else None

    def new_key_for_csr(self, key_pem: bytes) -> None:
        _write_private(self._client_path("-pending.key"), key_pem)

    def pending_key(self) -> bytes | None:
        with contextlib.suppress(FileNotFoundError), open(self._client_path("-pending.key"), "rb") as file:
            return file.read()
        return None

    def adopt_client_certificate(self, chain_pem: str, key_pem: bytes) -> None:
        """The signed chain and its pending key become the client certificate, in one atomic rename."""
        _write_private(self._client_path(".pem.new"), chain_pem.strip().encode() + b"\n" + key_pem)
        os.replace(self._client_path(".pem.new"), self._client_path(".pem"))
        os.unlink(self._client_path("-pending.key"))

    def event(self, kind: SecurityEvent, tech_info: str | None = None) -> None:
        """Log a security event; queue its notification if it is a critical one."""
        info = None if not tech_info else tech_info[:_TECH_INFO_MAX]
        now = time.time()
        self.store.log_event(kind.value, info, now)
        self.link.log.info("security event %s%s", kind.value, f": {info}" if info else "")
        if kind not in CRITICAL_SECURITY_EVENTS:
            return
        payload: dict[str, Any] = {"type": kind.value, "timestamp": ocpp_time(now)}
        if info:
            payload["techInfo"] = info
        self.link.store.queue.enqueue(SECURITY_EVENT, payload, tx_key=f"security-event:{uuid.uuid4()}", now=now)
        self.link.pump()

    # -- the moments the link reports ------------------------------------------------------------------

    def started(self) -> None:
        """The link started: after a Reset it asked for, or a (re)start of the station."""
        reset = self.store.meta("reset")
        if reset is not None:
            self.store.set_meta("reset", None)
            self.event(SecurityEvent.RESET_OR_REBOOT, f"{reset} reset requested by the CSMS")
        else:
            self.event(SecurityEvent.STARTUP_OF_THE_DEVICE)

    def resetting(self, kind: str) -> None:
        self.store.set_meta("reset", kind)

    def configuration_changed(self, key: str) -> None:
        if key in _SECURITY_KEYS:
            self.event(SecurityEvent.RECONFIGURATION_OF_SECURITY_PARAMETERS, f"{key} changed")

    def connect_failed(self, reason: str) -> None:
        """A connection attempt failed: a refused CSMS certificate or credentials are security events."""
        lowered = reason.lower()
        if "certificate" in lowered and "verify" in lowered:
            kind = SecurityEvent.INVALID_CENTRAL_SYSTEM_CERTIFICATE
        elif "http 401" in lowered:
            kind = SecurityEvent.FAILED_TO_AUTHENTICATE_AT_CENTRAL_SYSTEM
        else:
            return
        now = time.monotonic()
        last = self._connect_events.get(kind)
        if last is not None and now - last < _CONNECT_EVENT_EVERY_S:
            return  # the link retries with back-off: one event per outage, not one per attempt
        self._connect_events[kind] = now
        self.event(kind, reason)

    def central_system_roots(self) -> str:
        """The installed CentralSystemRootCertificates (PEM), trusted for the CSMS's TLS certificate."""
        return "".join(c.pem.strip() + "\n" for c in self.store.certificates("CentralSystemRootCertificate"))

    def firmware_roots(self) -> list[x509.Certificate]:
        """The CAs a firmware signing certificate may be issued by."""
        roots: list[x509.Certificate] = []
        configured = self.link.config["firmware"].get("signing_ca_file")
        if configured:
            path = os.path.join(self.link.state_dir, configured)
            with open(path, "rb") as file:
                roots += x509.load_pem_x509_certificates(file.read())
        for installed in self.store.certificates("ManufacturerRootCertificate"):
            roots.append(load_certificate(installed.pem))
        return roots


def _write_private(path: str, data: bytes) -> None:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())


# --- the station's own certificate (Security Whitepaper A02/A03) ----------------------------------------


def request_client_certificate(link: BackendLink, connector: int | None) -> Generator[Pending, Any, None]:
    """ExtendedTriggerMessage(SignChargePointCertificate): a new key, and its CSR to the CSMS."""
    key_pem, csr = make_csr(link.config["charge_point_id"], link.keys.text("CpoName"))
    link.security.new_key_for_csr(key_pem)
    try:
        result = yield link.call_csms("SignCertificate", {"csr": csr}, triggered=True)
    except (*LINK_UNAVAILABLE, CsmsError) as exc:
        link.log.warning("SignCertificate failed: %s", exc)
        return
    link.log.info("SignCertificate: %s", result["status"])


def certificate_signed(link: BackendLink, payload: dict[str, Any]) -> dict[str, Any]:
    chain = payload["certificateChain"]
    key = link.security.pending_key()
    if key is None:
        link.log.warning("CertificateSigned: Rejected (no SignCertificate is pending)")
        return {"status": "Rejected"}
    limit = link.keys.integer("CertificateSignedMaxChainSize")
    problem = (
        f"the chain is longer than CertificateSignedMaxChainSize ({limit})"
        if 0 < limit < len(chain)
        else signed_chain_problem(chain, key)
    )
    if problem is not None:
        link.log.warning("CertificateSigned: Rejected (%s)", problem)
        link.security.event(SecurityEvent.INVALID_CHARGE_POINT_CERTIFICATE, problem)
        return {"status": "Rejected"}
    link.security.adopt_client_certificate(chain, key)
    link.configuration_changed("CertificateSigned", link_setting=True)  # a new client certificate
    link.log.info("CertificateSigned: Accepted; the new client certificate is used from the next connection")
    return {"status": "Accepted"}


# --- certificate management (Security Whitepaper M03-M05) ----------------------------------------------


def install_certificate(link: BackendLink, payload: dict[str, Any]) -> dict[str, Any]:
    use, pem = payload["certificateType"], payload["certificate"]
    try:
        certificate = load_certificate(pem)
    except CertificateProblem as exc:
        link.log.warning("InstallCertificate %s: Rejected (%s)", use, exc)
        return {"status": "Rejected"}
    problem = root_problem(certificate)
    if problem is not None:
        link.log.warning("InstallCertificate %s: Rejected (%s)", use, problem)
        return {"status": "Rejected"}
    hashes = hash_data(certificate)
    installed = link.security.store.certificates()
    limit = link.keys.integer("CertificateStoreMaxLength")
    if limit > 0 and len(installed) >= limit and all(c.hash_data != hashes for c in installed):
        link.log.warning("InstallCertificate %s: Rejected (the store holds %d certificates)", use, limit)
        return {"status": "Rejected"}
    try:
        link.security.store.install(use, hashes, pem)
    except Exception:
        link.log.exception("InstallCertificate %s: storing it failed", use)
        return {"status": "Failed"}
    link.log.info("InstallCertificate %s: Accepted (serial %s)", use, hashes.serial_number)
    link.configuration_changed(use, link_setting=True)  # a CSMS root is trusted from the next connection
    return {"status": "Accepted"}


def get_installed_certificate_ids(link: BackendLink, payload: dict[str, Any]) -> dict[str, Any]:
    installed = link.security.store.certificates(payload["certificateType"])
    if not installed:
        return {"status": "NotFound"}
    return {"status": "Accepted", "certificateHashData": [c.hash_data.to_wire() for c in installed]}


def delete_certificate(link: BackendLink, payload: dict[str, Any]) -> dict[str, Any]:
    wanted = HashData.from_wire(payload["certificateHashData"])  # the schema allows SHA256, SHA384, SHA512
    for installed in link.security.store.certificates():
        if hash_data(load_certificate(installed.pem), algorithm=wanted.hash_algorithm) == wanted:
            if not link.security.store.delete(installed.hash_data):
                return {"status": "Failed"}
            link.log.info("DeleteCertificate: %s %s deleted", installed.use, installed.hash_data.serial_number)
            link.configuration_changed(installed.use, link_setting=True)
            return {"status": "Accepted"}
    return {"status": "NotFound"}


SECURITY_HANDLERS = {
    "CertificateSigned": certificate_signed,
    "DeleteCertificate": delete_certificate,
    "GetInstalledCertificateIds": get_installed_certificate_ids,
    "InstallCertificate": install_certificate,
}
