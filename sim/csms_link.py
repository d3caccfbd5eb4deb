"""One charge point's connection to the simulated CSMS: the `ocpp` library in the central-system role.

`RecordingConnection` sits between the WebSocket and the library, so every frame is logged exactly as it
crossed the wire. `CentralSystemLink` answers every charge-point-initiated 1.6 action from the current
`CsmsBehaviour`, consumes planned faults, and corrects the library where it deviates from OCPP-J 1.6
(`shared/reference/ocpp.md` §2): NotImplemented and NotSupported swapped back, FormatViolation sent as
FormationViolation, error details that are always JSON. Rejected CALLs are logged as INVALID events, so a
test can assert that the CSMS saw no invalid frame.

The route map is built here per instance instead of with `@on`, whose module-global registry would also
route methods of unrelated ChargePoint subclasses that happen to share a name.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from charger.sim.csms_behaviour import CsmsBehaviour, FaultKind, FaultPlan, TransactionIds
from charger.sim.csms_record import CALL, CALLERROR, CALLRESULT, Direction, EventKind, FrameLog
from ocpp.exceptions import (
    FormationViolationError,
    FormatViolationError,
    GenericError,
    NotSupportedError,
    OCPPError,
)
from ocpp.exceptions import NotImplementedError as OcppNotImplementedError
from ocpp.v16 import ChargePoint, call_result, datatypes
from websockets.asyncio.server import ServerConnection

__all__ = ["CentralSystemLink", "RecordingConnection", "error_for_code"]

_WIRE_LOGGER = logging.getLogger("charger.sim.csms.wire")
_WIRE_LOGGER.addHandler(logging.NullHandler())  # the frame log is the record; no tracebacks on a bare stderr
_ELEMENTS = {CALL: 4, CALLRESULT: 3, CALLERROR: 5}


class RecordingConnection:
    """The two methods the `ocpp` library needs from a connection, logging each frame on the way.

    A sent frame is logged as it is handed to the socket, before the peer can possibly answer it."""

    def __init__(self, websocket: ServerConnection, cp_id: str, log: FrameLog) -> None:
        self.websocket = websocket
        self.cp_id = cp_id
        self._log = log

    async def send(self, text: str) -> None:
        self._log.add_frame(self.cp_id, Direction.SENT, text)
        await self.websocket.send(text)

    async def recv(self) -> str:
        data = await self.websocket.recv()
        text = data if isinstance(data, str) else data.decode("utf-8", errors="replace")
        self._log.add_frame(self.cp_id, Direction.RECEIVED, text)
        if not isinstance(data, str):
            self._log.add_event(self.cp_id, EventKind.INVALID, error="binary WebSocket frame", outbound=False)
        return text


def error_for_code(code: str, description: str | None = None) -> OCPPError:
    """An exception the library turns into a CALLERROR with exactly `code`."""
    for cls in _error_classes(OCPPError):
        if getattr(cls, "code", None) == code:
            error: OCPPError = cls(description=description)
            return error
    error = GenericError(description=description)
    error.code = code  # an instance attribute wins over the class's; unknown codes are a test's choice
    return error


def _error_classes(base: type) -> list[type]:
    found: list[type] = []
    subclasses: list[type] = base.__subclasses__()
    for sub in subclasses:
        found.append(sub)
        found.extend(_error_classes(sub))
    return found


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class CentralSystemLink(ChargePoint):  # type: ignore[misc]  # ocpp ships no type information
    """The CSMS side of one charge point's connection."""

    def __init__(
        self,
        connection: RecordingConnection,
        *,
        behaviour: Callable[[], CsmsBehaviour],
        transaction_ids: TransactionIds,
        faults: FaultPlan,
        log: FrameLog,
        response_timeout: float,
    ) -> None:
        super().__init__(connection.cp_id, connection, response_timeout=response_timeout, logger=_WIRE_LOGGER)
        self.connection = connection
        self._behaviour = behaviour
        self._transaction_ids = transaction_ids
        self._faults = faults
        self._log = log
        self.raw_call_ids: set[str] = set()
        """Ids of CALLs sent as raw text: their answers are logged but kept away from `call()`."""
        handlers: dict[str, Callable[..., Any]] = {
            "Authorize": self._authorize,
            "BootNotification": self._boot_notification,
            "DataTransfer": self._data_transfer,
            "DiagnosticsStatusNotification": self._empty(call_result.DiagnosticsStatusNotification),
            "FirmwareStatusNotification": self._empty(call_result.FirmwareStatusNotification),
            "Heartbeat": self._heartbeat,
            "LogStatusNotification": self._empty(call_result.LogStatusNotification),
            "MeterValues": self._empty(call_result.MeterValues),
            "SecurityEventNotification": self._empty(call_result.SecurityEventNotification),
            "SignCertificate": self._sign_certificate,
            "SignedFirmwareStatusNotification": self._empty(call_result.SignedFirmwareStatusNotification),
            "StartTransaction": self._start_transaction,
            "StatusNotification": self._empty(call_result.StatusNotification),
            "StopTransaction": self._stop_transaction,
        }
        self.route_map = {
            action: {"_on_action": handler, "_skip_schema_validation": False} for action, handler in handlers.items()
        }

    # -- routing ----------------------------------------------------------------------------------------

    async def route_message(self, raw_msg: str) -> None:
        message = _ocpp_array(raw_msg)
        if message is None:
            self._log.add_event(self.id, EventKind.INVALID, error="not an OCPP-J message", outbound=False)
            return
        if message[0] in (CALLRESULT, CALLERROR) and message[1] in self.raw_call_ids:
            self.raw_call_ids.discard(message[1])
            return
        await super().route_message(raw_msg)

    async def _handle_call(self, msg: Any) -> Any:
        fault = self._faults.take(msg.action)
        if fault is not None and fault.kind is FaultKind.NO_ANSWER:
            return None
        if fault is not None:
            raise error_for_code(fault.error_code, f"fault planned by the test for {msg.action}")
        try:
            return await super()._handle_call(msg)
        except NotSupportedError as exc:  # the library's code for an action it does not know
            raise self._invalid(msg, OcppNotImplementedError("Requested Action is not known by receiver"), exc) from exc
        except OcppNotImplementedError as exc:  # the library's code for a known action without a handler
            raise self._invalid(
                msg, NotSupportedError("Requested Action is recognized but not supported by the receiver"), exc
            ) from exc
        except FormatViolationError as exc:  # OCPP-J 1.6 errata §5: the 1.6 wire spelling
            raise self._invalid(msg, FormationViolationError(exc.description), exc) from exc
        except OCPPError as exc:
            raise self._invalid(msg, error_for_code(exc.code, exc.description), exc) from exc

    def _invalid(self, msg: Any, answer: OCPPError, cause: OCPPError) -> OCPPError:
        answer.details = {"cause": str(cause.details.get("cause", cause.description))}  # JSON-safe, always
        self._log.add_event(
            self.id,
            EventKind.INVALID,
            method=msg.action,
            code=answer.code,
            error=answer.details["cause"],
            outbound=False,
        )
        return answer

    # -- handlers: one per charge-point-initiated action -----------------------------------------------

    def _boot_notification(self, **_: Any) -> call_result.BootNotification:
        behaviour = self._behaviour()
        return call_result.BootNotification(
            current_time=_now(), interval=behaviour.boot_interval, status=behaviour.boot_status
        )

    def _heartbeat(self, **_: Any) -> call_result.Heartbeat:
        return call_result.Heartbeat(current_time=_now())

    def _authorize(self, id_tag: str, **_: Any) -> call_result.Authorize:
        return call_result.Authorize(id_tag_info=self._id_tag_info(id_tag))

    def _start_transaction(self, id_tag: str, **_: Any) -> call_result.StartTransaction:
        return call_result.StartTransaction(
            transaction_id=self._transaction_ids.next(), id_tag_info=self._id_tag_info(id_tag)
        )

    def _stop_transaction(self, id_tag: str | None = None, **_: Any) -> call_result.StopTransaction:
        return call_result.StopTransaction(id_tag_info=None if id_tag is None else self._id_tag_info(id_tag))

    def _data_transfer(self, **_: Any) -> call_result.DataTransfer:
        return call_result.DataTransfer(status=self._behaviour().data_transfer_status)

    def _sign_certificate(self, **_: Any) -> call_result.SignCertificate:
        return call_result.SignCertificate(status=self._behaviour().sign_certificate_status)

    @staticmethod
    def _empty(result: type) -> Callable[..., Any]:
        def answer(**_: Any) -> Any:
            return result()

        return answer

    def _id_tag_info(self, id_tag: str) -> datatypes.IdTagInfo:
        return datatypes.IdTagInfo(status=self._behaviour().id_tag_status(id_tag))


def _ocpp_array(text: str) -> list[Any] | None:
    """The frame as a list when it has the shape of an OCPP-J message (type, string id, all elements)."""
    try:
        message = json.loads(text)
    except (ValueError, RecursionError):  # deep nesting exhausts json's recursion
        return None
    if (
        not isinstance(message, list)
        or len(message) < 2
        or not isinstance(message[0], int)
        or len(message) != _ELEMENTS.get(message[0])
        or not isinstance(message[1], str)
    ):
        return None
    return message
