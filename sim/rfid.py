"""Simulated RDM6300-style RFID reader on a pseudo-terminal: the far end of `SerialRfidReader`.

A reader only talks (it never reads the host), so the simulator needs no thread: `present` writes the
card's frame to the pty master from the caller's thread, as often as a real reader would repeat it
while the card stays in the field.
"""

from __future__ import annotations

import os

from charger.protocols.rfid_frames import encode_rfid_frame
from charger.sim._pty import PtyPort

__all__ = ["RfidReaderSimulator"]


class RfidReaderSimulator:
    """A card reader behind a pty. `port` is what `SerialRfidReader` opens."""

    def __init__(self, *, link: str | os.PathLike[str] | None = None) -> None:
        self._pty = PtyPort(link)

    @property
    def port(self) -> str:
        return self._pty.port

    def present(self, uid: str, *, repeats: int = 1) -> None:
        """Hold a card (10 hex digits) to the reader for `repeats` reads."""
        frame = encode_rfid_frame(uid)
        for _ in range(repeats):
            self._pty.write(frame)

    def inject(self, data: bytes) -> None:
        """Write raw bytes towards the host (noise, broken frames)."""
        self._pty.write(data)

    def close(self) -> None:
        self._pty.close()

    def __enter__(self) -> RfidReaderSimulator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
