"""The replay window: every (sender, destination, number) is accepted once, recent frames only."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from charger.replay_guard import WINDOW, ReplayGuard, Sequencer

SENDER, OTHER, IP = b"s" * 8, b"o" * 8, b"\x7f\0\0\x01"


def _now_ms() -> int:
    import time

    return int(time.time() * 1000)


def test_each_number_is_accepted_once() -> None:
    guard = ReplayGuard(60)
    assert guard.check(SENDER, IP, 1900, 1, _now_ms()) is None
    assert guard.check(SENDER, IP, 1900, 2, _now_ms()) is None
    assert guard.check(SENDER, IP, 1900, 1, _now_ms()) == "replay"
    assert guard.check(SENDER, IP, 1900, 2, _now_ms()) == "replay"


def test_senders_and_destinations_count_apart() -> None:
    guard = ReplayGuard(60)
    for key in [(SENDER, 1900), (OTHER, 1900), (SENDER, 1901)]:
        assert guard.check(key[0], IP, key[1], 1, _now_ms()) is None


@given(st.permutations(range(1, 200)), st.integers(0, 198))
def test_reordering_within_the_window_is_accepted_once_each(order: list[int], repeat_at: int) -> None:
    guard = ReplayGuard(60)
    for number in order:
        assert guard.check(SENDER, IP, 1900, number, _now_ms()) is None
    assert guard.check(SENDER, IP, 1900, order[repeat_at], _now_ms()) == "replay"


def test_too_far_behind_is_refused_and_a_huge_jump_is_cheap() -> None:
    guard = ReplayGuard(60)
    assert guard.check(SENDER, IP, 1900, 1, _now_ms()) is None
    assert guard.check(SENDER, IP, 1900, 2**62, _now_ms()) is None
    assert guard.check(SENDER, IP, 1900, 2**62 - WINDOW, _now_ms()) == "replay"
    assert guard.check(SENDER, IP, 1900, 2**62 - WINDOW + 1, _now_ms()) is None


@pytest.mark.parametrize("offset_s", [-61, 61])
def test_old_or_future_frames_are_refused(offset_s: int) -> None:
    assert ReplayGuard(60).check(SENDER, IP, 1900, 1, _now_ms() + offset_s * 1000) == "stale"


def test_a_silent_sender_is_forgotten_after_three_ages() -> None:
    now = [1_000_000.0]
    guard = ReplayGuard(10, clock=lambda: now[0])
    assert guard.check(SENDER, IP, 1900, 5, int(now[0] * 1000)) is None
    now[0] += 31
    assert guard.check(OTHER, IP, 1900, 1, int(now[0] * 1000)) is None  # triggers the pruning
    assert guard.check(SENDER, IP, 1900, 5, int((now[0] - 31) * 1000)) == "stale"  # its old frames stay refused
    assert guard.check(SENDER, IP, 1900, 1, int(now[0] * 1000)) is None  # a fresh start, unlike before


def test_the_sequencer_numbers_per_destination_and_reset_changes_the_sender() -> None:
    seq = Sequencer()
    first = seq.sender
    assert [seq.next(IP, 1), seq.next(IP, 1), seq.next(IP, 2)] == [1, 2, 1]
    seq.reset()
    assert seq.sender != first and seq.next(IP, 1) == 1
