"""Control API: JSON-RPC 2.0 over a local websocket, for `python -m charger.ctl`, displays and tests.

The websocket server runs on this actor's I/O thread; every request is handled on the actor's own
thread, where it may call other actors by name. Events (supervision events from the kernel) are
streamed to clients that called ``events.subscribe``, as ``event`` notifications.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import time
from collections.abc import Callable, Generator
from typing import Any, ClassVar

import jsonschema
import websockets
from charger.actors.charging import (
    AUTH,
    CARD_READER_SIM,
    ENERGY_MANAGER,
    EVSE_MANAGER,
    SIL_RIG,
    CarCommand,
    ChargingSessionEvent,
    ConnectorStatus,
    DescribeRig,
    GetConnectorStatus,
    GetRigState,
    GetSessionHistory,
    GrantLimitLease,
    InjectSimFault,
    PauseCharging,
    PlugCar,
    PresentCard,
    PresentToken,
    ResumeCharging,
    SessionCompleted,
    SetAvailability,
    StopCharging,
    UnlockConnectorNow,
    UnplugCar,
)
from charger.protocols import jsonrpc
from websockets.asyncio.server import Server, ServerConnection, serve

from charger.behaviour import Behaviour, Pending, handles
from charger.errors import CallError
from charger.interfaces import Requirement
from charger.journal import write_file_atomically
from charger.kernel import KERNEL_NAME
from charger.lifecycle import GetSystemStatus, SystemStatus

__all__ = ["ControlApi", "RpcError"]

_EVENT_POLL_S = 0.5
_FAULTS = ["rcd", "meter_offline", "lock_failure", "pilot_error_e", "diode_failure"]
_CONNECTOR = {
    "connector": {
        "type": ["string", "integer"],
        "description": "EVSE manager name, or its 1-based position in the evse connection",
    }
}


class RpcError(Exception):
    """Raise from a method to answer with this JSON-RPC error instead of a result."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code, self.message, self.data = code, message, data


Method = Callable[["ControlApi", dict[str, Any]], Any]
_METHODS: dict[str, tuple[Method, dict[str, Any]]] = {}


def rpc(name: str, params: dict[str, Any] | None = None) -> Callable[[Method], Method]:
    """Register a JSON-RPC method; `params` is the JSON Schema its params object must match."""
    schema = {"type": "object", "additionalProperties": False, "properties": {}, **(params or {})}

    def register(fn: Method) -> Method:
        _METHODS[name] = (fn, schema)
        return fn

    return register


class ControlApi(Behaviour):
    """The ``rig`` connections simulate the ``evse`` connections' hardware in order: a rig that simulates
    k connectors covers the next k EVSEs."""

    description = "JSON-RPC 2.0 over a local websocket: status, event stream and commands into the station."
    requires = {
        "evse": Requirement(interface=EVSE_MANAGER, min_connections=0, max_connections=64, remote=True),
        "rig": Requirement(interface=SIL_RIG, min_connections=0, max_connections=64, remote=True),
        "auth": Requirement(interface=AUTH, min_connections=0, max_connections=1, remote=True),
        "energy": Requirement(interface=ENERGY_MANAGER, min_connections=0, max_connections=1, remote=True),
        "card_reader": Requirement(interface=CARD_READER_SIM, min_connections=0, max_connections=1),
    }
    config_schema: ClassVar = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "host": {"type": "string", "default": "127.0.0.1", "description": "Interface to listen on."},
            "port": {"type": "integer", "minimum": 0, "maximum": 65535, "default": 8765, "description": "0: any."},
            "port_file": {
                "type": "string",
                "description": "Write the port actually bound here (relative: under the state dir).",
            },
        },
    }

    def init(self) -> Generator[Pending, Any, None]:
        self._clients: dict[int, ServerConnection] = {}
        self._streams: set[int] = set()
        self._server: Server | None = None
        status = yield self.call(KERNEL_NAME, GetSystemStatus(), timeout=5.0)
        self._events_seen = status.events_total  # stream what happens from now on
        self.port = yield self.run_async(self._listen())
        if "port_file" in self.config:
            path = os.path.join(self.state_dir, self.config["port_file"])  # relative: under the state dir
            write_file_atomically(path, str(self.port))
        self.start_timer(_EVENT_POLL_S, self._poll_events, repeat=True)
        self.evses: list[str] = list(self.connections.get("evse", []))
        self.rigs: list[str] = list(self.connections.get("rig", []))
        self.rig_slots: list[tuple[str, int]] | None = None
        for evse in self.evses:
            self.subscribe(evse, ChargingSessionEvent, SessionCompleted)

    def terminate(self, reason: str) -> None:
        if self._server is not None:
            self._rt.io().loop.call_soon_threadsafe(self._server.close)

    # --- websocket side (I/O thread) -----------------------------------------------------------
    async def _listen(self) -> int:
        self._server = await serve(
            self._connection, self.config["host"], self.config["port"], max_size=jsonrpc.MAX_REQUEST_BYTES
        )
        return int(next(iter(self._server.sockets)).getsockname()[1])

    async def _connection(self, ws: ServerConnection) -> None:
        client = id(ws)
        self.post(lambda: self._clients.__setitem__(client, ws))()
        try:
            async for frame in ws:
                self.post(functools.partial(self._on_frame, client, frame))()
        except websockets.ConnectionClosed:
            pass
        finally:
            self.post(lambda: self._forget(client))()

    # --- requests (actor thread) ---------------------------------------------------------------
    def _forget(self, client: int) -> None:
        self._clients.pop(client, None)
        self._streams.discard(client)

    def _on_frame(self, client: int, frame: str | bytes) -> None:
        items, is_batch = jsonrpc.parse(frame)
        self.run_task(self._answer(client, items, is_batch))

    def _answer(self, client: int, items: list[Any], is_batch: bool) -> Generator[Pending, Any, None]:
        responses = []
        for item in items:
            if isinstance(item, dict):  # already an error response
                responses.append(item)
                continue
            response = yield from self._invoke(client, item)
            if not item.is_notification:
                responses.append(response)
        if responses:
            self._send(client, responses if is_batch else responses[0])

    def _invoke(self, client: int, request: jsonrpc.Request) -> Generator[Pending, Any, dict[str, Any]]:
        entry = _METHODS.get(request.method)
        if entry is None:
            return jsonrpc.error(request.id, jsonrpc.METHOD_NOT_FOUND, f"no method {request.method!r}")
        method, schema = entry
        if not isinstance(request.params, dict):
            return jsonrpc.error(request.id, jsonrpc.INVALID_PARAMS, "params must be an object")
        problems = [e.message for e in jsonschema.Draft202012Validator(schema).iter_errors(request.params)]
        problems += _wider_than_64_bits(request.params)
        if problems:
            return jsonrpc.error(request.id, jsonrpc.INVALID_PARAMS, "; ".join(problems))
        self._caller = client
        try:
            value = method(self, request.params)
            if isinstance(value, Generator):
                value = yield from value
        except RpcError as exc:
            return jsonrpc.error(request.id, exc.code, exc.message, exc.data)
        except CallError as exc:
            return jsonrpc.error(request.id, jsonrpc.APPLICATION_ERROR, str(exc), {"code": exc.code})
        return jsonrpc.result(request.id, value)

    def _send(self, client: int, message: Any) -> None:
        ws = self._clients.get(client)
        if ws is None:
            return
        self.run_async(ws.send(json.dumps(message))).then(
            lambda _: None, lambda exc: self.log.debug("client %s gone: %s", client, exc)
        )

    # --- events ---------------------------------------------------------------------------------
    def _poll_events(self) -> Generator[Pending, Any, None]:
        try:
            status = yield self.call(KERNEL_NAME, GetSystemStatus(), timeout=2.0)
        except CallError:
            return
        assert isinstance(status, SystemStatus)
        fresh = min(status.events_total - self._events_seen, len(status.events))
        self._events_seen = status.events_total
        for text in status.events[len(status.events) - fresh :] if fresh > 0 else ():
            for client in self._streams:
                self._send(client, jsonrpc.notification("event", {"text": text}))

    @handles(ChargingSessionEvent, SessionCompleted)
    def on_session_news(self, news: ChargingSessionEvent | SessionCompleted) -> None:
        method = "session_event" if isinstance(news, ChargingSessionEvent) else "session_completed"
        body = _as_dict(news)
        for client in self._streams:
            self._send(client, jsonrpc.notification(method, body))

    # --- methods ---------------------------------------------------------------------------------
    @rpc("ping")
    def ping(self, params: dict[str, Any]) -> str:
        return "pong"

    @rpc("system.status")
    def system_status(self, params: dict[str, Any]) -> Generator[Pending, Any, dict[str, Any]]:
        status = yield self.call(KERNEL_NAME, GetSystemStatus(), timeout=5.0)
        return {
            "halted": status.halted,
            "reason": status.reason,
            "actors": status.actors,
            "restarts": status.restarts,
            "events": status.events[-20:],
            "remote": status.remote,
        }

    @rpc("events.subscribe")
    def events_subscribe(self, params: dict[str, Any]) -> dict[str, bool]:
        self._streams.add(self._caller)
        return {"subscribed": True}


def _wider_than_64_bits(value: Any, path: str = "params") -> list[str]:
    """Integers that no message can carry (msgpack holds -2**63 .. 2**64-1). JSON has no limit, and a
    schema's "integer" none either: such a number would only fail later, while encoding a call."""
    if isinstance(value, int) and not isinstance(value, bool) and not -(2**63) <= value < 2**64:
        return [f"{path}: {value} does not fit in 64 bits"]
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _wider_than_64_bits(v, f"{path}.{k}")]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _wider_than_64_bits(v, f"{path}[{i}]")]
    return []


# --- charging: connectors, the simulated car and hardware, tokens ------------------------------------


def _connector_index(api: ControlApi, params: dict[str, Any]) -> int:
    wanted = params["connector"]
    for index, name in enumerate(api.evses):
        if wanted in (name, index + 1, str(index + 1)):
            return index
    raise RpcError(jsonrpc.INVALID_PARAMS, f"no connector {wanted!r}; connectors: {api.evses or 'none'}")


def _evse(api: ControlApi, params: dict[str, Any]) -> str:
    return api.evses[_connector_index(api, params)]


def _rig(api: ControlApi, params: dict[str, Any]) -> Generator[Pending, Any, tuple[str, int]]:
    """The rig that simulates this connector's hardware, and its number on that rig."""
    index = _connector_index(api, params)
    if api.rig_slots is None:  # asked once: a rig's connectors are fixed by its config
        slots = []
        for rig in api.rigs:
            layout = yield api.call(rig, DescribeRig(), timeout=5.0)
            slots += [(rig, number) for number in range(1, layout.connectors + 1)]
        api.rig_slots = slots
    if index >= len(api.rig_slots):
        raise RpcError(jsonrpc.INVALID_PARAMS, f"connector {api.evses[index]} has no simulated hardware")
    return api.rig_slots[index]


def _as_dict(msg: Any) -> dict[str, Any]:
    return dataclasses.asdict(msg)  # nested messages (a connector's reservations) become objects too


def _ok(api: ControlApi, target: str, msg: Any) -> Generator[Pending, Any, dict[str, bool]]:
    yield api.call(target, msg, timeout=5.0)
    return {"ok": True}


@rpc("connectors.status")
def connectors_status(api: ControlApi, params: dict[str, Any]) -> Generator[Pending, Any, list[dict[str, Any]]]:
    out = []
    for name in api.evses:
        try:
            status = yield api.call(name, GetConnectorStatus(), timeout=2.0)
        except CallError as exc:
            out.append({"connector": name, "state": "Unavailable", "detail": str(exc)})
            continue
        assert isinstance(status, ConnectorStatus)
        out.append(_as_dict(status))
    return out


@rpc("connector.plug", {"required": ["connector"], "properties": {**_CONNECTOR, "script": {"type": "string"}}})
def connector_plug(api: ControlApi, params: dict[str, Any]) -> Generator[Pending, Any, dict[str, bool]]:
    rig, number = yield from _rig(api, params)
    return (yield from _ok(api, rig, PlugCar(script=params.get("script", ""), connector=number)))


@rpc("connector.unplug", {"required": ["connector"], "properties": _CONNECTOR})
def connector_unplug(api: ControlApi, params: dict[str, Any]) -> Generator[Pending, Any, dict[str, bool]]:
    rig, number = yield from _rig(api, params)
    return (yield from _ok(api, rig, UnplugCar(connector=number)))


@rpc("connector.car", {"required": ["connector", "script"], "properties": {**_CONNECTOR, "script": {"type": "string"}}})
def connector_car(api: ControlApi, params: dict[str, Any]) -> Generator[Pending, Any, dict[str, bool]]:
    rig, number = yield from _rig(api, params)
    return (yield from _ok(api, rig, CarCommand(script=params["script"], connector=number)))


@rpc("connector.rig", {"required": ["connector"], "properties": _CONNECTOR})
def connector_rig(api: ControlApi, params: dict[str, Any]) -> Generator[Pending, Any, dict[str, Any]]:
    rig, number = yield from _rig(api, params)
    state = yield api.call(rig, GetRigState(connector=number), timeout=5.0)
    return _as_dict(state)


@rpc(
    "connector.fault",
    {
        "required": ["connector", "fault"],
        "properties": {**_CONNECTOR, "fault": {"enum": _FAULTS}, "active": {"type": "boolean"}},
    },
)
def connector_fault(api: ControlApi, params: dict[str, Any]) -> Generator[Pending, Any, dict[str, bool]]:
    rig, number = yield from _rig(api, params)
    msg = InjectSimFault(fault=params["fault"], active=params.get("active", True), connector=number)
    return (yield from _ok(api, rig, msg))


@rpc("connector.pause", {"required": ["connector"], "properties": _CONNECTOR})
def connector_pause(api: ControlApi, params: dict[str, Any]) -> Generator[Pending, Any, dict[str, bool]]:
    return (yield from _ok(api, _evse(api, params), PauseCharging()))


@rpc("connector.resume", {"required": ["connector"], "properties": _CONNECTOR})
def connector_resume(api: ControlApi, params: dict[str, Any]) -> Generator[Pending, Any, dict[str, bool]]:
    return (yield from _ok(api, _evse(api, params), ResumeCharging()))


@rpc("connector.stop", {"required": ["connector"], "properties": {**_CONNECTOR, "reason": {"type": "string"}}})
def connector_stop(api: ControlApi, params: dict[str, Any]) -> Generator[Pending, Any, dict[str, bool]]:
    return (yield from _ok(api, _evse(api, params), StopCharging(reason=params.get("reason", "Local"))))


@rpc("connector.unlock", {"required": ["connector"], "properties": _CONNECTOR})
def connector_unlock(api: ControlApi, params: dict[str, Any]) -> Generator[Pending, Any, dict[str, bool]]:
    return (yield from _ok(api, _evse(api, params), UnlockConnectorNow()))


@rpc(
    "connector.availability",
    {
        "required": ["connector", "available"],
        "properties": {**_CONNECTOR, "available": {"type": "boolean"}, "reason": {"type": "string"}},
    },
)
def connector_availability(api: ControlApi, params: dict[str, Any]) -> Generator[Pending, Any, dict[str, bool]]:
    msg = SetAvailability(available=params["available"], reason=params.get("reason", "Other"))
    return (yield from _ok(api, _evse(api, params), msg))


@rpc(
    "connector.lease",
    {
        "required": ["connector", "valid_for_s"],
        "properties": {
            **_CONNECTOR,
            "amps": {"type": "number", "minimum": 0},
            "watts": {"type": "number", "minimum": 0},
            "valid_for_s": {"type": "number", "exclusiveMinimum": 0},
        },
    },
)
def connector_lease(api: ControlApi, params: dict[str, Any]) -> Generator[Pending, Any, dict[str, bool]]:
    lease = GrantLimitLease(
        valid_until=time.time() + params["valid_for_s"],
        amps=params.get("amps"),
        watts=params.get("watts"),
        grantor="api",
        released_when_lapsed=True,  # an override by hand: when it ends the other grantors decide again
    )
    return (yield from _ok(api, _evse(api, params), lease))


@rpc("connector.sessions", {"required": ["connector"], "properties": {**_CONNECTOR, "limit": {"type": "integer"}}})
def connector_sessions(api: ControlApi, params: dict[str, Any]) -> Generator[Pending, Any, list[dict[str, Any]]]:
    history = yield api.call(_evse(api, params), GetSessionHistory(limit=params.get("limit", 100)), timeout=5.0)
    return [_as_dict(s) for s in history.sessions]


@rpc(
    "rfid.present",
    {
        "required": ["token"],
        "properties": {"token": {"type": "string", "minLength": 1}, "connector": _CONNECTOR["connector"]},
    },
)
def rfid_present(api: ControlApi, params: dict[str, Any]) -> Generator[Pending, Any, dict[str, Any]]:
    """Through the simulated card reader when there is one (the real driver path), else straight to auth."""
    readers, auths = api.connections.get("card_reader", []), api.connections.get("auth", [])
    if readers and "connector" not in params:
        yield api.call(readers[0], PresentCard(uid=params["token"]), timeout=5.0)
        return {"presented": True, "via": readers[0]}
    if not auths:
        raise RpcError(jsonrpc.INVALID_PARAMS, "no auth actor is wired to the control API")
    connector = _evse(api, params) if "connector" in params else None
    verdict = yield api.call(auths[0], PresentToken(token_id=params["token"], connector=connector, source="api"))
    return _as_dict(verdict)


# The energy manager's methods register themselves on import (kept apart to keep this module short).
from charger.actors import control_api_energy  # noqa: E402, F401
