"""CsmsSim (SIL only): our simulated OCPP 1.6J CSMS (`charger.sim.csms`) as an actor, on loopback, so a
topology can carry its own central system. Pointing a station at a real CSMS is a change of the
BackendLink's URL and credentials; this actor is then deleted.

The simulator runs on this actor's asyncio I/O thread. Every frame and link event goes to a JSON-lines
record under the state directory (`record`, default ``<name>.frames.jsonl``; the format of
`charger.sim.csms_record`), and each transaction the CSMS sees is logged at INFO, e.g.
``CP1: StartTransaction connector 1 idTag 04A1B2C3D4 meterStart 1520 -> transactionId 7``.
"""

from __future__ import annotations

import asyncio
import io
import json
import time
from collections.abc import Generator
from pathlib import Path
from typing import Any, ClassVar

from charger.sim.csms import CsmsBehaviour, CsmsSecurity, CsmsSimulator

from charger.behaviour import Behaviour, Pending
from charger.journal import write_file_atomically

__all__ = ["CsmsSim"]

_STOP_WAIT_S = 5.0
_FILE = {"type": ["string", "null"], "default": None}
_LOGGED = frozenset({"BootNotification", "StartTransaction", "StopTransaction"})


class CsmsSim(Behaviour):
    description = "SIL only: a simulated OCPP 1.6J CSMS on loopback, recording every frame."
    config_schema: ClassVar = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "host": {"type": "string", "default": "127.0.0.1", "description": "Interface to listen on."},
            "port": {"type": "integer", "minimum": 0, "maximum": 65535, "default": 9180, "description": "0: any."},
            "port_file": {**_FILE, "description": "Write the port actually bound here (relative: state dir)."},
            "record": {**_FILE, "description": "JSON-lines record of every frame; null: <name>.frames.jsonl."},
            "basic_auth": {
                "type": "object",
                "default": {},
                "additionalProperties": {"type": "string"},
                "description": "Charge point id -> password (profiles 1 and 2); empty: no Basic auth.",
            },
            "tls_cert": {**_FILE, "description": "PEM server certificate: serve wss:// (profiles 2 and 3)."},
            "tls_key": _FILE,
            "client_ca": {**_FILE, "description": "Profile 3: client certificates must chain to this CA."},
            "boot_status": {"enum": ["Accepted", "Pending", "Rejected"], "default": "Accepted"},
            "boot_interval": {"type": "integer", "minimum": 0, "default": 300},
            "id_tags": {
                "type": "object",
                "default": {},
                "additionalProperties": {"enum": ["Accepted", "Blocked", "Expired", "Invalid", "ConcurrentTx"]},
                "description": "AuthorizationStatus per idTag; the others are Accepted.",
            },
            "first_transaction_id": {
                "type": ["integer", "null"],
                "minimum": 1,
                "default": None,
                "description": "null: from the clock, so that ids do not repeat after a restart.",
            },
        },
    }

    def init(self) -> Generator[Pending, Any, None]:
        cfg = self.config
        path = self._path(cfg["record"] or f"{self.name}.frames.jsonl")
        assert path is not None
        self.record = _LoggingRecord(path, self)
        first_id = cfg["first_transaction_id"] or int(time.time()) % 1_000_000_000
        self.simulator = CsmsSimulator(
            host=cfg["host"],
            port=cfg["port"],
            security=CsmsSecurity(
                basic_auth=cfg["basic_auth"],
                tls_cert=self._path(cfg["tls_cert"]),
                tls_key=self._path(cfg["tls_key"]),
                client_ca=self._path(cfg["client_ca"]),
            ),
            behaviour=CsmsBehaviour(
                boot_status=cfg["boot_status"], boot_interval=cfg["boot_interval"], id_tags=cfg["id_tags"]
            ),
            first_transaction_id=first_id,
            record=self.record,
        )
        yield self.run_async(self.simulator.start())
        if cfg["port_file"]:
            port_file = self._path(cfg["port_file"])
            assert port_file is not None
            write_file_atomically(port_file, str(self.simulator.port))
        self.log.info("CSMS simulator listening on %s, recording to %s", self.simulator.url, path)

    def terminate(self, reason: str) -> None:
        simulator = getattr(self, "simulator", None)
        if simulator is not None:
            try:
                asyncio.run_coroutine_threadsafe(simulator.stop(), self._rt.io().loop).result(timeout=_STOP_WAIT_S)
            except Exception as exc:  # noqa: BLE001 - a stuck server must not keep the actor from exiting
                self.log.warning("CSMS simulator did not stop cleanly: %s", exc)
        record = getattr(self, "record", None)
        if record is not None:
            record.close()

    def _path(self, path: str | None) -> Path | None:
        return None if path is None else Path(self.state_dir, path)  # an absolute path stays as it is

    def frame_seen(self, line: str) -> None:
        """A record line: log the transactions the CSMS sees (runs on the I/O thread; logging is thread-safe)."""
        try:
            entry = json.loads(line)
            frame = json.loads(entry["frame"])
        except (ValueError, KeyError, TypeError):
            return
        if not isinstance(frame, list) or len(frame) != 4 or frame[0] != 2 or frame[2] not in _LOGGED:
            return
        payload = frame[3] if isinstance(frame[3], dict) else {}
        details = " ".join(f"{k} {v}" for k, v in payload.items() if k in _SHOWN)
        way = "sent" if entry.get("dir") == "tx" else "received"
        self.log.info("%s: %s %s %s", entry.get("cp", "?"), way, frame[2], details)


_SHOWN = frozenset({"connectorId", "idTag", "meterStart", "meterStop", "transactionId", "reason", "chargePointModel"})


class _LoggingRecord(io.StringIO):
    """The simulator's record sink: each line goes to the record file, and transactions to the log."""

    def __init__(self, path: Path, actor: CsmsSim) -> None:
        super().__init__()
        self._file = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()
        self._actor = actor

    def write(self, text: str) -> int:
        self._file.write(text)
        for line in text.splitlines():
            self._actor.frame_seen(line)
        return len(text)

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        self._file.close()
        super().close()
