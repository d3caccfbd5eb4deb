"""Firmware Management (UpdateFirmware, GetDiagnostics) and the Security Whitepaper's requests (signed
firmware, GetLog, certificate management) as the backend link plugs them in: their CSMS handlers, and
the status notifications TriggerMessage and ExtendedTriggerMessage may ask for.
"""

from __future__ import annotations

from charger.actors.ocpp_diagnostics import DIAGNOSTICS_HANDLERS, send_diagnostics_status, send_log_status
from charger.actors.ocpp_firmware import FIRMWARE_HANDLERS, send_firmware_status
from charger.actors.ocpp_security import SECURITY_HANDLERS, request_client_certificate

__all__ = ["MAINTENANCE_HANDLERS", "MAINTENANCE_TRIGGERS"]

MAINTENANCE_HANDLERS = {**FIRMWARE_HANDLERS, **DIAGNOSTICS_HANDLERS, **SECURITY_HANDLERS}
MAINTENANCE_TRIGGERS = {
    "DiagnosticsStatusNotification": send_diagnostics_status,
    "FirmwareStatusNotification": send_firmware_status,
    "LogStatusNotification": send_log_status,
    "SignChargePointCertificate": request_client_certificate,
}
