"""What other actors say to the OCPP backend link.

- `AuthorizeToken` -> `TokenAuthorization`: may this idTag charge? Decided as OCPP 1.6 §3.5 says (local
  list, authorization cache, the CSMS when online, LocalPreAuthorize, LocalAuthorizeOffline,
  AllowOfflineTxForUnknownId). `PresentToken`/`TokenVerdict` do not fit: they hand a token to a
  connector, and their verdict has no room for Blocked, Expired, ConcurrentTx or a parent idTag.
- `GetBackendLinkStatus` -> `BackendLinkStatus`: the link at a glance (connection, boot, queue).
"""

from __future__ import annotations

from charger.interfaces import Command, Interface
from charger.messages import message

__all__ = [
    "BACKEND_LINK",
    "AuthorizeToken",
    "BackendLinkStatus",
    "GetBackendLinkStatus",
    "TokenAuthorization",
]


@message
class AuthorizeToken:
    """May `id_tag` (an OCPP IdToken, at most 20 characters) start or stop charging now?"""

    id_tag: str


@message
class TokenAuthorization:
    """The answer to `AuthorizeToken`."""

    id_tag: str
    status: str
    """OCPP 1.6 AuthorizationStatus: Accepted, Blocked, Expired, Invalid or ConcurrentTx."""
    source: str
    """Who decided: "csms", "local_list", "cache", "offline" (an offline rule), or "none" (a bad idTag)."""
    parent_id_tag: str | None = None
    """The group the idTag belongs to: a session may be stopped by any idTag of the same group."""
    expiry: float | None = None
    """Unix seconds after which the answer no longer holds."""


@message
class GetBackendLinkStatus:
    """Answered with `BackendLinkStatus`."""


@message
class BackendLinkStatus:
    csms_url: str
    charge_point_id: str
    security_profile: int
    online: bool
    """A WebSocket to the CSMS is open."""
    registration: str
    """The last BootNotification status: Unknown, Pending, Accepted or Rejected."""
    connections: int
    """Connections opened since the actor started."""
    queued_messages: int
    """Transaction-related messages waiting for the CSMS (persistent)."""
    discarded_messages: int
    """Transaction-related messages given up after TransactionMessageAttempts CALLERRORs."""
    last_error: str | None
    """Why the last connection attempt failed or the last connection ended (never a credential)."""


BACKEND_LINK = Interface(
    name="backend_link",
    description="An OCPP backend link: authorizes idTags, reports the station to a CSMS.",
    commands=(Command(AuthorizeToken, TokenAuthorization), Command(GetBackendLinkStatus, BackendLinkStatus)),
)
