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
- InstallCertificate, GetInstalledCertificateIds and DeleteCertificate (M03-M05) keep
  CentralSystemRootCertificate and ManufacturerRootCertificate roots in the security store, named by
  their CertificateHashData. An installed ManufacturerRootCertificate is trusted for signed firmware
  beside the configured ``firmware.signing_ca_file``.
"""

from __future__ import annotations

import os
import time
import uuid
from typing import TYPE_CHECKING, Any

from charger.actors.ocpp_security_store import SecurityStore
from charger.protocols.ocpp_certificates import (
    CertificateProblem,
    HashData,
    hash_data,
    load_certificate,
    root_problem,
)
from charger.protocols.ocpp_firmware import CRITICAL_SECURITY_EVENTS, SecurityEvent
from charger.protocols.ocpp_meter import ocpp_time
from cryptography import x509

from charger.ocpp_store import SECURITY_EVENT

if TYPE_CHECKING:
    from charger.actors.backend_link import BackendLink

__all__ = ["SECURITY_HANDLERS", "SecurityCenter"]

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
            return {"status": "Accepted"}
    return {"status": "NotFound"}


SECURITY_HANDLERS = {
    "DeleteCertificate": delete_certificate,
    "GetInstalledCertificateIds": get_installed_certificate_ids,
    "InstallCertificate": install_certificate,
}
