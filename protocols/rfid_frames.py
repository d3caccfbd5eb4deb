"""ASCII framing of RDM6300-style serial RFID readers (pure, no I/O).

Many cheap UART/USB 125 kHz readers (RDM6300, RDM630 and their clones; EM4100/TK4100 cards) send
one 14-byte frame per read, at 9600 8N1, and repeat it while the card stays in the field::

    +------+------------------------------+------------------------+------+
    | 0x02 | 10 ASCII hex digits: the ID  | 2 ASCII hex: checksum  | 0x03 |
    +------+------------------------------+------------------------+------+

The ID is 5 bytes (a version/customer byte and the 32-bit card number). The checksum is the XOR of
those 5 bytes. Readers send upper-case digits; lower case is accepted. The UID handed on is the 10
digits in upper case, e.g. ``"0A1B2C3D4E"``.
"""

from __future__ import annotations

import enum
import functools
import operator
from collections.abc import Mapping

__all__ = ["ETX", "FRAME_LEN", "STX", "RfidDecoder", "RfidDropReason", "encode_rfid_frame"]

STX, ETX = 0x02, 0x03
FRAME_LEN = 14
_HEX = frozenset(b"0123456789ABCDEFabcdef")


class RfidDropReason(enum.StrEnum):
    """Why the decoder threw a frame candidate away."""

    BAD_FRAME = "bad_frame"  #: a byte that is not a hex digit, or no ETX at byte 13
    BAD_CHECKSUM = "bad_checksum"  #: well formed, but the XOR does not match
    TRUNCATED = "truncated"  #: a new STX, or a quiet line, before the frame was complete


def _checksum(uid: bytes) -> int:
    return functools.reduce(operator.xor, uid, 0)


def encode_rfid_frame(uid: str) -> bytes:
    """The frame a reader sends for `uid` (10 hex digits)."""
    raw = bytes.fromhex(uid)  # ValueError for anything but hex digits
    if len(raw) != 5:
        raise ValueError(f"an EM4100 ID is 10 hex digits, got {uid!r}")
    return bytes([STX]) + f"{raw.hex().upper()}{_checksum(raw):02X}".encode("ascii") + bytes([ETX])


class RfidDecoder:
    """Incremental decoder: bytes in, UIDs out. Never raises on input; buffers at most one frame."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._dropped = dict.fromkeys(RfidDropReason, 0)
        self.frames = 0
        self.garbage_bytes = 0

    @property
    def dropped(self) -> Mapping[RfidDropReason, int]:
        return dict(self._dropped)

    @property
    def pending(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes | bytearray | memoryview) -> list[str]:
        """Add bytes from the line; return the UID of every frame they complete."""
        self._buf += data
        return self._scan()

    def expire(self) -> list[str]:
        """The line went quiet: a partial frame in the buffer will not complete."""
        out: list[str] = []
        while self._buf:
            self._drop(RfidDropReason.TRUNCATED)
            out += self._scan()
        return out

    def _drop(self, reason: RfidDropReason) -> None:
        self._dropped[reason] += 1
        del self._buf[:1]  # only the STX: a real frame may start right behind it

    def _scan(self) -> list[str]:
        out: list[str] = []
        buf = self._buf
        while True:
            start = buf.find(STX)
            if start < 0:
                self.garbage_bytes += len(buf)
                buf.clear()
                return out
            self.garbage_bytes += start
            del buf[:start]
            # Check the digits we already have, so a broken frame is dropped without waiting for 14 bytes.
            digits = buf[1 : FRAME_LEN - 1]
            bad = next((i for i, b in enumerate(digits) if b not in _HEX), None)
            if bad is not None:
                self._drop(RfidDropReason.TRUNCATED if digits[bad] == STX else RfidDropReason.BAD_FRAME)
                continue
            if len(buf) < FRAME_LEN:
                return out
            if buf[FRAME_LEN - 1] != ETX:
                self._drop(RfidDropReason.BAD_FRAME)
                continue
            raw = bytes.fromhex(buf[1:13].decode("ascii"))
            if _checksum(raw[:5]) != raw[5]:
                self._drop(RfidDropReason.BAD_CHECKSUM)
                continue
            del buf[:FRAME_LEN]
            self.frames += 1
            out.append(raw[:5].hex().upper())
