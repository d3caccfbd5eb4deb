"""CardReader and CardReaderSim in a real actor system: the real serial driver on a real pty. A card held
to the reader is one TokenRead however often the reader repeats it; garbage on the line and a reader
that restarts behind its link cost nothing but a reopen."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from charger.actors.charging import PresentCard
from charger.sim.rfid import RfidReaderSimulator

from charger.errors import Rejected
from charger.lifecycle import Ack
from charger.testing import RunningSystem
from tests.conftest import group, worker
from tests.support.recorder import GetRecorded

CARD_A, CARD_B, CARD_C = "04A1B2C3D4", "04F5E6D7C8", "0411223344"


def recorder() -> Any:
    return worker("rec", actor="tests.support.recorder:Recorder", config={"subscribe": {"reader": ["TokenRead"]}})


def token_reads(system: RunningSystem) -> list[tuple[str, str]]:
    recorded = system.client.call("rec", GetRecorded(tag="TokenRead"))
    return [(fields["uid"], fields["reader"]) for _i, _tag, fields, _at in recorded.items]


def wait_reads(system: RunningSystem, count: int, timeout: float = 10.0) -> list[tuple[str, str]]:
    deadline = time.monotonic() + timeout
    while len(reads := token_reads(system)) < count:
        if time.monotonic() > deadline:
            raise AssertionError(f"expected {count} TokenRead within {timeout} s, got {reads}")
        time.sleep(0.05)
    return reads


@pytest.fixture
def with_sim(start_tree: Any) -> Any:
    tree = group(
        "root",
        worker("sim", actor="CardReaderSim", config={"link": "rfid.pty"}),
        worker("reader", actor="CardReader", config={"port": "rfid.pty"}),
        recorder(),
        intensity=20,
    )
    with start_tree(tree) as system:
        yield system


def test_a_presented_card_is_one_token_read(with_sim: RunningSystem) -> None:
    assert isinstance(with_sim.client.call("sim", PresentCard(uid=CARD_A)), Ack)  # three frames on the wire
    with_sim.client.call("sim", PresentCard(uid=CARD_B.lower()))
    # B arrives after every repeat of A, so A's repeats were folded, not merely late.
    assert wait_reads(with_sim, 2) == [(CARD_A, "reader"), (CARD_B, "reader")]


def test_a_malformed_uid_is_refused_with_a_reason(with_sim: RunningSystem) -> None:
    for uid in ("", "04A1B2C3", "04A1B2C3D4E5", "04 A1 B2 C3 D4", "04A1B2C3DG"):
        with pytest.raises(Rejected, match="10 hex digits"):
            with_sim.client.call("sim", PresentCard(uid=uid))
    assert "sim" not in with_sim.status().restarts


def test_the_reader_reopens_its_port_after_the_simulator_restarts(with_sim: RunningSystem) -> None:
    with_sim.client.call("sim", PresentCard(uid=CARD_A))
    wait_reads(with_sim, 1)
    pid = with_sim.pid_of("sim")
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while with_sim.pid_of("sim") == pid:
        assert time.monotonic() < deadline, "the simulator was not restarted"
        time.sleep(0.05)
    # The reader finds the new pty behind the link on its own; present until it has.
    deadline = time.monotonic() + 10
    while len(token_reads(with_sim)) < 2:
        assert time.monotonic() < deadline, f"no read after the restart: {token_reads(with_sim)}"
        with_sim.client.call("sim", PresentCard(uid=CARD_B))
        time.sleep(0.2)
    assert token_reads(with_sim) == [(CARD_A, "reader"), (CARD_B, "reader")]
    assert "reader" not in with_sim.status().restarts


def test_garbage_on_the_line_does_not_disturb_the_reader(start_tree: Any, tmp_path: Path) -> None:
    tree = group("root", worker("reader", actor="CardReader", config={"port": "noisy.pty"}), recorder())
    # The simulator comes up after the reader, which keeps retrying until the link exists.
    with start_tree(tree) as system, RfidReaderSimulator(link=tmp_path / "noisy.pty") as sim:
        deadline = time.monotonic() + 10
        while not token_reads(system):  # repeats within hold_s fold into one presentation
            assert time.monotonic() < deadline, "the reader never opened the late link"
            sim.present(CARD_A)
            time.sleep(0.1)
        pid = system.pid_of("reader")
        sim.inject(b"\xff\x00garbage\x02\x0204A1B2C3D4FF\x03\x02" + bytes(range(256)) + b"\x03")
        sim.inject(b"\x02" + b"0" * 40 + b"\x03\x02\x03")
        sim.present(CARD_C, repeats=3)
        assert wait_reads(system, 2) == [(CARD_A, "reader"), (CARD_C, "reader")]
        assert system.pid_of("reader") == pid and "reader" not in system.status().restarts
