"""The journal: records and log entries survive reopening, and a log append with record updates is atomic."""

from __future__ import annotations

import multiprocessing
import os
import signal
from pathlib import Path

import pytest

from charger.journal import Journal


def test_records_and_log_survive_reopening(tmp_path: Path) -> None:
    j = Journal(tmp_path / "x.db")
    j.put("machine", {"state": "Charging", "faults": {}})
    j.put("machine", {"state": "Idle", "faults": {}})
    assert j.append("session", {"id": "a"}) < j.append("session", {"id": "b"})
    j.close()
    j = Journal(tmp_path / "x.db")
    assert j.get("machine") == {"state": "Idle", "faults": {}}
    assert j.get("missing", 7) == 7
    assert j.entries("session") == [{"id": "a"}, {"id": "b"}]
    assert j.entries("session", limit=1) == [{"id": "b"}]
    assert j.count("session") == 2 and j.count("other") == 0


def test_append_updates_records_in_the_same_transaction(tmp_path: Path) -> None:
    j = Journal(tmp_path / "x.db")
    j.put("closing", [1])
    j.append("session", {"id": "a"}, also_put={"closing": None, "total": 5.5})
    assert j.get("closing") is None and j.get("total") == 5.5
    with pytest.raises(TypeError):
        j.append("session", {"id": "b"}, also_put={"total": object()})  # msgpack refuses: nothing is written
    assert j.count("session") == 1 and j.get("total") == 5.5


def _write_then_die(path: str) -> None:
    j = Journal(path)
    j.put("machine", {"n": 1})
    j.append("session", {"id": "a"})
    os.kill(os.getpid(), signal.SIGKILL)  # no close, no atexit: what was committed must be there


def test_committed_writes_survive_sigkill(tmp_path: Path) -> None:
    path = str(tmp_path / "x.db")
    child = multiprocessing.get_context("fork").Process(target=_write_then_die, args=(path,))
    child.start()
    child.join()
    assert child.exitcode == -signal.SIGKILL
    j = Journal(path)
    assert j.get("machine") == {"n": 1} and j.entries("session") == [{"id": "a"}]
