"""Auth: validates tokens and hands them to connectors, after EVerest's Auth module.

Tokens arrive as `PresentToken` calls (control API) or as `TokenRead` vars from card readers; both take
the same path and end in a `TokenVerdict`. Token ids compare case-insensitively (RFID UIDs are hex).

- Stop: a token that is running a session on a connector (or on the named one) stops that session
  (`StopCharging`, reason Local): "present the same card to stop".
- Plug-in first: a connector in WaitingForAuthentication waits for a token. A valid token goes to the
  named connector, or to the one that has waited longest, via `AuthorizeSession`.
- Token first: if no connector waits, the valid token is held (one at a time; a newer one replaces it)
  for ``connection_timeout_s``; the next connector (or the named one) that starts waiting gets it.
  After the timeout the token is dropped.
- Free charging: a connector that starts waiting is authorized at once with ``free_token``, unless a
  held token claims it first.
- Valid: with an OCPP backend link wired (``backend``), the link decides (`AuthorizeToken`: local list,
  cache, the CSMS, the offline rules) and its status becomes the verdict; the ``allow`` list decides
  only when the link cannot answer (down, restarting, or no answer within ``backend_timeout_s``).
- Reserved: a connector that honours a reservation (OCPP ReserveNow, in its `ConnectorStatus`) only
  gets tokens the reservation admits (its idTag, or the parent idTag the link reported); another
  token goes to another connector, or is answered "NoConnector" when it named that one. The EVSE
  manager refuses such a token as well: this only keeps Auth from offering it.

A failed `AuthorizeSession` or `StopCharging` (refused, connector down) becomes a "NoConnector" verdict,
never a crash. Which connectors wait is learnt from the EVSE managers' `ConnectorStatus` and
`ChargingSessionEvent` vars, and asked for once at start.

Nothing is journaled here: after a restart a held token is forgotten (the user presents the card
again) and connector states are learnt afresh. The auth cache and local list live in the backend link.
"""

from __future__ import annotations

import time
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any, ClassVar

from charger.actors.charging import (
    AUTH,
    EVSE_MANAGER,
    TOKEN_READER,
    AuthorizeSession,
    ChargingSessionEvent,
    ConnectorStatus,
    GetConnectorStatus,
    PresentToken,
    StopCharging,
    TokenRead,
    TokenVerdict,
)
from charger.actors.ocpp_messages import BACKEND_LINK, AuthorizeToken
from charger.protocols.evse_events import TRANSACTION_STATES
from charger.protocols.ocpp_reservation import Reservation, admits

from charger.behaviour import Behaviour, Pending, Timer, handles
from charger.errors import CallError
from charger.interfaces import Requirement

__all__ = ["Auth"]

_WAITING = "WaitingForAuthentication"
_RUNNING = frozenset(state.value for state in TRANSACTION_STATES)
_SESSION_OVER = frozenset({"Idle", "Finished", "Disabled"})
_OUT_OF_SERVICE = frozenset({"Disabled", "Inoperative"})
_STOP_WAITING_EVENTS = frozenset({"Authorized", "TransactionStarted", "PluginTimeout", "SessionFinished", "Disabled"})
_SESSION_OVER_EVENTS = frozenset({"Deauthorized", "TransactionFinished", "SessionFinished", "PluginTimeout"})


@dataclass(slots=True)
class _Held:
    """A token presented before any plug-in (token first)."""

    token_id: str
    parent_id_tag: str | None
    connector: str | None
    timer: Timer


class Auth(Behaviour):
    description = "Validates tokens (allow list or free charging) and assigns them to connectors."
    provides = {"auth": AUTH}
    requires = {
        "evse": Requirement(interface=EVSE_MANAGER, min_connections=1, max_connections=64),
        "reader": Requirement(interface=TOKEN_READER, min_connections=0, max_connections=8),
        "backend": Requirement(
            interface=BACKEND_LINK,
            min_connections=0,
            max_connections=1,
            description="Optional: the OCPP backend link decides tokens; the allow list only when it cannot.",
        ),
    }
    config_schema: ClassVar = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "allow": {
                "type": "array",
                "items": {"type": "string", "minLength": 1},
                "default": [],
                "description": "Token ids accepted (compared case-insensitively).",
            },
            "free_charging": {"type": "boolean", "default": False},
            "free_token": {"type": "string", "minLength": 1, "default": "FREE"},
            "backend_timeout_s": {
                "type": "number",
                "exclusiveMinimum": 0,
                "default": 35,
                "description": "How long to wait for the backend link's answer (it may ask the CSMS).",
            },
            "connection_timeout_s": {
                "type": "number",
                "exclusiveMinimum": 0,
                "default": 60,
                "description": "How long a token presented before any plug-in is held for the next one.",
            },
        },
    }

    def init(self) -> Generator[Pending, Any, None]:
        self.allowed = {token.casefold() for token in self.config["allow"]}
        self.evses: list[str] = list(self.connections["evse"])
        self.status: dict[str, ConnectorStatus] = {}
        self.waiting: dict[str, float] = {}
        """Connector -> since when it waits for a token (Unix s); the smallest has waited longest."""
        self.busy: set[str] = set()
        """Connectors with an AuthorizeSession in flight: a stale var must not make them wait again."""
        self.assigned: dict[str, str] = {}
        """Connector -> token of its session, from the authorization until the session ends."""
        self.held: _Held | None = None
        for evse in self.evses:
            self.subscribe(evse, ConnectorStatus, ChargingSessionEvent)
        for reader in self.connections.get("reader", []):
            self.subscribe(reader, TokenRead)
        # Learn who already waits (after our restart). Sent after the subscriptions, so by the answer
        # each EVSE manager has them: nothing it publishes afterwards is missed.
        asked = [(evse, self.call(evse, GetConnectorStatus(), timeout=2.0)) for evse in self.evses]
        for evse, pending in asked:
            try:
                self._on_status((yield pending))
            except CallError as exc:
                self.log.info("no status from %s yet (%s); waiting for its vars", evse, exc)

    # --- what the EVSE managers publish ------------------------------------------------------------

    @handles(ConnectorStatus)
    def on_status(self, status: ConnectorStatus) -> None:
        if status.connector in self.evses:
            self._on_status(status)

    def _on_status(self, status: ConnectorStatus) -> None:
        c = status.connector
        self.status[c] = status
        if status.state in _SESSION_OVER:
            self.assigned.pop(c, None)
        if status.state == _WAITING:
            self._starts_waiting(c, time.time())
        else:
            self.waiting.pop(c, None)

    @handles(ChargingSessionEvent)
    def on_session_event(self, event: ChargingSessionEvent) -> None:
        c = event.connector
        if c not in self.evses:
            return
        if event.kind == "AuthRequired":
            self._starts_waiting(c, event.at)
        elif event.kind in _STOP_WAITING_EVENTS:
            self.waiting.pop(c, None)
        if event.kind in _SESSION_OVER_EVENTS:
            self.assigned.pop(c, None)
        elif event.kind in ("Authorized", "TransactionStarted") and event.token_id:
            self.assigned[c] = event.token_id  # also sessions started by others (e.g. a remote start)

    def _starts_waiting(self, c: str, since: float) -> None:
        if c in self.busy:
            return
        if c in self.waiting:
            self.waiting[c] = min(self.waiting[c], since)  # the event's own time beats our receive time
            return
        self.waiting[c] = since
        self.log.info("%s waits for authorization", c)
        self.run_task(self._serve_waiting(c))

    def _serve_waiting(self, c: str) -> Generator[Pending, Any, None]:
        held = self.held
        if (
            held is not None
            and held.connector in (None, c)
            and not self._reserved_against(c, held.token_id, held.parent_id_tag)
        ):
            self._release_held()
            verdict = yield from self._authorize(c, held.token_id, held.parent_id_tag)
        elif self.config["free_charging"] and not self._reserved_against(c, self.config["free_token"], None):
            verdict = yield from self._authorize(c, self.config["free_token"], None)
        else:
            return
        self.log.info("plug-in on %s: %s %s", c, verdict.status, verdict.detail)

    # --- tokens ------------------------------------------------------------------------------------

    @handles(PresentToken)
    def on_present(self, msg: PresentToken) -> Generator[Pending, Any, TokenVerdict]:
        return (yield from self._present(msg.token_id, msg.connector, msg.source))

    @handles(TokenRead)
    def on_token_read(self, msg: TokenRead) -> Generator[Pending, Any, None]:
        verdict = yield from self._present(msg.uid, None, msg.reader)
        self.log.info("card %s at %s: %s %s", msg.uid, msg.reader, verdict.status, verdict.detail)

    def _present(self, token: str, connector: str | None, source: str) -> Generator[Pending, Any, TokenVerdict]:
        if connector is not None and connector not in self.evses:
            return TokenVerdict(status="NoConnector", connector=connector, detail=f"{self.name} has no {connector}")
        running = self._running_with(token, connector)
        if running is not None:
            return (yield from self._stop(running, token))
        refused, parent = yield from self._refusal(token, source)
        if refused is not None:
            return refused
        out_of_service = self._out_of_service(connector)
        if out_of_service is None and connector is not None and self._reserved_against(connector, token, parent):
            out_of_service = f"{connector} is reserved for another idTag"
        if out_of_service is not None:
            return TokenVerdict(status="NoConnector", connector=connector, detail=out_of_service)
        target = self._longest_waiting(connector, token, parent)
        if target is None:
            return self._hold(token, parent, connector)
        return (yield from self._authorize(target, token, parent))

    def _refusal(self, token: str, source: str) -> Generator[Pending, Any, tuple[TokenVerdict | None, str | None]]:
        """(None, its parent idTag if known) when `token` may charge. With a backend link wired, its OCPP
        rules decide (local list, cache, the CSMS, the offline rules); the allow list decides only
        when the link cannot answer."""
        backends = self.connections.get("backend", [])
        if backends:
            try:
                ask = AuthorizeToken(id_tag=token)
                answer = yield self.call(backends[0], ask, timeout=self.config["backend_timeout_s"])
            except CallError as exc:
                self.log.warning(
                    "%s could not authorize token %s (%s): the allow list decides", backends[0], token, exc
                )
            else:
                if answer.status == "Accepted":
                    return None, answer.parent_id_tag
                self.log.info("token %s from %s: %s (decided by %s)", token, source, answer.status, answer.source)
                detail = f"{token}: {answer.status} ({answer.source})"
                return TokenVerdict(status=answer.status, connector=None, detail=detail), None
        if token.casefold() not in self.allowed:
            self.log.info("token %s from %s is not on the allow list", token, source)
            return TokenVerdict(status="Invalid", connector=None, detail=f"{token} is not on the allow list"), None
        return None, None

    def _running_with(self, token: str, connector: str | None) -> str | None:
        """The connector (among the named one, or all) whose session this token runs."""
        key = token.casefold()
        for c in [connector] if connector is not None else self.evses:
            status = self.status.get(c)
            running = self.assigned.get(c) or (status.token_id if status and status.state in _RUNNING else None)
            if running is not None and running.casefold() == key:
                return c
        return None

    def _out_of_service(self, connector: str | None) -> str | None:
        """Why the named connector cannot take a token now (holding one for it would only time out)."""
        status = self.status.get(connector) if connector is not None else None
        if status is not None and status.state in _OUT_OF_SERVICE:
            return f"{connector} is {status.state}"
        return None

    def _reserved_against(self, c: str, token: str, parent: str | None) -> bool:
        """Whether connector `c` honours reservations that this token may not use."""
        status, now = self.status.get(c), time.time()
        held = [r for r in (status.reservations if status else ()) if r.expires_at > now]
        return bool(held) and not any(
            admits(Reservation(r.reservation_id, 0, r.id_tag, r.expires_at, r.parent_id_tag), token, parent)
            for r in held
        )

    def _longest_waiting(self, connector: str | None, token: str, parent: str | None) -> str | None:
        free = {
            c: since
            for c, since in self.waiting.items()
            if c not in self.busy and not self._reserved_against(c, token, parent)
        }
        if connector is not None:
            return connector if connector in free else None
        return min(free, key=free.__getitem__, default=None)

    def _authorize(self, c: str, token: str, parent: str | None) -> Generator[Pending, Any, TokenVerdict]:
        since = self.waiting.pop(c, None)
        self.busy.add(c)
        try:
            yield self.call(c, AuthorizeSession(token_id=token, parent_id_tag=parent))
        except CallError as exc:
            if since is not None:
                self.waiting[c] = since  # it may still wait; its next var says whether it does
            self.log.warning("%s did not take token %s: %s", c, token, exc)
            return TokenVerdict(status="NoConnector", connector=c, detail=f"{c} refused the authorization: {exc}")
        finally:
            self.busy.discard(c)
        self.assigned[c] = token
        self.log.info("token %s authorized on %s", token, c)
        return TokenVerdict(status="Accepted", connector=c)

    def _stop(self, c: str, token: str) -> Generator[Pending, Any, TokenVerdict]:
        try:
            yield self.call(c, StopCharging(reason="Local"))
        except CallError as exc:
            self.log.warning("could not stop %s for token %s: %s", c, token, exc)
            return TokenVerdict(status="NoConnector", connector=c, detail=f"could not stop the session on {c}: {exc}")
        self.log.info("token %s presented again: stopped the session on %s", token, c)
        return TokenVerdict(status="Accepted", connector=c, detail="the session this token runs was stopped")

    def _hold(self, token: str, parent: str | None, connector: str | None) -> TokenVerdict:
        if self.held is not None:
            self.log.info("token %s replaces held token %s", token, self.held.token_id)
            self._release_held()
        timeout = self.config["connection_timeout_s"]
        timer = self.start_timer(timeout, lambda: self._expire(held))
        held = _Held(token_id=token, parent_id_tag=parent, connector=connector, timer=timer)
        self.held = held
        where = connector or "any connector"
        return TokenVerdict(
            status="Accepted", connector=connector, detail=f"waiting {timeout:g} s for a plug-in on {where}"
        )

    def _expire(self, held: _Held) -> None:
        if self.held is held:
            self.held = None
            self.log.info(
                "token %s dropped: no plug-in within %g s", held.token_id, self.config["connection_timeout_s"]
            )

    def _release_held(self) -> None:
        if self.held is not None:
            self.held.timer.cancel()
            self.held = None
