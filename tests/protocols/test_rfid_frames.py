"""RDM6300-style RFID framing: the datasheet's example frame, every drop reason, and a decoder that
survives any bytes and finds every valid frame between them."""

from __future__ import annotations

import pytest
from charger.protocols.rfid_frames import ETX, STX, RfidDecoder, RfidDropReason, encode_rfid_frame
from hypothesis import given
from hypothesis import strategies as st

# The example of the RDM630/RDM6300 datasheet: ID 62 E3 08 6C ED, checksum 62^E3^08^6C^ED = 08.
DATASHEET = bytes.fromhex("02 36 32 45 33 30 38 36 43 45 44 30 38 03")


def test_exact_wire_bytes_of_the_datasheet_example() -> None:
    assert encode_rfid_frame("62E3086CED") == DATASHEET
    assert encode_rfid_frame("62e3086ced") == DATASHEET
    assert RfidDecoder().feed(DATASHEET) == ["62E3086CED"]


@pytest.mark.parametrize("uid", ["62E3086C", "62E3086CEDFF", "62E3086CEX"])
def test_encode_refuses_what_is_not_an_em4100_id(uid: str) -> None:
    with pytest.raises(ValueError):
        encode_rfid_frame(uid)


def test_lower_case_digits_are_accepted() -> None:
    assert RfidDecoder().feed(DATASHEET.lower()) == ["62E3086CED"]  # STX/ETX are not letters


@pytest.mark.parametrize(
    "junk, reason",
    [
        (DATASHEET[:-3] + b"09\x03", RfidDropReason.BAD_CHECKSUM),
        (DATASHEET[:-1] + b"\x04", RfidDropReason.BAD_FRAME),  # no ETX
        (DATASHEET[:5] + b"G", RfidDropReason.BAD_FRAME),  # not a hex digit
        (DATASHEET[:7], RfidDropReason.TRUNCATED),  # a new STX arrives mid-frame
    ],
)
def test_bad_frames_are_dropped_and_the_next_one_found(junk: bytes, reason: RfidDropReason) -> None:
    d = RfidDecoder()
    assert d.feed(junk + encode_rfid_frame("0A1B2C3D4E")) == ["0A1B2C3D4E"]
    assert d.dropped[reason] == 1
    assert d.frames == 1


def test_a_frame_cut_off_by_silence_expires() -> None:
    d = RfidDecoder()
    assert d.feed(DATASHEET[:9]) == []
    assert d.pending == 9
    assert d.expire() == []
    assert d.dropped[RfidDropReason.TRUNCATED] == 1
    assert d.pending == 0


@given(st.lists(st.binary(max_size=40), max_size=20))
def test_arbitrary_bytes_never_raise(chunks: list[bytes]) -> None:
    d = RfidDecoder()
    for chunk in chunks:
        d.feed(chunk)
        assert d.pending < 14
    d.expire()


uids = st.binary(min_size=5, max_size=5).map(lambda b: b.hex().upper())


@given(st.lists(st.tuples(st.binary(max_size=20), uids), max_size=10), st.integers(1, 16))
def test_valid_frames_between_garbage_are_recovered(pieces: list[tuple[bytes, str]], chunk: int) -> None:
    # STX and ETX never occur inside a frame (hex digits only), so no garbage can hide a frame.
    stream = b"".join(junk + encode_rfid_frame(uid) for junk, uid in pieces)
    d = RfidDecoder()
    got = [uid for i in range(0, len(stream), chunk) for uid in d.feed(stream[i : i + chunk])] + d.expire()
    remaining = iter(got)
    assert all(any(uid == other for other in remaining) for _, uid in pieces), (pieces, got)
    assert STX != ETX
