"""CardReader: an RDM6300-style RFID reader on a serial port, publishing one `TokenRead` per presentation.

The driver (`charger.hal.rfid.SerialRfidReader`) polls on the I/O thread, folds the frames a reader
repeats while a card stays in the field into one presentation, and drops garbage. When the port fails
(adapter unplugged, a simulated reader restarting behind its pty link) the actor closes it and opens
the same path again until it works; it never crashes on what arrives on the wire.

In a SIL topology, start the `CardReaderSim` that owns the pty link before this actor; if it comes up
later, the reader simply keeps retrying until the link exists.
"""

from __future__ import annotations

import os
from collections.abc import Generator
from typing import Any, ClassVar

from charger.actors.charging import TOKEN_READER, TokenRead
from charger.hal.rfid import RfidLinkError, SerialRfidReader

from charger.behaviour import Behaviour, Pending

__all__ = ["CardReader"]

_POLL_S = 0.2  # how long one poll may block the I/O thread; also bounds how long terminate waits


class CardReader(Behaviour):
    description = "Reads RFID cards from a serial reader and publishes TokenRead per presentation."
    provides = {"reader": TOKEN_READER}
    config_schema: ClassVar = {
        "type": "object",
        "additionalProperties": False,
        "required": ["port"],
        "properties": {
            "port": {"type": "string", "minLength": 1, "description": "Serial device (relative to the state dir)."},
            "baudrate": {"type": "integer", "minimum": 1, "default": 9600},
            "hold_s": {
                "type": "number",
                "exclusiveMinimum": 0,
                "default": 1.0,
                "description": "Reads of one card closer together than this are one presentation.",
            },
            "reopen_s": {"type": "number", "exclusiveMinimum": 0, "default": 0.5},
        },
    }

    def init(self) -> Generator[Pending, Any, None]:
        self.path = os.path.join(self.state_dir, self.config["port"])
        self.reader: SerialRfidReader | None = None
        self.stopping = False
        self.link_down_logged = False
        # Open once before reporting started: a card presented to a reader that is "up" is then never
        # flushed by the driver's open. Failing here is fine: the loop keeps trying.
        try:
            self.reader = yield self.run_io(self._open)
            self.log.info("reading cards on %s", self.path)
        except RfidLinkError as exc:
            self._link_down(exc)
        self.run_task(self._run())

    def terminate(self, reason: str) -> None:
        self.stopping = True
        if self.reader is not None:
            self.reader.close()  # waits for a poll in progress, at most _POLL_S

    def _run(self) -> Generator[Pending, Any, None]:
        while not self.stopping:
            try:
                if self.reader is None:
                    self.reader = yield self.run_io(self._open)
                    self.log.info("reading cards on %s", self.path)
                    self.link_down_logged = False
                for token in (yield self.run_io(self.reader.poll, _POLL_S)):
                    self.log.info("card %s presented", token.uid)
                    self.publish(TokenRead(uid=token.uid, reader=self.name))
            except Exception as exc:  # noqa: BLE001 - whatever the port does, reopen it rather than crash
                self._link_down(exc)
                if self.reader is not None:
                    self.run_io(self.reader.close)
                    self.reader = None
                yield self.sleep(self.config["reopen_s"])

    def _open(self) -> SerialRfidReader:
        return SerialRfidReader(self.path, baudrate=self.config["baudrate"], hold_s=self.config["hold_s"])

    def _link_down(self, exc: Exception) -> None:
        if not isinstance(exc, RfidLinkError):
            self.log.error("unexpected error from the reader: %s", exc, exc_info=exc)
        elif not self.link_down_logged:
            self.log.warning("reader link down, retrying every %g s: %s", self.config["reopen_s"], exc)
        self.link_down_logged = True
