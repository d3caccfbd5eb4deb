"""Binary framing of the link between the host and the charger's control board (pure, no I/O).

One frame on the wire (the full specification, for firmware authors, is ``docs/board-protocol.md``)::

    +------+-----+-----+------+-----------------+-----------+
    | 0xA5 | LEN | SEQ | TYPE | PAYLOAD (LEN B) | CRC16 (BE) |
    +------+-----+-----+------+-----------------+-----------+

``LEN`` counts the payload bytes only (0..`MAX_PAYLOAD`). The CRC is CRC-16/CCITT-FALSE (called
CRC-16/IBM-3740 in Greg Cook's "Catalogue of parametrised CRC algorithms": width 16, poly 0x1021,
init 0xFFFF, no reflection, xorout 0, check value 0x29B1 for ``b"123456789"``), computed over LEN,
SEQ, TYPE and PAYLOAD and sent high byte first. There is no byte stuffing: the start byte may occur
inside a frame, and the decoder resynchronises by trying every start byte until a CRC matches.

Every message carries the frame's sequence number as its ``seq`` field. For a command, ``seq`` is
the host's counter; an `Ack` or `Nack` repeats the ``seq`` of the command it answers; a
`BoardStatus` carries the board's own counter: 0 only for the first status after power-on, then
1..255 wrapping to 1, so the host can count lost statuses and notice a board that restarted.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable, Collection, Mapping
from typing import ClassVar, Generic, TypeVar, cast

__all__ = [
    "BOARD_TO_HOST",
    "HOST_TO_BOARD",
    "MAX_FRAME",
    "MAX_PAYLOAD",
    "SOF",
    "Ack",
    "BoardMessage",
    "BoardStatus",
    "Command",
    "DropReason",
    "FrameDecoder",
    "Heartbeat",
    "Nack",
    "NackReason",
    "Pilot",
    "ResetFaults",
    "SetLock",
    "SetPwm",
    "SetRelays",
    "crc16_ccitt_false",
    "encode",
]

SOF = 0xA5
"""Start-of-frame byte."""
MAX_PAYLOAD = 32
"""Largest payload a receiver accepts; a larger LEN is a framing error, not a long wait."""
_OVERHEAD = 6  # SOF, LEN, SEQ, TYPE and two CRC bytes
MAX_FRAME = MAX_PAYLOAD + _OVERHEAD

PWM_OFF = 0xFFFF  # wire value of "no PWM": the pilot is held at a steady +12 V (state X1)


def crc16_ccitt_false(data: bytes | bytearray | memoryview, crc: int = 0xFFFF) -> int:
    """CRC-16/CCITT-FALSE (alias CRC-16/IBM-3740): poly 0x1021, init 0xFFFF, MSB first, no final xor.

    Bitwise on purpose: frames are a few dozen bytes, and eight lines are easier to port to an MCU
    and to check against the catalogue than a table.
    """
    for byte in bytes(data):
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
        crc &= 0xFFFF
    return crc


# --- messages ---------------------------------------------------------------------------------------


class Pilot(enum.StrEnum):
    """Control-pilot state as the board measures it (IEC 61851-1 Annex A); sent as the ASCII letter."""

    A = "A"  #: +12 V: no vehicle connected
    B = "B"  #: +9 V: vehicle connected, not ready
    C = "C"  #: +6 V: vehicle ready, charging allowed
    D = "D"  #: +3 V: vehicle ready, ventilation required
    E = "E"  #: 0 V: pilot shorted to PE or no supply
    F = "F"  #: -12 V: the board drives the pilot low (EVSE not available; set by 0 ‰ PWM)


class NackReason(enum.IntEnum):
    """Why the board refused a command. Unknown codes from newer firmware decode as OTHER."""

    OTHER = 0  #: a reason this host does not know
    FAULT_ACTIVE = 1  #: a latched fault (watchdog or RCD) forbids it; send ResetFaults first
    INTERLOCK = 2  #: relays close only in pilot C or D with PWM running
    NOT_UNPLUGGED = 3  #: an RCD trip can be reset only while the pilot reads A (no vehicle)
    UNSUPPORTED = 4  #: this board has no such actuator (e.g. no lock on a tethered cable)


def _check_seq(seq: int) -> None:
    if not 0 <= seq <= 0xFF:
        raise ValueError(f"seq {seq} outside 0..255")


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Heartbeat:
    """Host → board: "I am alive". Any valid host frame feeds the watchdog; this one does nothing else."""

    TYPE: ClassVar[int] = 0x01
    seq: int

    def __post_init__(self) -> None:
        _check_seq(self.seq)

    def payload(self) -> bytes:
        return b""

    @classmethod
    def parse(cls, seq: int, payload: bytes) -> Heartbeat:
        _expect_len(payload, 0)
        return cls(seq=seq)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class SetPwm:
    """Host → board: pilot PWM duty in per mille (0..1000), or None to stop PWM (steady +12 V).

    0 ‰ holds the pilot at -12 V, which the board then reads as state F; 1000 ‰ is steady +12 V.
    """

    TYPE: ClassVar[int] = 0x02
    seq: int
    duty_permille: int | None

    def __post_init__(self) -> None:
        _check_seq(self.seq)
        _check_duty(self.duty_permille)

    def payload(self) -> bytes:
        return _pack_duty(self.duty_permille)

    @classmethod
    def parse(cls, seq: int, payload: bytes) -> SetPwm:
        _expect_len(payload, 2)
        return cls(seq=seq, duty_permille=_unpack_duty(payload))


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class SetRelays:
    """Host → board: close or open the main contactor(s)."""

    TYPE: ClassVar[int] = 0x03
    seq: int
    closed: bool

    def __post_init__(self) -> None:
        _check_seq(self.seq)

    def payload(self) -> bytes:
        return bytes([self.closed])

    @classmethod
    def parse(cls, seq: int, payload: bytes) -> SetRelays:
        _expect_len(payload, 1)
        return cls(seq=seq, closed=_unpack_bool(payload[0]))


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class SetLock:
    """Host → board: lock or unlock the connector (socket outlets with a locking actuator)."""

    TYPE: ClassVar[int] = 0x04
    seq: int
    locked: bool

    def __post_init__(self) -> None:
        _check_seq(self.seq)

    def payload(self) -> bytes:
        return bytes([self.locked])

    @classmethod
    def parse(cls, seq: int, payload: bytes) -> SetLock:
        _expect_len(payload, 1)
        return cls(seq=seq, locked=_unpack_bool(payload[0]))


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ResetFaults:
    """Host → board: clear latched faults (watchdog always; an RCD trip only while unplugged)."""

    TYPE: ClassVar[int] = 0x05
    seq: int

    def __post_init__(self) -> None:
        _check_seq(self.seq)

    def payload(self) -> bytes:
        return b""

    @classmethod
    def parse(cls, seq: int, payload: bytes) -> ResetFaults:
        _expect_len(payload, 0)
        return cls(seq=seq)


# Bits of BoardStatus byte 5 (outputs) and byte 6 (faults); unknown bits are reserved and ignored.
_RELAYS, _LOCKED = 0x01, 0x02
_WATCHDOG, _RCD, _DIODE, _WELDED = 0x01, 0x02, 0x04, 0x08


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class BoardStatus:
    """Board → host: everything the board measures. Sent on every change and at least every 100 ms."""

    TYPE: ClassVar[int] = 0x81
    seq: int
    pilot: Pilot
    pwm_permille: int | None
    """The duty the board generates; None when PWM is off."""
    relays_closed: bool
    """The contactor's feedback (mirror) contact, not the command."""
    rcd_milliamps: int
    """Residual current measured by the RCM, in mA (0..65535)."""
    locked: bool
    """The lock's feedback contact."""
    watchdog_tripped: bool
    """Safe state entered at power-on or when the host went quiet; latched until ResetFaults."""
    rcd_tripped: bool = False
    """Residual current above the trip threshold; relays opened by the board; latched."""
    diode_fault: bool = False
    """The vehicle's pilot diode is missing (negative PWM half not at -12 V); live, not latched."""
    relay_welded: bool = False
    """The relays are commanded open but the feedback contact reads closed; live, not latched."""

    def __post_init__(self) -> None:
        _check_seq(self.seq)
        _check_duty(self.pwm_permille)
        if not 0 <= self.rcd_milliamps <= 0xFFFF:
            raise ValueError(f"rcd_milliamps {self.rcd_milliamps} outside 0..65535")

    def payload(self) -> bytes:
        outputs = _RELAYS * self.relays_closed | _LOCKED * self.locked
        faults = (
            _WATCHDOG * self.watchdog_tripped
            | _RCD * self.rcd_tripped
            | _DIODE * self.diode_fault
            | _WELDED * self.relay_welded
        )
        return (
            self.pilot.encode("ascii")
            + _pack_duty(self.pwm_permille)
            + self.rcd_milliamps.to_bytes(2, "big")
            + bytes([outputs, faults])
        )

    @classmethod
    def parse(cls, seq: int, payload: bytes) -> BoardStatus:
        _expect_len(payload, 7)
        outputs, faults = payload[5], payload[6]
        return cls(
            seq=seq,
            pilot=Pilot(chr(payload[0])),  # ValueError for a letter outside A..F
            pwm_permille=_unpack_duty(payload[1:3]),
            rcd_milliamps=int.from_bytes(payload[3:5], "big"),
            relays_closed=bool(outputs & _RELAYS),
            locked=bool(outputs & _LOCKED),
            watchdog_tripped=bool(faults & _WATCHDOG),
            rcd_tripped=bool(faults & _RCD),
            diode_fault=bool(faults & _DIODE),
            relay_welded=bool(faults & _WELDED),
        )


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Ack:
    """Board → host: the command with this ``seq`` was applied."""

    TYPE: ClassVar[int] = 0x82
    seq: int

    def __post_init__(self) -> None:
        _check_seq(self.seq)

    def payload(self) -> bytes:
        return b""

    @classmethod
    def parse(cls, seq: int, payload: bytes) -> Ack:
        _expect_len(payload, 0)
        return cls(seq=seq)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Nack:
    """Board → host: the command with this ``seq`` was refused and had no effect (but fed the watchdog)."""

    TYPE: ClassVar[int] = 0x83
    seq: int
    reason: NackReason

    def __post_init__(self) -> None:
        _check_seq(self.seq)

    def payload(self) -> bytes:
        return bytes([self.reason])

    @classmethod
    def parse(cls, seq: int, payload: bytes) -> Nack:
        _expect_len(payload, 1)
        code = payload[0]
        return cls(seq=seq, reason=NackReason(code) if code in NackReason._value2member_map_ else NackReason.OTHER)


Command = Heartbeat | SetPwm | SetRelays | SetLock | ResetFaults
"""Everything the host sends; the board answers each with exactly one Ack or Nack."""
BoardMessage = Command | BoardStatus | Ack | Nack

HOST_TO_BOARD: tuple[type[Command], ...] = (Heartbeat, SetPwm, SetRelays, SetLock, ResetFaults)
BOARD_TO_HOST: tuple[type[BoardStatus | Ack | Nack], ...] = (BoardStatus, Ack, Nack)


def _check_duty(duty: int | None) -> None:
    if duty is not None and not 0 <= duty <= 1000:
        raise ValueError(f"duty {duty} ‰ outside 0..1000")


def _pack_duty(duty: int | None) -> bytes:
    return (PWM_OFF if duty is None else duty).to_bytes(2, "big")


def _unpack_duty(raw: bytes) -> int | None:
    value = int.from_bytes(raw, "big")
    return None if value == PWM_OFF else value  # values 1001..0xFFFE fail _check_duty


def _unpack_bool(byte: int) -> bool:
    if byte > 1:
        raise ValueError(f"boolean byte {byte:#04x} is neither 0 nor 1")
    return bool(byte)


def _expect_len(payload: bytes, size: int) -> None:
    if len(payload) != size:
        raise ValueError(f"payload of {len(payload)} bytes, expected {size}")


def encode(msg: BoardMessage) -> bytes:
    """One complete frame for `msg`, ready to write to the line."""
    payload = msg.payload()
    body = bytes([len(payload), msg.seq, msg.TYPE]) + payload
    return bytes([SOF]) + body + crc16_ccitt_false(body).to_bytes(2, "big")


# --- decoding ---------------------------------------------------------------------------------------


class DropReason(enum.StrEnum):
    """Why the decoder threw a frame (or a frame candidate) away."""

    BAD_CRC = "bad_crc"  #: complete, but the CRC does not match (corruption, or a start byte in garbage)
    BAD_LENGTH = "bad_length"  #: LEN above MAX_PAYLOAD: not a frame
    TRUNCATED = "truncated"  #: the line went quiet before the frame was complete
    UNKNOWN_TYPE = "unknown_type"  #: CRC good, but a type this receiver does not accept
    BAD_PAYLOAD = "bad_payload"  #: CRC good and type known, but wrong size or out-of-range values


M = TypeVar("M", bound=BoardMessage)


class FrameDecoder(Generic[M]):
    """Incremental decoder: feed it whatever the line delivers, get whole messages back.

    It never raises on input and keeps at most one partial frame (`MAX_FRAME` bytes) buffered. On a
    bad candidate it drops only the start byte and rescans, so a valid frame right behind garbage is
    still found. `accept` lists the message types this end receives (a host `BOARD_TO_HOST`, a board
    `HOST_TO_BOARD`); frames of any other type count as UNKNOWN_TYPE.
    """

    def __init__(self, accept: Collection[type[M]]) -> None:
        # cast: each class's parse returns that class, which the Collection says is an M
        self._parsers = {cls.TYPE: cast(Callable[[int, bytes], M], cls.parse) for cls in accept}
        self._buf = bytearray()
        self._dropped = dict.fromkeys(DropReason, 0)
        self.frames = 0
        """Valid frames decoded so far."""
        self.garbage_bytes = 0
        """Bytes skipped while looking for a start byte."""

    @property
    def dropped(self) -> Mapping[DropReason, int]:
        """Frames (or candidates) dropped so far, by reason (a copy)."""
        return dict(self._dropped)

    @property
    def pending(self) -> int:
        """Bytes of an incomplete frame waiting for the rest."""
        return len(self._buf)

    def feed(self, data: bytes | bytearray | memoryview) -> list[M]:
        """Add bytes from the line; return every message they complete, in order."""
        self._buf += data
        return self._scan()

    def expire(self) -> list[M]:
        """The line has been quiet for longer than a frame takes: what is buffered will not complete.

        Drops the partial frame as TRUNCATED, but rescans what followed its start byte first: a short
        valid frame may hide behind a start byte in garbage that announced a long payload.
        """
        out: list[M] = []
        while self._buf:
            self._drop(DropReason.TRUNCATED)
            out += self._scan()
        return out

    def _drop(self, reason: DropReason) -> None:
        self._dropped[reason] += 1
        del self._buf[:1]  # only the start byte: the next one may begin a real frame

    def _scan(self) -> list[M]:
        out: list[M] = []
        buf = self._buf
        while True:
            start = buf.find(SOF)
            if start < 0:
                self.garbage_bytes += len(buf)
                buf.clear()
                return out
            self.garbage_bytes += start
            del buf[:start]
            if len(buf) < 2:
                return out
            length = buf[1]
            if length > MAX_PAYLOAD:
                self._drop(DropReason.BAD_LENGTH)
                continue
            end = length + _OVERHEAD
            if len(buf) < end:
                return out
            if crc16_ccitt_false(memoryview(buf)[1 : end - 2]) != int.from_bytes(buf[end - 2 : end], "big"):
                self._drop(DropReason.BAD_CRC)
                continue
            seq, kind, payload = buf[2], buf[3], bytes(buf[4 : end - 2])
            del buf[:end]  # the CRC vouches for the whole frame: consume it even if we cannot use it
            parse = self._parsers.get(kind)
            if parse is None:
                self._dropped[DropReason.UNKNOWN_TYPE] += 1
                continue
            try:
                msg = parse(seq, payload)
            except ValueError:
                self._dropped[DropReason.BAD_PAYLOAD] += 1
                continue
            self.frames += 1
            out.append(msg)
