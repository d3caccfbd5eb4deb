"""The backend link's connection to the CSMS: `websockets` and the `ocpp` library's ChargePoint on the
actor's asyncio I/O thread. Everything here runs on that loop; decisions are the actor's.

`OcppLink` keeps one connection open: it connects with the security profile's transport (HTTP Basic
auth, TLS verified against the configured CA, a client certificate), checks that ``ocpp1.6`` was
agreed (OCPP-J 1.6 §3.2), and reconnects after a failure or a drop with the RetryBackOff* back-off.
`LinkEvents` tells the actor what happened; `call` sends a charge-point-initiated CALL and fails fast
with `ConnectionError` when the socket drops while the answer is awaited (the library would wait its
whole response timeout).

`StationChargePoint` corrects the library where it deviates from OCPP-J 1.6 (shared/reference/ocpp.md
§2): incoming frames are classified by `charger.protocols.ocpp_frames` (garbage never crashes the loop;
a CALL with a readable id is always answered), NotImplemented and NotSupported are used as the
specification means them, schema errors are answered with the 1.6J spellings, and CSMS CALLs are
served in tasks (one at a time, in order) so that a handler never blocks the answers to our own CALLs.

Nothing secret reaches a log: frames are logged through `redact`, and the `websockets` logger is held
at INFO so that its DEBUG dump of the handshake headers (with the Basic credentials) never happens.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import logging
import random
import ssl
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit

from charger.protocols.ocpp_frames import (
    ACTIONS_16,
    ErrorCode,
    IncomingAnswer,
    IncomingCall,
    MustRefuse,
    call_error_text,
    classify,
    redact,
    wire_error_code,
)
from charger.protocols.ocpp_link_rules import BackoffPolicy, basic_auth_header, reconnect_delay
from ocpp.exceptions import OCPPError
from ocpp.messages import Call, CallError, CallResult, validate_payload
from ocpp.v16 import ChargePoint
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.typing import Subprotocol

__all__ = [
    "CsmsAnswer",
    "CsmsError",
    "CsmsReply",
    "InvalidMessage",
    "LinkEvents",
    "LinkSettings",
    "OcppLink",
    "StationChargePoint",
]

OCPP16 = Subprotocol("ocpp1.6")
_ANSWER_TIMEOUT_S = 25.0  # the actor's longest handler calls EVSE managers with 5 s timeouts
_CLOSE_TIMEOUT_S = 3.0


class CsmsError(Exception):
    """The CSMS answered our CALL with a CALLERROR, or with a CALLRESULT that breaks the schema: either
    way a "failure to process" (OCPP 1.6 §3.7.1, J errata §3.3)."""

    def __init__(self, code: str, description: str) -> None:
        super().__init__(f"{code}: {description}")
        self.code, self.description = code, description


class InvalidMessage(ValueError):
    """A CALL of ours that breaks the 1.6 schema (a bug, or a value the schema cannot carry): not sent."""


@dataclass(frozen=True, slots=True)
class CsmsAnswer:
    """The actor's answer to a CSMS CALL: a CALLRESULT payload or a CALLERROR, and work to start once the
    answer is on the wire (OCPP wants "response first", e.g. for TriggerMessage and Reset)."""

    payload: dict[str, Any] | None = None
    error: ErrorCode | None = None
    description: str = ""
    after: Callable[[], Any] | None = field(default=None, compare=False)


CsmsReply = Callable[[CsmsAnswer], None]
"""How the actor hands its answer to a CSMS CALL back to the loop (thread-safe)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class LinkSettings:
    """How to connect; replaced as a whole when configuration keys change (used from the next connection)."""

    url: str
    """The endpoint with the charge point id already appended."""
    charge_point_id: str
    security_profile: int
    password: bytes | None = field(default=None, repr=False)
    ca_file: str | None = None
    extra_ca_pem: str = ""
    """Root certificates the CSMS installed (InstallCertificate), trusted beside `ca_file`."""
    client_cert_file: str | None = None
    client_key_file: str | None = None
    ping_interval_s: float | None = 30.0
    open_timeout_s: float = 10.0
    response_timeout_s: float = 30.0
    backoff: BackoffPolicy = field(default_factory=BackoffPolicy)
    supported_actions: frozenset[str] = frozenset()
    """CSMS-initiated actions the station serves; other 1.6 actions are answered NotSupported."""

    def ssl_context(self) -> ssl.SSLContext | None:
        if urlsplit(self.url).scheme != "wss":
            return None
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=self.ca_file)
        context.minimum_version = ssl.TLSVersion.TLSv1_2  # the whitepaper: TLS 1.2 or newer
        if self.extra_ca_pem:
            context.load_verify_locations(cadata=self.extra_ca_pem)
        if self.security_profile == 3 and self.client_cert_file:
            context.load_cert_chain(self.client_cert_file, self.client_key_file)
        return context

    def headers(self) -> dict[str, str]:
        if self.security_profile in (1, 2) and self.password is not None:
            return {"Authorization": basic_auth_header(self.charge_point_id, self.password)}
        return {}


class LinkEvents(Protocol):
    """What the link reports, called on the loop thread (implementations hand it to the actor's thread)."""

    def connected(self, connection: int) -> None: ...

    def disconnected(self, connection: int, reason: str) -> None: ...

    def connect_failed(self, reason: str, retry_in_s: float) -> None: ...

    def csms_call(self, connection: int, call: IncomingCall, reply: CsmsReply) -> None: ...

    def answered(self, after: Callable[[], Any]) -> None: ...


class StationChargePoint(ChargePoint):  # type: ignore[misc]  # ocpp ships no type information
    """One connection's OCPP endpoint, with the wire corrections described in the module docstring."""

    def __init__(
        self,
        websocket: ClientConnection,
        settings: LinkSettings,
        serve: Callable[[IncomingCall], Awaitable[CsmsAnswer]],
        answered: Callable[[Callable[[], Any]], None],
        log: logging.Logger,
    ) -> None:
        super().__init__(settings.charge_point_id, websocket, response_timeout=settings.response_timeout_s, logger=log)
        self.route_map: dict[str, dict[str, Any]] = {}  # routing is ours: `route_message` below
        self._websocket = websocket
        self._supported = settings.supported_actions
        self._serve = serve
        self._answered = answered
        self._log = log
        self._in_order = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Read frames until the connection closes (raises `ConnectionClosed`)."""
        while True:
            frame = await self._connection.recv()
            self._log.debug("%s < %s", self.id, redact(frame))
            await self.route_message(frame)

    async def _send(self, message: str) -> None:
        self._log.debug("%s > %s", self.id, redact(message))
        await self._connection.send(message)

    def cancel_tasks(self) -> None:
        for task in self._tasks:
            task.cancel()

    async def route_message(self, raw_msg: str | bytes) -> None:
        incoming = classify(raw_msg)
        if isinstance(incoming, IncomingAnswer):
            message = incoming.message
            if incoming.message_type == CallResult.message_type_id:
                self._response_queue.put_nowait(CallResult(message[1], message[2]))
            else:
                self._response_queue.put_nowait(CallError(*message[1:]))
        elif isinstance(incoming, MustRefuse):
            self._log.warning("%s: refused a malformed CALL %s: %s", self.id, incoming.unique_id, incoming.description)
            with contextlib.suppress(ConnectionClosed):
                await self._send(call_error_text(incoming.unique_id, incoming.code, incoming.description))
        elif isinstance(incoming, IncomingCall):
            task = asyncio.ensure_future(self._answer_in_order(incoming))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        else:
            self._log.warning("%s: dropped a frame that cannot be answered (%s)", self.id, incoming.reason)

    async def _answer_in_order(self, call: IncomingCall) -> None:
        async with self._in_order:
            text, after = await self._answer(call)
            try:
                await self._send(text)
            except ConnectionClosed:
                return
            if after is not None:
                self._answered(after)

    async def _answer(self, call: IncomingCall) -> tuple[str, Callable[[], Any] | None]:
        refusal = await self._refusal(call)
        if refusal is not None:
            return refusal, None
        try:
            answer = await asyncio.wait_for(self._serve(call), _ANSWER_TIMEOUT_S)
        except TimeoutError:
            return call_error_text(call.unique_id, ErrorCode.INTERNAL_ERROR, "the station did not answer in time"), None
        if answer.error is not None:
            return call_error_text(call.unique_id, answer.error, answer.description), None
        payload = answer.payload or {}
        try:
            await validate_payload(CallResult(call.unique_id, copy.deepcopy(payload), action=call.action), "1.6")
        except OCPPError as exc:  # our own answer breaks the schema: a bug, never sent as if it were fine
            self._log.error("%s: the answer to %s breaks the schema: %s", self.id, call.action, exc)
            text = call_error_text(call.unique_id, ErrorCode.INTERNAL_ERROR, "the station's answer was invalid")
            return text, None
        return json.dumps([CallResult.message_type_id, call.unique_id, payload], separators=(",", ":")), answer.after

    async def _refusal(self, call: IncomingCall) -> str | None:
        """The CALLERROR for a CALL the station cannot take (unknown, unsupported, against the schema)."""
        if call.action not in ACTIONS_16:
            return call_error_text(
                call.unique_id, ErrorCode.NOT_IMPLEMENTED, "Requested Action is not known by receiver"
            )
        if call.action not in self._supported:
            description = "Requested Action is recognized but not supported by the receiver"
            return call_error_text(call.unique_id, ErrorCode.NOT_SUPPORTED, description)
        try:  # validation may rewrite numbers as Decimal: keep the payload the actor gets as received
            await validate_payload(Call(call.unique_id, call.action, copy.deepcopy(call.payload)), "1.6")
        except OCPPError as exc:
            return call_error_text(call.unique_id, wire_error_code(exc.code), exc.description, _cause(exc))
        return None

    async def call_payload(self, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Send a CALL with exactly this payload (camelCase) and return the CALLRESULT payload.

        Raises `CsmsError` for a CALLERROR or an invalid answer, `TimeoutError` without an answer."""
        call = Call(str(uuid.uuid4()), action, payload)
        try:
            await validate_payload(call, "1.6")
        except OCPPError as exc:  # never sent: the CSMS would only refuse it
            raise InvalidMessage(f"{action} breaks the 1.6 schema: {exc.description} {_cause(exc)}") from None
        async with self._call_lock:  # one outstanding CALL per direction (OCPP-J 1.6 §4.1.1)
            await self._send(call.to_json())
            response = await self._get_specific_response(call.unique_id, self._response_timeout)
        if response.message_type_id == CallError.message_type_id:
            raise CsmsError(str(response.error_code), str(response.error_description))
        response.action = action
        try:
            await validate_payload(response, "1.6")
        except OCPPError as exc:
            raise CsmsError(exc.code, f"the CSMS's answer to {action} breaks the schema: {exc.description}") from None
        result: dict[str, Any] = response.payload
        return result


def _cause(exc: OCPPError) -> dict[str, Any]:
    details = exc.details if isinstance(exc.details, dict) else {}
    cause = details.get("cause")
    return {"cause": str(cause)[:500]} if cause is not None else {}


def _describe(exc: BaseException) -> str:
    """Why a connection failed, without anything from the request (its headers hold the credentials)."""
    if isinstance(exc, InvalidStatus):
        return f"the CSMS refused the upgrade with HTTP {exc.response.status_code}"
    if isinstance(exc, ssl.SSLError):
        return f"TLS: {exc.reason or exc}"
    return f"{type(exc).__name__}: {exc}"


class OcppLink:
    """Keeps one OCPP 1.6J connection to the CSMS open; see the module docstring."""

    def __init__(self, settings: LinkSettings, events: LinkEvents, log: logging.Logger) -> None:
        self._settings = settings
        self._events = events
        self._log = log
        self._ws_log = logging.getLogger(f"{log.name}.websocket")
        self._ws_log.setLevel(logging.INFO)  # never the DEBUG header dump (Basic credentials)
        self._cp: StationChargePoint | None = None
        self._ws: ClientConnection | None = None
        self._connection = 0
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    # -- control (loop thread) -------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._keep_connected())

    def update(self, settings: LinkSettings) -> None:
        self._settings = settings

    async def close(self) -> None:
        """Stop for good: close the connection and end the loop task."""
        self._stopping = True
        ws, task = self._ws, self._task
        if ws is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(1001, "charge point stopping"), _CLOSE_TIMEOUT_S)
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def call(self, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        """A charge-point-initiated CALL on the open connection; `ConnectionError` when there is none or
        it drops before the answer."""
        cp, ws = self._cp, self._ws
        if cp is None or ws is None:
            raise ConnectionError("not connected to the CSMS")
        pending = asyncio.ensure_future(cp.call_payload(action, payload))
        closed = asyncio.ensure_future(ws.wait_closed())
        try:
            done, _ = await asyncio.wait({pending, closed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            closed.cancel()
        if pending in done:
            try:
                return pending.result()
            except ConnectionClosed as exc:  # it closed as we sent: the same as closing while we wait
                raise ConnectionError(f"the connection closed while sending {action}") from exc
        pending.cancel()
        await asyncio.gather(pending, return_exceptions=True)  # lets call_payload release the CALL lock
        raise ConnectionError(f"the connection closed while waiting for the answer to {action}")

    # -- the connection loop ---------------------------------------------------------------------

    async def _keep_connected(self) -> None:
        failures = 0
        while not self._stopping:
            settings = self._settings
            try:
                ws = await self._open(settings)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - any failure to connect is retried after the back-off
                delay = reconnect_delay(failures, settings.backoff, random.random())
                failures += 1
                self._events.connect_failed(_describe(exc), delay)
                await asyncio.sleep(delay)
                continue
            failures = 0
            reason = await self._serve(ws, settings)
            delay = reconnect_delay(0, settings.backoff, random.random())
            self._events.disconnected(self._connection, reason)
            if not self._stopping:
                await asyncio.sleep(delay)

    async def _open(self, settings: LinkSettings) -> ClientConnection:
        ws = await connect(
            settings.url,
            subprotocols=[OCPP16],
            additional_headers=settings.headers(),
            ssl=settings.ssl_context(),
            ping_interval=settings.ping_interval_s,
            open_timeout=settings.open_timeout_s,
            proxy=None,
            compression=None,
            logger=self._ws_log,
        )
        if ws.subprotocol != OCPP16:
            await ws.close(1002, "ocpp1.6 subprotocol required")
            raise ConnectionError("the CSMS agreed to no ocpp1.6 subprotocol")
        return ws

    async def _serve(self, ws: ClientConnection, settings: LinkSettings) -> str:
        self._connection += 1
        connection = self._connection
        cp = StationChargePoint(
            ws, settings, lambda call: self._ask_actor(connection, call), self._events.answered, self._log
        )
        self._cp, self._ws = cp, ws
        self._events.connected(connection)
        try:
            await cp.start()
        except ConnectionClosed as exc:
            return f"connection closed ({exc.rcvd.code if exc.rcvd else 'no close frame'})"
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - a bug in routing must not end the link: reconnect
            self._log.exception("backend link: the connection failed")
            with contextlib.suppress(Exception):
                await ws.close(1011, "internal error")
            return f"internal error: {type(exc).__name__}"
        finally:
            self._cp = self._ws = None
            cp.cancel_tasks()
        return "connection ended"

    async def _ask_actor(self, connection: int, call: IncomingCall) -> CsmsAnswer:
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[CsmsAnswer] = loop.create_future()

        def settle(result: CsmsAnswer) -> None:
            if not answer.done():
                answer.set_result(result)

        def reply(result: CsmsAnswer) -> None:  # any thread
            loop.call_soon_threadsafe(settle, result)

        self._events.csms_call(connection, call, reply)
        return await answer
