"""The rules of an OCPP 1.6J connection (pure): the URL, the security profile's transport, the boot
registration and what it allows to be sent, and the reconnect back-off.

Security profiles (Security Whitepaper ed. 3): 1 = HTTP Basic auth, 2 = Basic auth over TLS with the
CSMS certificate verified, 3 = TLS with a client certificate. A profile is never downgraded (A00.FR.005):
a ``ws://`` URL with profile 2 or 3 is a configuration error, not a reason to connect without TLS.
Profile 0 (no security, legacy) is allowed for a lab; the backend link reports it.

Boot (OCPP 1.6 §4.2): nothing but BootNotification until the CSMS accepted it. While Pending, only
messages the CSMS asked for with TriggerMessage may be sent (OCPP 1.6 errata, like 2.0.1 B02.FR.02).

Reconnect back-off (OCPP 2.0.1 Part 4 §5.3, keys RetryBackOff*): wait ``wait_minimum * 2^n`` plus a
random part, with n the failed attempts so far, doubling at most ``repeat_times`` times.
"""

from __future__ import annotations

import base64
import enum
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

__all__ = [
    "BackoffPolicy",
    "Registration",
    "basic_auth_header",
    "endpoint_url",
    "may_send",
    "reconnect_delay",
    "transport_problems",
]

_CP_ID_MAX = 48  # the whitepaper's identity limit (CiString48)


class Registration(enum.StrEnum):
    """Where the boot stands: the status of the last BootNotification.conf, or none yet."""

    UNKNOWN = "Unknown"
    PENDING = "Pending"
    ACCEPTED = "Accepted"
    REJECTED = "Rejected"


def may_send(registration: Registration, action: str, *, triggered: bool = False) -> bool:
    """Whether a charge-point-initiated `action` may go out now."""
    if action == "BootNotification" or registration is Registration.ACCEPTED:
        return True
    return registration is Registration.PENDING and triggered


def endpoint_url(csms_url: str, charge_point_id: str) -> str:
    """The connection URL: the CSMS endpoint plus the percent-encoded charge point id (OCPP-J 1.6 §3.1)."""
    return f"{csms_url.rstrip('/')}/{quote(charge_point_id, safe='')}"


def transport_problems(
    profile: int, csms_url: str, charge_point_id: str, *, has_password: bool, has_client_certificate: bool
) -> list[str]:
    """What keeps this configuration from connecting with `profile`; empty when it can."""
    problems: list[str] = []
    scheme = urlsplit(csms_url).scheme
    if scheme not in ("ws", "wss"):
        problems.append(f"csms_url must start with ws:// or wss://, not {scheme or 'nothing'}://")
    elif profile >= 2 and scheme != "wss":
        problems.append(f"security profile {profile} needs TLS: csms_url must be wss://, never a downgrade to ws://")
    if profile not in (0, 1, 2, 3):
        problems.append(f"security profile {profile} does not exist (0 to 3)")
    if profile in (1, 2) and not has_password:
        problems.append(f"security profile {profile} needs an AuthorizationKey (authorization_key or its file)")
    if profile == 3 and not has_client_certificate:
        problems.append("security profile 3 needs client_cert_file and client_key_file")
    if not 0 < len(charge_point_id) <= _CP_ID_MAX:
        problems.append(f"charge_point_id must be 1 to {_CP_ID_MAX} characters")
    elif ":" in charge_point_id and profile in (1, 2):
        problems.append("charge_point_id may not contain ':' with HTTP Basic auth (it is the user name)")
    return problems


def basic_auth_header(charge_point_id: str, password: bytes) -> str:
    """The Authorization header of profiles 1 and 2: user = charge point id, password = AuthorizationKey."""
    credentials = charge_point_id.encode() + b":" + password
    return "Basic " + base64.b64encode(credentials).decode("ascii")


@dataclass(frozen=True, slots=True)
class BackoffPolicy:
    wait_minimum_s: float = 3.0  #: RetryBackOffWaitMinimum
    random_range_s: float = 10.0  #: RetryBackOffRandomRange
    repeat_times: int = 5  #: RetryBackOffRepeatTimes

    def __post_init__(self) -> None:
        if self.wait_minimum_s < 0 or self.random_range_s < 0 or self.repeat_times < 0:
            raise ValueError("back-off settings are not negative")


def reconnect_delay(failures: int, policy: BackoffPolicy, unit_random: float) -> float:
    """Seconds to wait before the next attempt after `failures` failed ones in a row (0 for the first
    retry); `unit_random` in [0, 1) draws the random part."""
    if not 0.0 <= unit_random < 1.0:
        raise ValueError("unit_random is in [0, 1)")
    doublings = min(max(failures, 0), policy.repeat_times)
    return float(policy.wait_minimum_s * 2**doublings + unit_random * policy.random_range_s)
