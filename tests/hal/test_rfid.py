"""The real pyserial RFID driver against the simulated reader on a real pty: presented cards arrive
as `TokenPresented` events, held cards count once, and garbage between frames is dropped."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from charger.hal.rfid import RfidLinkError, RfidReader, SerialRfidReader, TokenPresented
from charger.protocols.rfid_frames import RfidDropReason, encode_rfid_frame
from charger.sim.rfid import RfidReaderSimulator

from tests.support.resources import ManualClock, no_leaks


@pytest.fixture(autouse=True)
def _no_leaks() -> Iterator[None]:
    yield from no_leaks(settle=0.0)


@pytest.fixture
def sim() -> Iterator[RfidReaderSimulator]:
    with RfidReaderSimulator() as reader_sim:
        yield reader_sim


def collect(reader: SerialRfidReader, count: int, timeout: float = 2.0) -> list[TokenPresented]:
    deadline = time.monotonic() + timeout
    events: list[TokenPresented] = []
    while len(events) < count and time.monotonic() < deadline:
        events += reader.poll(0.1)
    return events


def test_presented_tokens_arrive(sim: RfidReaderSimulator) -> None:
    with SerialRfidReader(sim.port) as reader:
        seam: RfidReader = reader
        assert seam.poll(0.0) == []
        sim.present("62E3086CED")
        sim.present("0a1b2c3d4e")
        assert collect(reader, 2) == [TokenPresented(uid="62E3086CED"), TokenPresented(uid="0A1B2C3D4E")]


def test_a_card_held_in_the_field_counts_once_until_it_is_taken_away(sim: RfidReaderSimulator) -> None:
    clock = ManualClock()
    with SerialRfidReader(sim.port, hold_s=1.0, clock=clock) as reader:
        sim.present("62E3086CED", repeats=5)
        assert collect(reader, 1) == [TokenPresented(uid="62E3086CED")]
        assert collect(reader, 1, timeout=0.3) == []  # the four repeats fold into the first read
        assert reader.stats().repeats == 4
        clock.advance(1.5)  # the card was taken away and comes back
        sim.present("62E3086CED")
        assert collect(reader, 1) == [TokenPresented(uid="62E3086CED")]


def test_garbage_between_frames_is_dropped(sim: RfidReaderSimulator) -> None:
    with SerialRfidReader(sim.port) as reader:
        good = encode_rfid_frame("62E3086CED")
        sim.inject(b"\r\nnoise\xff\x00")
        sim.inject(good[:-3] + b"00\x03")  # wrong checksum
        sim.inject(good[:6])  # cut off by the next frame's STX
        sim.present("0A1B2C3D4E")
        sim.inject(good[:-1] + b"\r")  # no ETX
        sim.present("1122334455")
        events = collect(reader, 2)
        assert events == [TokenPresented(uid="0A1B2C3D4E"), TokenPresented(uid="1122334455")]
        stats = reader.stats()
        assert stats.dropped[RfidDropReason.BAD_CHECKSUM] == 1
        assert stats.dropped[RfidDropReason.TRUNCATED] == 1
        assert stats.dropped[RfidDropReason.BAD_FRAME] == 1
        assert stats.garbage_bytes >= len(b"\r\nnoise\xff\x00")
        assert stats.frames == 2


def test_a_frame_cut_off_by_silence_is_dropped(sim: RfidReaderSimulator) -> None:
    with SerialRfidReader(sim.port) as reader:
        sim.inject(encode_rfid_frame("62E3086CED")[:8])
        deadline = time.monotonic() + 2.0
        while reader.stats().dropped[RfidDropReason.TRUNCATED] == 0 and time.monotonic() < deadline:
            reader.poll(0.05)
        assert reader.stats().dropped[RfidDropReason.TRUNCATED] == 1
        sim.present("62E3086CED")
        assert collect(reader, 1) == [TokenPresented(uid="62E3086CED")]


def test_a_symlink_names_the_port(tmp_path: Path) -> None:
    link = tmp_path / "rfid0"
    with RfidReaderSimulator(link=link) as sim, SerialRfidReader(sim.port) as reader:
        sim.present("62E3086CED")
        assert collect(reader, 1) == [TokenPresented(uid="62E3086CED")]
    assert not link.exists()


def test_port_errors_are_typed(sim: RfidReaderSimulator) -> None:
    with pytest.raises(RfidLinkError):
        SerialRfidReader("/dev/no-such-reader")
    reader = SerialRfidReader(sim.port)
    reader.close()
    reader.close()
    with pytest.raises(RfidLinkError):
        reader.poll(0.1)


def test_a_reader_that_disappears_raises_rfid_link_error() -> None:
    sim = RfidReaderSimulator()
    reader = SerialRfidReader(sim.port)
    try:
        sim.close()
        with pytest.raises(RfidLinkError):
            reader.poll(0.5)
    finally:
        reader.close()
        sim.close()
