"""CardReaderSim: a simulated RFID reader behind a pty link, the far end of a `CardReader` in SIL.

It owns the pty (``charger.sim.rfid.RfidReaderSimulator``) and symlinks its slave to ``link`` under
the state dir, where a `CardReader` opens it. `PresentCard` writes the card's frame a few times, as a
real reader repeats it while the card is held; the reader folds the repeats into one presentation.
The pty master is non-blocking, so no I/O thread is needed.

Start it before the `CardReader` in a topology (list it earlier in its supervisor), so the link exists
when the reader first opens it. After a restart the link points to a fresh pty and the reader reopens it.
"""

from __future__ import annotations

import os
import re
from typing import ClassVar

from charger.actors.charging import CARD_READER_SIM, PresentCard
from charger.sim.rfid import RfidReaderSimulator

from charger.behaviour import Behaviour, handles
from charger.errors import Rejected
from charger.lifecycle import Ack

__all__ = ["CardReaderSim"]

_EM4100_UID = re.compile(r"[0-9A-Fa-f]{10}")


class CardReaderSim(Behaviour):
    description = "A simulated RFID reader on a pty; PresentCard holds a card to it."
    provides = {"sim": CARD_READER_SIM}
    config_schema: ClassVar = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "link": {
                "type": ["string", "null"],
                "default": None,
                "description": "Symlink to the pty (relative to the state dir); default '<name>.rfid'.",
            },
            "repeats": {
                "type": "integer",
                "minimum": 1,
                "default": 3,
                "description": "Frames sent per presentation (a reader repeats while the card is held).",
            },
        },
    }

    def init(self) -> None:
        link = self.config["link"] or f"{self.name}.rfid"
        self.sim = RfidReaderSimulator(link=os.path.join(self.state_dir, link))
        self.log.info("simulated card reader on %s", self.sim.port)

    def terminate(self, reason: str) -> None:
        self.sim.close()

    @handles(PresentCard)
    def on_present(self, msg: PresentCard) -> Ack:
        if not _EM4100_UID.fullmatch(msg.uid):
            raise Rejected(f"card UID {msg.uid!r} is not an EM4100 ID (10 hex digits, e.g. 04A1B2C3D4)")
        self.sim.present(msg.uid.upper(), repeats=self.config["repeats"])
        return Ack()
