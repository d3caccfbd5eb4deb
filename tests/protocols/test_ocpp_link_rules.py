"""The rules of an OCPP 1.6J connection: URL, transport of each security profile, boot gating, back-off."""

from __future__ import annotations

import base64

import pytest
from charger.protocols.ocpp_link_rules import (
    BackoffPolicy,
    Registration,
    basic_auth_header,
    endpoint_url,
    may_send,
    reconnect_delay,
    transport_problems,
)
from hypothesis import given
from hypothesis import strategies as st


def test_the_charge_point_id_is_the_last_path_segment_percent_encoded() -> None:
    assert endpoint_url("ws://csms:9000/ocpp/", "CP 1/a") == "ws://csms:9000/ocpp/CP%201%2Fa"


@pytest.mark.parametrize(
    ("profile", "url", "password", "certificate", "problem"),
    [
        (0, "ws://x", False, False, None),
        (1, "ws://x", True, False, None),
        (1, "ws://x", False, False, "needs an AuthorizationKey"),
        (2, "wss://x", True, False, None),
        (2, "ws://x", True, False, "never a downgrade to ws://"),
        (3, "ws://x", False, True, "never a downgrade to ws://"),
        (3, "wss://x", False, False, "needs client_cert_file and client_key_file"),
        (3, "wss://x", False, True, None),
        (0, "http://x", False, False, "must start with ws:// or wss://"),
    ],
)
def test_transport_problems(profile: int, url: str, password: bool, certificate: bool, problem: str | None) -> None:
    problems = transport_problems(profile, url, "CP1", has_password=password, has_client_certificate=certificate)
    if problem is None:
        assert problems == []
    else:
        assert any(problem in p for p in problems), problems


def test_a_colon_in_the_id_cannot_carry_basic_auth() -> None:
    assert transport_problems(1, "ws://x", "CP:1", has_password=True, has_client_certificate=False)
    assert transport_problems(3, "wss://x", "CP:1", has_password=False, has_client_certificate=True) == []


def test_basic_auth_carries_the_binary_key() -> None:
    header = basic_auth_header("CP1", bytes.fromhex("00ff10"))
    assert header.startswith("Basic ") and base64.b64decode(header[6:]) == b"CP1:\x00\xff\x10"


def test_only_boot_before_acceptance_and_triggered_messages_while_pending() -> None:
    for registration in Registration:
        assert may_send(registration, "BootNotification")
    assert may_send(Registration.ACCEPTED, "StatusNotification")
    assert not may_send(Registration.UNKNOWN, "StatusNotification", triggered=True)
    assert not may_send(Registration.PENDING, "StatusNotification")
    assert may_send(Registration.PENDING, "StatusNotification", triggered=True)
    assert not may_send(Registration.REJECTED, "Heartbeat", triggered=True)


def test_the_back_off_doubles_up_to_its_limit_plus_the_random_part() -> None:
    policy = BackoffPolicy(wait_minimum_s=3, random_range_s=10, repeat_times=2)
    assert [reconnect_delay(n, policy, 0.0) for n in range(5)] == [3, 6, 12, 12, 12]
    assert reconnect_delay(0, policy, 0.5) == 8.0
    with pytest.raises(ValueError):
        reconnect_delay(0, policy, 1.0)
    with pytest.raises(ValueError):
        BackoffPolicy(wait_minimum_s=-1)


@given(st.integers(0, 50), st.floats(0, 0.999), st.integers(0, 30), st.integers(0, 60), st.integers(0, 8))
def test_the_back_off_is_bounded(failures: int, unit: float, minimum: int, spread: int, repeat: int) -> None:
    delay = reconnect_delay(failures, BackoffPolicy(minimum, spread, repeat), unit)
    assert minimum <= delay <= minimum * 2**repeat + spread
