"""The frame log of a CSMS peer: every OCPP-J frame received and sent, in order, plus link events.

Both test CSMSs write the same JSON-lines format, so one reader serves both (`FrameLog.add_jsonl_line`):

- a frame: ``{"seq": 7, "at": 1700000000.25, "cp": "CP1", "dir": "rx", "frame": "[2,\\"id\\",...]"}``
  (``dir`` is ``rx`` for a frame the CSMS received, ``tx`` for one it sent; ``frame`` is the raw text);
- an event: ``{"seq": 8, "at": ..., "cp": "CP1", "event": "open", ...}`` with the kinds of `EventKind`
  and free fields (close code, refusal status, validation error, a command's answer).

A CALLRESULT or CALLERROR carries no action on the wire; the log fills it in from the CALL it answers,
so a test can wait for "the answer to StartTransaction" as easily as for the CALL itself.
"""

from __future__ import annotations

import asyncio
import enum
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TextIO, TypeVar

__all__ = [
    "CALL",
    "CALLERROR",
    "CALLRESULT",
    "CallAnswer",
    "Direction",
    "EventKind",
    "Frame",
    "FrameLog",
    "LinkEvent",
    "frame_matcher",
]

CALL = 2
CALLRESULT = 3
CALLERROR = 4


class Direction(enum.Enum):
    """Which way a frame went, seen from the CSMS."""

    RECEIVED = "rx"
    SENT = "tx"

    @property
    def opposite(self) -> Direction:
        return Direction.SENT if self is Direction.RECEIVED else Direction.RECEIVED


class EventKind(enum.Enum):
    """What happened to a link, besides frames."""

    LISTENING = "listening"
    """The server accepts connections (fields: url)."""
    OPEN = "open"
    """A charge point connected (fields: protocol)."""
    CLOSE = "close"
    """A charge point's connection ended (fields: code, reason)."""
    REFUSED = "refused"
    """An upgrade was refused before the WebSocket opened (fields: status, reason)."""
    INVALID = "invalid"
    """A frame failed validation or could not be parsed (fields: method, code, error, outbound)."""
    ANSWER = "answer"
    """The outcome of a CSMS-initiated call asked for on the command channel (fields: command, ok, ...)."""
    OFFLINE = "offline"
    """The CSMS went offline on purpose (fields: refusal)."""
    ONLINE = "online"
    """The CSMS came back online."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Frame:
    """One OCPP-J frame as it crossed the wire."""

    seq: int
    """Position in the log, shared with events; strictly increasing."""
    at: float
    """Wall-clock time (seconds since the epoch) when the CSMS saw or sent it."""
    cp_id: str
    """Charge point the connection belongs to."""
    direction: Direction
    text: str
    """The raw frame text, exactly as on the wire."""
    message_type: int | None
    """2 CALL, 3 CALLRESULT, 4 CALLERROR; None when the text is not an OCPP-J array."""
    unique_id: str | None
    action: str | None
    """The CALL's action; for a result or error, the action of the CALL it answers (None if unknown)."""

    @property
    def message(self) -> list[Any] | None:
        """The parsed frame, or None when it is not a JSON array."""
        return _parse_array(self.text)

    @property
    def payload(self) -> Any:
        """The CALL's payload or the CALLRESULT's; the error details of a CALLERROR."""
        message = self.message
        index = {CALL: 3, CALLRESULT: 2, CALLERROR: 4}.get(self.message_type or 0)
        if message is None or index is None or len(message) <= index:
            return None
        return message[index]

    @property
    def error_code(self) -> str | None:
        message = self.message
        if self.message_type != CALLERROR or message is None or len(message) < 3:
            return None
        return str(message[2])

    def to_json(self) -> dict[str, Any]:
        return {"seq": self.seq, "at": self.at, "cp": self.cp_id, "dir": self.direction.value, "frame": self.text}


@dataclass(frozen=True, slots=True, kw_only=True)
class LinkEvent:
    """Something that happened to a link that is not a frame."""

    seq: int
    at: float
    cp_id: str
    """Charge point concerned ("" for server-wide events)."""
    kind: EventKind
    fields: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"seq": self.seq, "at": self.at, "cp": self.cp_id, "event": self.kind.value, **self.fields}


@dataclass(frozen=True, slots=True, kw_only=True)
class CallAnswer:
    """A charge point's answer to a CSMS-initiated CALL."""

    action: str
    ok: bool
    """True for a CALLRESULT, False for a CALLERROR."""
    payload: Mapping[str, Any]
    """The CALLRESULT payload as on the wire (camelCase), or the CALLERROR's details."""
    error_code: str | None = None
    error_description: str | None = None

    @classmethod
    def from_frame(cls, action: str, frame: Frame) -> CallAnswer:
        message = frame.message or []
        if frame.message_type == CALLRESULT and len(message) == 3 and isinstance(message[2], dict):
            return cls(action=action, ok=True, payload=message[2])
        if frame.message_type == CALLERROR and len(message) == 5:
            details = message[4] if isinstance(message[4], dict) else {}
            return cls(
                action=action, ok=False, payload=details, error_code=str(message[2]), error_description=str(message[3])
            )
        raise ValueError(f"not a well-formed answer to {action}: {frame.text}")


Record = Frame | LinkEvent
_T = TypeVar("_T")


def _parse_array(text: str) -> list[Any] | None:
    try:
        message = json.loads(text)
    except (ValueError, RecursionError):  # deep nesting exhausts json's recursion
        return None
    return message if isinstance(message, list) else None


def frame_matcher(
    action: str | None = None,
    *,
    direction: Direction | None = Direction.RECEIVED,
    message_type: int | None = CALL,
    cp_id: str | None = None,
    where: Callable[[Frame], bool] | None = None,
) -> Callable[[Frame], bool]:
    """A predicate for `FrameLog.find`: by default a CALL the CSMS received, of `action` if given."""

    def matches(frame: Frame) -> bool:
        return (
            (action is None or frame.action == action)
            and (direction is None or frame.direction is direction)
            and (message_type is None or frame.message_type == message_type)
            and (cp_id is None or frame.cp_id == cp_id)
            and (where is None or where(frame))
        )

    return matches


class FrameLog:
    """Frames and events in the order they happened, optionally mirrored to a JSON-lines sink.

    Appends and waits run on one asyncio loop; `find` and the listings can be read from it at any time."""

    def __init__(self, sink: TextIO | None = None) -> None:
        self._records: list[Record] = []
        self._sink = sink
        self._pending_calls: dict[tuple[str, Direction, str], str] = {}
        self._changed = asyncio.Event()

    # -- writing ----------------------------------------------------------------------------------------

    def add_frame(self, cp_id: str, direction: Direction, text: str, at: float | None = None) -> Frame:
        message = _parse_array(text)
        message_type = message[0] if message and isinstance(message[0], int) else None
        unique_id = message[1] if message and len(message) > 1 and isinstance(message[1], str) else None
        action: str | None = None
        if message_type == CALL and unique_id is not None:
            action = message[2] if len(message or ()) > 2 and isinstance(message[2], str) else None  # type: ignore[index]
            if action is not None:
                self._pending_calls[(cp_id, direction, unique_id)] = action
        elif message_type in (CALLRESULT, CALLERROR) and unique_id is not None:
            action = self._pending_calls.pop((cp_id, direction.opposite, unique_id), None)
        frame = Frame(
            seq=len(self._records),
            at=time.time() if at is None else at,
            cp_id=cp_id,
            direction=direction,
            text=text,
            message_type=message_type,
            unique_id=unique_id,
            action=action,
        )
        self._append(frame)
        return frame

    def add_event(self, cp_id: str, kind: EventKind, at: float | None = None, **fields: Any) -> LinkEvent:
        event = LinkEvent(
            seq=len(self._records), at=time.time() if at is None else at, cp_id=cp_id, kind=kind, fields=fields
        )
        self._append(event)
        return event

    def _append(self, record: Record) -> None:
        self._records.append(record)
        if self._sink is not None:
            self._sink.write(json.dumps(record.to_json()) + "\n")
            self._sink.flush()  # another process may be tailing the file
        self._changed.set()
        self._changed = asyncio.Event()

    def add_jsonl_line(self, line: str) -> Record | None:
        """Append what one line of a CSMS's JSON-lines log describes (the other peer writes the same
        format); None for a blank or foreign line. Actions of results are worked out again here."""
        try:
            entry = json.loads(line)
        except ValueError:
            return None
        if not isinstance(entry, dict):
            return None
        at, cp_id = float(entry.get("at", 0.0)), str(entry.get("cp", ""))
        if isinstance(entry.get("frame"), str) and entry.get("dir") in ("rx", "tx"):
            return self.add_frame(cp_id, Direction(entry["dir"]), entry["frame"], at=at)
        try:
            kind = EventKind(entry.get("event"))
        except ValueError:
            return None
        fields = {k: v for k, v in entry.items() if k not in ("seq", "at", "cp", "event")}
        return self.add_event(cp_id, kind, at=at, **fields)

    # -- reading ----------------------------------------------------------------------------------------

    @property
    def next_seq(self) -> int:
        """The seq the next record will get: pass it as `after` to wait only for what happens from now."""
        return len(self._records)

    def frames(self, cp_id: str | None = None) -> list[Frame]:
        return [r for r in self._records if isinstance(r, Frame) and (cp_id is None or r.cp_id == cp_id)]

    def events(self, kind: EventKind | None = None) -> list[LinkEvent]:
        return [r for r in self._records if isinstance(r, LinkEvent) and (kind is None or r.kind is kind)]

    def find(self, match: Callable[[Frame], bool], after: int = 0) -> Frame | None:
        """The first frame from seq `after` on that matches."""
        for record in self._records[after:]:
            if isinstance(record, Frame) and match(record):
                return record
        return None

    def find_event(
        self, kind: EventKind, after: int = 0, where: Callable[[LinkEvent], bool] | None = None
    ) -> LinkEvent | None:
        for record in self._records[after:]:
            if isinstance(record, LinkEvent) and record.kind is kind and (where is None or where(record)):
                return record
        return None

    async def wait_for(self, match: Callable[[Frame], bool], *, after: int = 0, timeout: float = 10.0) -> Frame:
        """The first frame from seq `after` on that matches, waiting for it up to `timeout` seconds."""
        return await self._wait(lambda: self.find(match, after), timeout, "frame")

    async def wait_for_event(
        self,
        kind: EventKind,
        *,
        after: int = 0,
        where: Callable[[LinkEvent], bool] | None = None,
        timeout: float = 10.0,
    ) -> LinkEvent:
        return await self._wait(lambda: self.find_event(kind, after, where), timeout, f"{kind.value} event")

    async def _wait(self, lookup: Callable[[], _T | None], timeout: float, what: str) -> _T:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while (found := lookup()) is None:
            left = deadline - loop.time()
            if left <= 0:
                raise TimeoutError(f"no matching {what} within {timeout} s")
            changed = self._changed
            try:
                await asyncio.wait_for(changed.wait(), left)
            except TimeoutError:
                continue
        return found
