"""The simulated OCPP 1.6J CSMS: a `websockets` server on loopback, one `CentralSystemLink` per charge point.

Charge points connect to ``ws[s]://HOST:PORT/<chargePointId>`` offering subprotocol ``ocpp1.6``; one that
offers no ``ocpp1.6`` gets a handshake without a subprotocol and is closed at once (OCPP-J 1.6 §3.2).
Everything the CSMS does is in `log` (a `FrameLog`), in order. A test drives it with:

- `behaviour` (replace it at any time) and `faults` (CALLERRORs or silence for the next requests);
- `call` (a typed `ocpp.v16.call` payload through the library), `call_action` (an action name and the
  exact wire payload) and `send_raw` (any text at all, for fuzzing);
- `go_offline` / `go_online`: an outage either refuses TCP connections (the listening socket is closed) or
  answers every upgrade with HTTP 503; open connections are closed with 1001 either way.

All methods run on the loop that called `start`; `charger.sim.csms_thread` runs one on a thread for
synchronous tests and actors.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import uuid
from collections.abc import Callable, Mapping, Sequence
from http import HTTPStatus
from types import TracebackType
from typing import Any, TextIO
from urllib.parse import unquote, urlsplit

from charger.sim.csms_behaviour import CsmsBehaviour, FaultPlan, TransactionIds
from charger.sim.csms_link import CentralSystemLink, RecordingConnection
from charger.sim.csms_record import (
    CALL,
    CALLERROR,
    CALLRESULT,
    CallAnswer,
    Direction,
    EventKind,
    Frame,
    FrameLog,
)
from charger.sim.csms_security import CsmsSecurity, Refusal, check_upgrade
from ocpp.exceptions import OCPPError
from ocpp.messages import Call, CallResult, validate_payload
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.typing import Subprotocol

__all__ = ["OCPP16", "CsmsSimulator", "NotConnected", "OutageMode", "answer_matcher"]

OCPP16 = Subprotocol("ocpp1.6")


class OutageMode(enum.Enum):
    """How an offline CSMS refuses charge points."""

    CONNECTION_REFUSED = "tcp"
    """Nothing listens on the port: connecting fails at once."""
    SERVICE_UNAVAILABLE = "http"
    """The port answers every upgrade with HTTP 503."""


class NotConnected(LookupError):
    """The charge point has no open connection to the CSMS."""


class CsmsSimulator:
    """An OCPP 1.6J central system for tests and SIL runs (async context manager)."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        security: CsmsSecurity | None = None,
        behaviour: CsmsBehaviour | None = None,
        first_transaction_id: int = 1,
        record: TextIO | None = None,
        response_timeout: float = 30.0,
    ) -> None:
        self.host = host
        self.port = port
        """The listening port; filled in by `start` when 0 was asked for."""
        self.security = security or CsmsSecurity()
        self.behaviour = behaviour or CsmsBehaviour()
        """Read at every request: replace it to change the answers from the next request on."""
        self.faults = FaultPlan()
        self.log = FrameLog(record)
        self.response_timeout = response_timeout
        self._transaction_ids = TransactionIds(first_transaction_id)
        self._links: dict[str, CentralSystemLink] = {}
        self._server: Server | None = None
        self._online = True
        self._outage: OutageMode | None = None
        self._reopen: asyncio.Task[None] | None = None

    # -- lifecycle --------------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """Endpoint to which a charge point appends ``/<chargePointId>``."""
        return f"{self.security.scheme}://{self.host}:{self.port}"

    @property
    def online(self) -> bool:
        return self._online

    async def start(self) -> None:
        await self._listen()
        self.log.add_event("", EventKind.LISTENING, url=self.url)

    async def stop(self) -> None:
        if self._reopen is not None:
            self._reopen.cancel()
            await asyncio.gather(self._reopen, return_exceptions=True)
            self._reopen = None
        await self._close_server()

    async def __aenter__(self) -> CsmsSimulator:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def _listen(self) -> None:
        self._server = await serve(
            self._serve_link,
            self.host,
            self.port,
            ssl=self.security.ssl_context(),
            select_subprotocol=_select_ocpp16,
            process_request=self._check_upgrade,
        )
        if self.port == 0:
            self.port = self._server.sockets[0].getsockname()[1]

    async def _close_server(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
            await server.wait_closed()

    # -- outages ----------------------------------------------------------------------------------------

    async def go_offline(
        self, *, mode: OutageMode = OutageMode.CONNECTION_REFUSED, duration: float | None = None
    ) -> None:
        """Close every connection and refuse new ones, until `go_online` or for `duration` seconds."""
        self._cancel_reopen()
        self._online, self._outage = False, mode
        self.log.add_event("", EventKind.OFFLINE, refusal=mode.value)
        if mode is OutageMode.CONNECTION_REFUSED:
            await self._close_server()
        else:
            links = list(self._links.values())
            await asyncio.gather(*(link.connection.websocket.close(1001, "CSMS offline") for link in links))
            await asyncio.gather(*(link.connection.websocket.wait_closed() for link in links))
        if duration is not None:
            self._reopen = asyncio.create_task(self._online_after(duration))

    async def go_online(self) -> None:
        self._cancel_reopen()
        await self._come_back()

    async def _online_after(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
        self._reopen = None
        await self._come_back()

    async def _come_back(self) -> None:
        if self._online:
            return
        if self._server is None:
            await self._listen()
        self._online, self._outage = True, None
        self.log.add_event("", EventKind.ONLINE)

    def _cancel_reopen(self) -> None:
        if self._reopen is not None and self._reopen is not asyncio.current_task():
            self._reopen.cancel()
            self._reopen = None

    # -- connections ------------------------------------------------------------------------------------

    def connected(self) -> list[str]:
        """Ids of the charge points connected right now."""
        return sorted(self._links)

    async def wait_connected(self, cp_id: str, timeout: float = 10.0) -> None:
        after = self.log.next_seq
        if cp_id not in self._links:
            await self.log.wait_for_event(
                EventKind.OPEN, after=after, where=lambda e: e.cp_id == cp_id, timeout=timeout
            )

    async def disconnect(self, cp_id: str, code: int = 1000, reason: str = "") -> None:
        """Close one charge point's connection from the CSMS side."""
        link = self._link(cp_id)
        await link.connection.websocket.close(code, reason)

    def _check_upgrade(self, connection: ServerConnection, request: Request) -> Response | None:
        cp_id = _cp_id_from_path(request.path)
        refusal: Refusal | None
        if not self._online:
            refusal = Refusal(status=HTTPStatus.SERVICE_UNAVAILABLE, reason="CSMS offline")
        else:
            peer_certificate = connection.transport.get_extra_info("peercert")
            refusal = check_upgrade(self.security, cp_id, request.headers.get("Authorization"), peer_certificate)
        if refusal is None:
            return None
        self.log.add_event(cp_id, EventKind.REFUSED, status=int(refusal.status), reason=refusal.reason)
        response = connection.respond(refusal.status, refusal.reason + "\n")
        if refusal.status is HTTPStatus.UNAUTHORIZED:
            response.headers["WWW-Authenticate"] = 'Basic realm="OCPP", charset="UTF-8"'
        return response

    async def _serve_link(self, websocket: ServerConnection) -> None:
        assert websocket.request is not None  # set once the handshake has completed
        cp_id = _cp_id_from_path(websocket.request.path)
        if websocket.subprotocol != OCPP16:
            self.log.add_event(cp_id, EventKind.REFUSED, status=101, reason="no ocpp1.6 subprotocol offered")
            await websocket.close(1002, "ocpp1.6 subprotocol required")
            return
        previous = self._links.get(cp_id)
        if previous is not None:  # the charge point reconnected before its old connection was seen to drop
            await previous.connection.websocket.close(1000, "replaced by a newer connection")
        link = CentralSystemLink(
            RecordingConnection(websocket, cp_id, self.log),
            behaviour=lambda: self.behaviour,
            transaction_ids=self._transaction_ids,
            faults=self.faults,
            log=self.log,
            response_timeout=self.response_timeout,
        )
        self._links[cp_id] = link
        self.log.add_event(cp_id, EventKind.OPEN, protocol=websocket.subprotocol)
        try:
            await link.start()
        except ConnectionClosed:
            pass
        finally:
            if self._links.get(cp_id) is link:
                del self._links[cp_id]
            self.log.add_event(cp_id, EventKind.CLOSE, code=websocket.close_code, reason=websocket.close_reason)

    def _link(self, cp_id: str) -> CentralSystemLink:
        try:
            return self._links[cp_id]
        except KeyError:
            raise NotConnected(f"charge point {cp_id!r} is not connected") from None

    # -- CSMS-initiated messages ------------------------------------------------------------------------

    async def call(self, cp_id: str, payload: Any, *, timeout: float | None = None) -> Any:
        """Send a typed `ocpp.v16.call` payload; return the library's `call_result` dataclass.

        A CALLERROR raises the matching `OCPPError`; an answer that fails the schema raises too and is
        logged as an INVALID event. Fails fast with `ConnectionError` if the connection drops."""
        link = self._link(cp_id)
        unique_id = str(uuid.uuid4())
        request = link.call(payload, suppress=False, unique_id=unique_id)
        try:
            return await self._unless_closed(link, request, timeout)
        except OCPPError as exc:
            answer = self.log.find(answer_matcher(cp_id, unique_id))
            if answer is not None and answer.message_type == CALLRESULT:
                self._invalid_answer(cp_id, type(payload).__name__, exc)
            raise

    async def call_action(
        self,
        cp_id: str,
        action: str,
        payload: Mapping[str, Any],
        *,
        timeout: float | None = None,
        validate: bool = True,
    ) -> CallAnswer:
        """Send ``[2, id, action, payload]`` with the payload exactly as given and return the answer.

        With `validate`, a request that breaks the 1.6 schema raises the library's `OCPPError` before
        anything is sent, and an answer that breaks it is logged as an INVALID event (and still returned)."""
        link = self._link(cp_id)
        unique_id = str(uuid.uuid4())
        if validate:
            await validate_payload(Call(unique_id, action, json.loads(json.dumps(payload))), "1.6")
        text = json.dumps([CALL, unique_id, action, payload], separators=(",", ":"))
        async with link._call_lock:  # one outstanding CALL per direction (OCPP-J 1.6 §4.1.1), shared with `call`
            link.raw_call_ids.add(unique_id)
            after = self.log.next_seq
            await link.connection.send(text)
            frame = await self._unless_closed(
                link,
                self.log.wait_for(
                    answer_matcher(cp_id, unique_id), after=after, timeout=timeout or self.response_timeout
                ),
                None,
            )
        answer = CallAnswer.from_frame(action, frame)
        if validate and answer.ok:
            result = CallResult(unique_id, json.loads(json.dumps(answer.payload)), action=action)
            try:
                await validate_payload(result, "1.6")
            except OCPPError as exc:
                self._invalid_answer(cp_id, action, exc)
        return answer

    async def send_raw(self, cp_id: str, text: str) -> Frame:
        """Send any text as one WebSocket frame. If it is a CALL, its answer is only logged: find it with
        `log.wait_for(answer_matcher(cp_id, unique_id))`."""
        link = self._link(cp_id)
        with contextlib.suppress(ValueError, TypeError, IndexError, KeyError, RecursionError):  # any text at all
            message = json.loads(text)
            if message[0] == CALL and isinstance(message[1], str):
                link.raw_call_ids.add(message[1])
        after = self.log.next_seq
        await link.connection.send(text)
        frame = self.log.find(lambda f: f.direction is Direction.SENT and f.text == text, after=after)
        assert frame is not None
        return frame

    async def _unless_closed(self, link: CentralSystemLink, work: Any, timeout: float | None) -> Any:
        """Await `work`, failing fast when the link's socket closes (the library would wait its whole
        response timeout)."""
        pending = asyncio.ensure_future(asyncio.wait_for(work, timeout) if timeout else work)
        closed = asyncio.ensure_future(link.connection.websocket.wait_closed())
        try:
            done, _ = await asyncio.wait({pending, closed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            closed.cancel()
        if pending in done:
            return pending.result()
        pending.cancel()
        await asyncio.gather(pending, return_exceptions=True)
        raise ConnectionError(f"connection of {link.id!r} closed while waiting for its answer")

    def _invalid_answer(self, cp_id: str, action: str, exc: OCPPError) -> None:
        cause = exc.details.get("cause", exc.description) if isinstance(exc.details, dict) else exc.description
        self.log.add_event(cp_id, EventKind.INVALID, method=action, code=exc.code, error=str(cause), outbound=False)


def answer_matcher(cp_id: str, unique_id: str) -> Callable[[Frame], bool]:
    """Matches the CALLRESULT or CALLERROR a charge point sent for the CALL `unique_id`."""

    def matches(frame: Frame) -> bool:
        return (
            frame.cp_id == cp_id
            and frame.direction is Direction.RECEIVED
            and frame.unique_id == unique_id
            and frame.message_type in (CALLRESULT, CALLERROR)
        )

    return matches


def _select_ocpp16(connection: ServerConnection, offered: Sequence[Subprotocol]) -> Subprotocol | None:
    # None completes the handshake without a subprotocol; the handler then closes (OCPP-J 1.6 §3.2).
    return OCPP16 if OCPP16 in offered else None


def _cp_id_from_path(path: str) -> str:
    return unquote(urlsplit(path).path.rstrip("/").rpartition("/")[2])
