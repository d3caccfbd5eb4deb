"""Authenticated, allowlisted frames on Thespian's TCP transport (multiprocTCPBase).

Stock Thespian 4.0.1 unpickles whatever reaches its admin port and every actor's port, so anyone
who can connect runs code on the box. `install` closes that in the starting process, before the
actor system starts; the admin, the logger and every actor are forked from it and inherit it.

The seam (``thespian/system/transport/TCPTransport.py``):

- Outgoing frames are built by ``TCPTransport.serializer(intent)`` (``b"<len>>" + pickle``). It
  is replaced: the pickle is sealed with HMAC-SHA256 under the site secret, together with the
  destination, the time and a sequence number (`charger.replay_guard`).
- Every incoming frame, on accepted sockets and on reused outgoing ones (ACKs, or data arriving
  in reverse), is decoded by the module-global ``serializer.loads``, handed to each
  ``ReceiveBuffer``. It is replaced: the MAC is checked before anything else, then destination,
  age and sequence number, and only then is the body unpickled, with the allowlist of
  `charger.pickle_allowlist` (applied to authenticated frames too: defence in depth).
- A rejected frame decodes as ``'ACK+DATAERR'``: Thespian then NAKs it and closes the connection
  on the data path, and fails the send on the ACK path. It never raises, since an exception on
  the ACK path would leave a send hanging forever.
- The ACK frames, which Thespian pickles once at import (``ackMsg``, ``ackDataErrMsg``), are
  rebuilt sealed. They carry no time or number, so a captured ACK can be replayed, but only
  into a connection the attacker already sits in.
- ``ReceiveBuffer`` is replaced by one that refuses a declared length above the frame limit, since
  the length prefix is read before any MAC.

Dropped frames are counted per process (`drop_counts`) and logged: at once to Thespian's own
file log (``thesplog``, no transport involved), and through `logging` ("charger.frame_auth") at
the next message the process handles, because logging from inside the transport's receive path
would re-enter the transport. Neither the secret nor any frame content is ever logged.

Not covered: the UDP base (its own ``serializer``; charger refuses it) and the spawn/forkserver
start methods (children would load Thespian unpatched; charger refuses them).
"""

from __future__ import annotations

import collections
import contextlib
import hmac
import logging
import os
import pickle
import socket
import struct
import time
from collections.abc import Callable
from typing import Any

import thespian.system.transport.TCPTransport as tcp  # noqa: N813 - the module, not its class
from thespian.system.transport import TransmitOnly
from thespian.system.transport.streamBuffer import ReceiveBuffer, ackDataErrPacket, ackPacket
from thespian.system.utilis import thesplog

from charger.pickle_allowlist import BlockedGlobal, restricted_loads
from charger.replay_guard import ReplayGuard, Sequencer
from charger.site_secret import SiteSecret

__all__ = [
    "DEFAULT_MAX_AGE_S",
    "DEFAULT_MAX_FRAME_BYTES",
    "MAGIC",
    "FrameCodec",
    "FrameRejected",
    "drop_counts",
    "install",
    "installed_secret",
    "uninstall",
]

MAGIC = b"CHF1"
_MAC_END = len(MAGIC) + 32
_SIGNED = struct.Struct("!BQ8sQ4sH")  # flags, sealed at (ms), sender id, number, destination ip, port
HEADER_BYTES = _MAC_END + _SIGNED.size
_CONTROL = 0x01
_ANY_IP = b"\0\0\0\0"

DEFAULT_MAX_AGE_S = 360.0
"""Oldest frame accepted. Thespian seals a frame once and retries it for up to
THESPIAN_TRANSMIT_TIMEOUT_PERIOD (5 min by default), so this must exceed that plus clock skew."""

DEFAULT_MAX_FRAME_BYTES = 4 << 20
REJECTED = ackDataErrPacket
"""What a rejected frame decodes to: Thespian's own "bad data" answer."""

_MAX_PENDING_LOG = 20
_log_name = "charger.frame_auth"


class FrameRejected(Exception):
    """A frame failed a check; `category` is a fixed phrase, `detail` never holds frame content."""

    def __init__(self, category: str, detail: str = "") -> None:
        super().__init__(f"{category}: {detail}" if detail else category)
        self.category = category
        self.detail = detail


class FrameCodec:
    """Seals and opens transport frames under one site secret."""

    def __init__(
        self,
        secret: SiteSecret,
        *,
        max_age_s: float = DEFAULT_MAX_AGE_S,
        sequencer: Sequencer | None = None,
        is_local: Callable[[bytes, int], bool] | None = None,
    ) -> None:
        self.secret = secret
        # a key of its own, so the site secret can serve other purposes without cross-protocol reuse
        self._key = hmac.digest(secret.key, b"charger/thespian-frame/v1", "sha256")
        self.sequencer = sequencer or Sequencer()
        self.guard = ReplayGuard(max_age_s)
        self._is_local = is_local or _is_local_endpoint
        control = {packet: pickle.dumps(packet) for packet in (ackPacket, ackDataErrPacket)}
        no_sequence = _SIGNED.pack(_CONTROL, 0, b"\0" * 8, 0, _ANY_IP, 0)
        self._control_frames = {packet: self._seal(no_sequence, body) for packet, body in control.items()}
        self._control_frame_packets = {frame: packet for packet, frame in self._control_frames.items()}
        self._control_lengths = frozenset(len(frame) for frame in self._control_frames.values())

    def __repr__(self) -> str:
        return f"FrameCodec({self.secret!r})"

    def seal(self, payload: bytes, dest_ip: bytes, dest_port: int) -> bytes:
        """A data frame carrying `payload` (a pickle) to the endpoint (`dest_ip`, `dest_port`)."""
        number = self.sequencer.next(dest_ip, dest_port)
        header = _SIGNED.pack(0, int(time.time() * 1000), self.sequencer.sender, number, dest_ip, dest_port)
        return self._seal(header, payload)

    def control_frame(self, packet: str) -> bytes:
        """The sealed ACK (``'ACK'``) or NAK (``'ACK+DATAERR'``) frame."""
        return self._control_frames[packet]

    def _seal(self, header: bytes, payload: bytes) -> bytes:
        body = header + payload
        return MAGIC + hmac.digest(self._key, body, "sha256") + body

    def open(self, frame: bytes) -> Any:
        """The message in `frame`; raises `FrameRejected` (only that) when any check fails."""
        if type(frame) is not bytes:
            frame = bytes(frame)
        if len(frame) in self._control_lengths:  # a sealed ACK is constant: a lookup instead of a MAC
            packet = self._control_frame_packets.get(frame)
            if packet is not None:
                return packet
        (flags, sealed_at_ms, sender, number, dest_ip, dest_port), payload = self._authenticated(frame)
        if flags:
            raise FrameRejected("unknown flags")
        if not self._is_local(dest_ip, dest_port):
            raise FrameRejected("misdirected", f"meant for {socket.inet_ntoa(dest_ip)}:{dest_port}")
        refused = self.guard.check(sender, dest_ip, dest_port, number, sealed_at_ms)
        if refused is not None:
            raise FrameRejected(refused)
        try:
            return restricted_loads(payload)
        except BlockedGlobal as exc:
            raise FrameRejected("blocked global", _printable(exc.qualified)) from None
        except Exception as exc:  # noqa: BLE001 - any malformed pickle is a rejected frame, never a crash
            raise FrameRejected("bad pickle", type(exc).__name__) from None

    def _authenticated(self, frame: bytes) -> tuple[tuple[Any, ...], memoryview]:
        """The signed header fields and the payload of `frame`, once its MAC is verified."""
        if len(frame) < HEADER_BYTES or frame[: len(MAGIC)] != MAGIC:
            raise FrameRejected("unauthenticated", "no charger frame header")
        body = memoryview(frame)[_MAC_END:]
        if not hmac.compare_digest(frame[len(MAGIC) : _MAC_END], hmac.digest(self._key, body, "sha256")):
            raise FrameRejected("bad MAC")
        return _SIGNED.unpack_from(frame, _MAC_END), body[_SIGNED.size :]


# --- process-wide state: inherited by forked children, reset in each -------------------------------
_codec: FrameCodec | None = None
_max_frame_bytes = DEFAULT_MAX_FRAME_BYTES
_sequencer = Sequencer()
_endpoints: set[tuple[bytes, int]] = set()
"""(ip, port) of every listening socket of this process's transports; ip 0.0.0.0 = any."""
_drops: collections.Counter[str] = collections.Counter()
_pending_log: list[str] = []
_unlogged = 0
_stock: dict[str, Any] = {}


def _after_fork_in_child() -> None:
    global _unlogged
    _sequencer.reset()
    _endpoints.clear()
    _drops.clear()
    _pending_log.clear()
    _unlogged = 0
    if _codec is not None:
        _codec.guard.reset()


os.register_at_fork(after_in_child=_after_fork_in_child)


def _is_local_endpoint(ip: bytes, port: int) -> bool:
    return (ip, port) in _endpoints or (_ANY_IP, port) in _endpoints


def drop_counts() -> dict[str, int]:
    """Frames this process dropped since it started (or was forked), by category."""
    return dict(_drops)


def installed_secret() -> SiteSecret | None:
    return _codec.secret if _codec is not None else None


def _printable(text: str, limit: int = 120) -> str:
    return "".join(c if c.isprintable() else "?" for c in text[:limit])


def _record_drop(reason: FrameRejected, size: int) -> None:
    global _unlogged
    _drops[reason.category] += 1
    _unlogged += 1
    if len(_pending_log) < _MAX_PENDING_LOG:
        _pending_log.append(str(reason))
    thesplog("charger.frame_auth: dropped a %d-byte transport frame: %s", size, reason, level=logging.WARNING)


def _flush_drop_log() -> None:
    """Log the drops recorded since the last flush; called where logging is safe (outside the receive path)."""
    global _unlogged
    reasons, count = _pending_log[:], _unlogged
    _pending_log.clear()
    _unlogged = 0
    if not count:
        return
    with contextlib.suppress(Exception):  # a log failure must never break message handling
        logging.getLogger(_log_name).warning(
            "pid %d dropped %d transport frame(s) that failed authentication or the allowlist: %s"
            " (%d dropped by this process so far)",
            os.getpid(),
            count,
            "; ".join(reasons),
            sum(_drops.values()),
        )


class _TransportSerializer:
    """Stands in for the ``pickle`` module that TCPTransport calls ``serializer``."""

    @staticmethod
    def loads(frame: bytes) -> Any:
        codec = _codec
        if codec is None:  # uninstalled while a buffer was in flight: refuse rather than unpickle
            return REJECTED
        try:
            return codec.open(frame)
        except FrameRejected as exc:
            _record_drop(exc, len(frame))
            return REJECTED

    @staticmethod
    def dumps(obj: Any) -> bytes:
        raise RuntimeError("charger.frame_auth seals frames in TCPTransport.serializer, which knows the destination")


class _CappedReceiveBuffer(ReceiveBuffer):  # type: ignore[misc]
    """A ReceiveBuffer that refuses a bad or oversize length prefix instead of buffering it, and
    opens its frame once: Thespian asks a buffer for its frame twice when data arrives in reverse
    on a socket awaiting an ACK, and a second opening would be refused as a replay."""

    _refused: FrameRejected | None = None
    _opened: tuple[Any] | None = None

    def addMore(self, buf: bytes) -> None:  # noqa: N802 - Thespian's name
        if self._refused is not None:
            return
        try:
            super().addMore(buf)
        except ValueError:  # a length prefix that is no number; raising here would hang a send awaiting its ACK
            self._refuse(FrameRejected("bad length", "unreadable length prefix"))
            return
        if self._size is not None and not 0 < self._size <= _max_frame_bytes:
            self._refuse(FrameRejected("bad length", f"declared {self._size} bytes, limit {_max_frame_bytes}"))

    def _refuse(self, reason: FrameRejected) -> None:
        self._refused = reason
        self._buf = self._extra = b""
        _record_drop(reason, 0)

    def isDone(self) -> bool:  # noqa: N802 - Thespian's name
        return self._refused is not None or bool(super().isDone())

    def completed(self) -> Any:
        if self._refused is None and self._size is None and self._blen > 40:  # no length prefix at all
            self._refuse(FrameRejected("bad length", "no length prefix"))
        if self._refused is not None:
            return REJECTED, b""
        if self._opened is None:
            done = super().completed()
            if done is None:
                return None
            self._opened = (done[0],)
        return self._opened[0], self._extra


_dest_cache: dict[Any, tuple[bytes, int]] = {}


def _destination(address: Any) -> tuple[bytes, int]:
    sockname = getattr(getattr(address, "addressDetails", None), "sockname", None)
    dest = _dest_cache.get(sockname)
    if dest is None:
        try:
            dest = socket.inet_aton(sockname[0]), int(sockname[1])  # type: ignore[index]
        except (TypeError, ValueError, OSError, IndexError):
            return _ANY_IP, 0  # not an IPv4 endpoint: the receiver refuses it as misdirected
        if len(_dest_cache) > 4096:
            _dest_cache.clear()
        _dest_cache[sockname] = dest
    return dest


def _serialize(transport: Any, intent: Any) -> bytes:
    """Replacement for ``TCPTransport.serializer``: the stock pickle, sealed for the intent's target."""
    assert _codec is not None
    payload = pickle.dumps((transport.myAddress, intent.message))  # raises like stock for unpicklable addresses
    frame = _codec.seal(payload, *_destination(intent.targetAddr))
    return b"%d>" % len(frame) + frame


def _transport_init(transport: Any, *args: Any) -> None:
    _stock["__init__"](transport, *args)
    ip, port = transport.socket.getsockname()[:2]
    _endpoints.add((socket.inet_aton(ip), port))


def _transport_run(transport: Any, incoming_handler: Any, maximum_duration: Any = None) -> Any:
    handler = incoming_handler
    if incoming_handler is not None and incoming_handler is not TransmitOnly:

        def handler(envelope: Any) -> Any:
            if _unlogged:
                _flush_drop_log()
            return incoming_handler(envelope)

    try:
        return _stock["run"](transport, handler, maximum_duration)
    finally:
        if _unlogged:
            _flush_drop_log()


def install(
    secret: SiteSecret, *, max_age_s: float = DEFAULT_MAX_AGE_S, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES
) -> None:
    """Authenticate every TCP transport frame of this process, and of every process forked from it
    from now on, with `secret`. Call before ``ActorSystem()``; calling again replaces the secret
    (systems started earlier from this process with another secret then stop accepting it)."""
    global _codec, _max_frame_bytes
    if not isinstance(secret, SiteSecret):
        raise TypeError("install() takes a SiteSecret")
    previous = _codec
    _codec = FrameCodec(secret, max_age_s=max_age_s, sequencer=_sequencer)
    _max_frame_bytes = max_frame_bytes
    if not _stock:
        _stock.update(
            serializer=tcp.serializer,
            ReceiveBuffer=tcp.ReceiveBuffer,
            ackMsg=tcp.ackMsg,
            ackDataErrMsg=tcp.ackDataErrMsg,
            method=tcp.TCPTransport.serializer,
            __init__=tcp.TCPTransport.__init__,
            run=tcp.TCPTransport.run,
        )
        tcp.serializer = _TransportSerializer
        tcp.ReceiveBuffer = _CappedReceiveBuffer
        tcp.TCPTransport.serializer = _serialize
        tcp.TCPTransport.__init__ = _transport_init
        tcp.TCPTransport.run = _transport_run
    for name, packet in (("ackMsg", ackPacket), ("ackDataErrMsg", ackDataErrPacket)):
        frame = _codec.control_frame(packet)
        setattr(tcp, name, b"%d>" % len(frame) + frame)
    if previous is not None and previous.secret.key != secret.key:
        logging.getLogger(_log_name).info("transport site secret replaced (now %s)", secret.origin)


def uninstall() -> None:
    """Restore stock Thespian (unauthenticated pickle) for systems started from now on. For tests
    and measurements only: a system started afterwards is open to remote code execution."""
    global _codec
    if _stock:
        tcp.serializer = _stock["serializer"]
        tcp.ReceiveBuffer = _stock["ReceiveBuffer"]
        tcp.ackMsg = _stock["ackMsg"]
        tcp.ackDataErrMsg = _stock["ackDataErrMsg"]
        tcp.TCPTransport.serializer = _stock["method"]
        tcp.TCPTransport.__init__ = _stock["__init__"]
        tcp.TCPTransport.run = _stock["run"]
        _stock.clear()
    _codec = None
