"""The board link's framing: the CRC against its published check value, exact wire bytes, a round
trip of every message, every drop reason, and property tests that feed the decoder arbitrary bytes
and valid frames buried in garbage."""

from __future__ import annotations

import binascii

import pytest
from charger.protocols.board_frames import (
    BOARD_TO_HOST,
    HOST_TO_BOARD,
    MAX_FRAME,
    SOF,
    Ack,
    BoardMessage,
    BoardStatus,
    DropReason,
    FrameDecoder,
    Heartbeat,
    Nack,
    NackReason,
    Pilot,
    ResetFaults,
    SetLock,
    SetPwm,
    SetRelays,
    crc16_ccitt_false,
    encode,
)
from hypothesis import example, given
from hypothesis import strategies as st

from tests.support.fuzz import PURE, ROUND_TRIP

ALL = HOST_TO_BOARD + BOARD_TO_HOST


def decoder() -> FrameDecoder[BoardMessage]:
    return FrameDecoder[BoardMessage](ALL)


def frame(seq: int, kind: int, payload: bytes) -> bytes:
    """A frame with a correct CRC around any type and payload, valid or not."""
    body = bytes([len(payload), seq, kind]) + payload
    return bytes([SOF]) + body + crc16_ccitt_false(body).to_bytes(2, "big")


# --- CRC and exact bytes --------------------------------------------------------------------------


def test_crc_matches_the_catalogue_check_value() -> None:
    # CRC-16/CCITT-FALSE (CRC-16/IBM-3740 in Greg Cook's catalogue): check=0x29b1
    assert crc16_ccitt_false(b"123456789") == 0x29B1
    assert crc16_ccitt_false(b"") == 0xFFFF


@given(st.binary(max_size=64))
def test_crc_agrees_with_the_standard_library(data: bytes) -> None:
    # binascii.crc_hqx is the same polynomial, unreflected, with the initial value as its argument
    assert crc16_ccitt_false(data) == binascii.crc_hqx(data, 0xFFFF)


def test_exact_wire_bytes() -> None:
    assert encode(SetPwm(seq=7, duty_permille=160)) == bytes.fromhex("a5 02 07 02 00a0 df28")
    assert encode(SetPwm(seq=7, duty_permille=None)) == frame(7, 0x02, b"\xff\xff")
    assert encode(Ack(seq=7)) == bytes.fromhex("a5 00 07 82 e4c1")
    status = BoardStatus(
        seq=0x2A,
        pilot=Pilot.C,
        pwm_permille=160,
        relays_closed=True,
        rcd_milliamps=3,
        locked=True,
        watchdog_tripped=False,
        diode_fault=True,
    )
    # pilot 'C', duty 0x00a0, 3 mA, outputs relays|locked, faults diode
    assert encode(status) == bytes.fromhex("a5 07 2a 81 43 00a0 0003 03 04 6c78")


# --- round trips ----------------------------------------------------------------------------------

EXAMPLES: list[BoardMessage] = [
    Heartbeat(seq=0),
    SetPwm(seq=1, duty_permille=None),
    SetPwm(seq=2, duty_permille=0),
    SetPwm(seq=3, duty_permille=1000),
    SetRelays(seq=4, closed=True),
    SetRelays(seq=5, closed=False),
    SetLock(seq=6, locked=True),
    ResetFaults(seq=255),
    BoardStatus(
        seq=9,
        pilot=Pilot.F,
        pwm_permille=None,
        relays_closed=False,
        rcd_milliamps=65535,
        locked=False,
        watchdog_tripped=True,
        rcd_tripped=True,
        diode_fault=True,
        relay_welded=True,
    ),
    Ack(seq=10),
    *(Nack(seq=11, reason=reason) for reason in NackReason),
]


@pytest.mark.parametrize("msg", EXAMPLES, ids=lambda m: type(m).__name__)
def test_every_message_round_trips(msg: BoardMessage) -> None:
    assert decoder().feed(encode(msg)) == [msg]


seqs = st.integers(0, 255)
duties = st.none() | st.integers(0, 1000)
messages: st.SearchStrategy[BoardMessage] = st.one_of(
    st.builds(Heartbeat, seq=seqs),
    st.builds(SetPwm, seq=seqs, duty_permille=duties),
    st.builds(SetRelays, seq=seqs, closed=st.booleans()),
    st.builds(SetLock, seq=seqs, locked=st.booleans()),
    st.builds(ResetFaults, seq=seqs),
    st.builds(
        BoardStatus,
        seq=seqs,
        pilot=st.sampled_from(Pilot),
        pwm_permille=duties,
        relays_closed=st.booleans(),
        rcd_milliamps=st.integers(0, 65535),
        locked=st.booleans(),
        watchdog_tripped=st.booleans(),
        rcd_tripped=st.booleans(),
        diode_fault=st.booleans(),
        relay_welded=st.booleans(),
    ),
    st.builds(Ack, seq=seqs),
    st.builds(Nack, seq=seqs, reason=st.sampled_from(NackReason)),
)


@ROUND_TRIP
@given(messages)
def test_any_message_round_trips(msg: BoardMessage) -> None:
    encoded = encode(msg)
    assert len(encoded) <= MAX_FRAME
    assert decoder().feed(encoded) == [msg]


def test_messages_refuse_values_the_wire_cannot_carry() -> None:
    with pytest.raises(ValueError, match="seq"):
        Heartbeat(seq=256)
    with pytest.raises(ValueError, match="duty"):
        SetPwm(seq=0, duty_permille=1001)
    with pytest.raises(ValueError, match="rcd_milliamps"):
        BoardStatus(
            seq=0,
            pilot=Pilot.A,
            pwm_permille=None,
            relays_closed=False,
            rcd_milliamps=-1,
            locked=False,
            watchdog_tripped=False,
        )


# --- every drop reason ----------------------------------------------------------------------------


def test_bad_crc_is_dropped_and_the_next_frame_found() -> None:
    d = decoder()
    broken = bytearray(encode(SetRelays(seq=1, closed=True)))
    broken[4] ^= 0x01  # the payload byte: CRC-16 catches every burst of 16 bits or less
    assert d.feed(bytes(broken) + encode(Ack(seq=2))) == [Ack(seq=2)]
    assert d.dropped[DropReason.BAD_CRC] == 1


def test_a_length_above_the_maximum_is_not_waited_for() -> None:
    d = decoder()
    assert d.feed(bytes([SOF, 0xFF]) + encode(Ack(seq=3))) == [Ack(seq=3)]
    assert d.dropped[DropReason.BAD_LENGTH] == 1


def test_unknown_types_and_the_other_direction_are_dropped() -> None:
    host = FrameDecoder(BOARD_TO_HOST)
    assert host.feed(frame(1, 0x7F, b"future") + encode(Heartbeat(seq=2)) + encode(Ack(seq=3))) == [Ack(seq=3)]
    assert host.dropped[DropReason.UNKNOWN_TYPE] == 2


@pytest.mark.parametrize(
    "kind, payload",
    [
        (0x01, b"\x00"),  # Heartbeat has no payload
        (0x02, b"\x03\xe9"),  # duty 1001 permille
        (0x03, b"\x02"),  # a boolean that is neither 0 nor 1
        (0x81, b"Z\xff\xff\x00\x00\x00\x00"),  # pilot letter outside A..F
        (0x81, b"A\xff\xff\x00\x00\x00"),  # one byte short
        (0x83, b""),  # Nack without a reason
    ],
)
def test_bad_payloads_are_dropped(kind: int, payload: bytes) -> None:
    d = decoder()
    assert d.feed(frame(1, kind, payload)) == []
    assert d.dropped[DropReason.BAD_PAYLOAD] == 1
    assert d.pending == 0  # the CRC vouched for the frame, so all of it was consumed


def test_unknown_nack_reasons_and_reserved_bits_are_tolerated() -> None:
    # forward compatibility: newer firmware may add reasons and flags
    assert decoder().feed(frame(5, 0x83, b"\x99")) == [Nack(seq=5, reason=NackReason.OTHER)]
    (status,) = decoder().feed(frame(6, 0x81, b"A\xff\xff\x00\x00\xfc\xf0"))
    assert isinstance(status, BoardStatus)
    assert not (status.relays_closed or status.locked or status.watchdog_tripped or status.relay_welded)


def test_a_frame_cut_short_expires_as_truncated() -> None:
    d = decoder()
    whole = encode(SetLock(seq=1, locked=True))
    assert d.feed(whole[:-2]) == []
    assert d.pending == len(whole) - 2
    assert d.expire() == []
    assert d.dropped[DropReason.TRUNCATED] == 1
    assert d.pending == 0


def test_expire_finds_a_frame_hidden_behind_a_long_announced_length() -> None:
    # A start byte in garbage announcing 30 bytes swallows a short frame until the line goes quiet.
    d = decoder()
    assert d.feed(bytes([SOF, 30]) + encode(Ack(seq=9))) == []
    assert d.expire() == [Ack(seq=9)]
    assert d.dropped[DropReason.TRUNCATED] == 1


def test_frames_split_across_feeds() -> None:
    d = decoder()
    data = encode(Heartbeat(seq=1)) + encode(SetPwm(seq=2, duty_permille=500))
    got = [msg for byte in data for msg in d.feed(bytes([byte]))]
    assert got == [Heartbeat(seq=1), SetPwm(seq=2, duty_permille=500)]
    assert d.frames == 2


def test_garbage_bytes_are_counted() -> None:
    d = decoder()
    assert d.feed(b"\x00\x01noise" + encode(Ack(seq=1))) == [Ack(seq=1)]
    assert d.garbage_bytes == 7


# --- properties -----------------------------------------------------------------------------------


@PURE
@given(st.lists(st.binary(max_size=80), max_size=20))
def test_arbitrary_bytes_never_raise_and_never_pile_up(chunks: list[bytes]) -> None:
    d = decoder()
    for chunk in chunks:
        d.feed(chunk)
        assert d.pending < MAX_FRAME  # at most one partial frame is ever buffered
    d.expire()
    assert d.pending == 0


@st.composite
def noise(draw: st.DrawFn) -> bytes:
    """Garbage as a line produces it: random bytes, start bytes, cut-off and corrupted frames."""
    kind = draw(st.sampled_from(["random", "start", "cut", "corrupt"]))
    if kind == "random":
        return draw(st.binary(min_size=1, max_size=40))
    if kind == "start":
        return bytes([SOF, draw(st.integers(0, 255))])
    whole = encode(draw(messages))
    if kind == "cut":
        return whole[: draw(st.integers(1, len(whole) - 1))]
    broken = bytearray(whole)
    broken[draw(st.integers(2, len(whole) - 1))] ^= draw(st.integers(1, 255))  # not SOF or LEN
    return bytes(broken)


@given(
    st.lists(st.tuples(st.lists(noise(), max_size=3), messages), max_size=12),
    st.lists(noise(), max_size=3),
    st.data(),
)
def test_valid_frames_between_garbage_are_all_recovered(
    pieces: list[tuple[list[bytes], BoardMessage]], tail: list[bytes], data: st.DataObject
) -> None:
    stream = b"".join(b"".join(junk) + encode(msg) for junk, msg in pieces) + b"".join(tail)
    expected = [msg for _, msg in pieces]
    d = decoder()
    got: list[BoardMessage] = []
    position = 0
    while position < len(stream):  # however the line happens to chunk the bytes
        size = data.draw(st.integers(1, 64))
        got += d.feed(stream[position : position + size])
        position += size
    got += d.expire()
    # Garbage could, with odds of 2^-16 per start byte, hold a frame of its own: require the valid
    # frames in order, allowing extras between them.
    remaining = iter(got)
    assert all(any(msg == other for other in remaining) for msg in expected), (expected, got)


_TYPES = {cls.TYPE: cls for cls in (Heartbeat, SetPwm, SetRelays, SetLock, ResetFaults, BoardStatus, Ack, Nack)}


@PURE
@given(
    st.sampled_from(sorted(_TYPES)),
    seqs,
    st.integers(0, 8).flatmap(lambda n: st.binary(min_size=n, max_size=n)) | st.binary(max_size=32),
)
@example(BoardStatus.TYPE, 0, b"\xff" * 7)  # pilot 0xFF is no letter; reserved bits set
@example(Nack.TYPE, 0, b"\xff")  # an unknown reason is tolerated as OTHER
def test_any_payload_under_a_good_crc_parses_or_raises_value_error(kind: int, seq: int, payload: bytes) -> None:
    # Random bytes almost never pass the CRC, so the payload parsers are fuzzed here directly, as the
    # decoder calls them once a CRC matched: ValueError is the only way they may refuse.
    cls = _TYPES[kind]
    try:
        msg = cls.parse(seq, payload)
    except ValueError:
        return
    assert msg.seq == seq and cls.parse(seq, msg.payload()) == msg  # what it kept survives a re-encode
    assert decoder().feed(encode(msg)) == [msg]
