"""The allowlist unpickler: Thespian's own frames load, anything that names another global does not."""

from __future__ import annotations

import io
import logging
import pickle
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from charger.actors.counter import GetCount
from thespian.actors import ActorAddress, ActorExitRequest, ChildActorExited, PoisonMessage
from thespian.system.transport.IPBase import TCPv4ActorAddress

from charger.messages import Kind, encode_envelope
from charger.pickle_allowlist import ALLOWED_GLOBALS, BlockedGlobal, allow_pickled, allowed, restricted_loads


def _address(port: int = 5000) -> ActorAddress:
    return ActorAddress(TCPv4ActorAddress("127.0.0.1", port, external=True))


@pytest.mark.parametrize(
    "message",
    [
        ActorExitRequest(),
        ChildActorExited(_address()),
        PoisonMessage(b"\x93\x01", "details"),
        timedelta(seconds=1.5),
        logging.LogRecord("charger.x", logging.WARNING, "f.py", 1, "text", None, None),
    ],
    ids=lambda m: type(m).__name__,
)
def test_thespian_frames_load(message: object) -> None:
    sender, loaded = restricted_loads(pickle.dumps((_address(), message)))
    assert sender == _address() and type(loaded) is type(message)


def test_a_charger_frame_loads_with_its_addresses() -> None:
    body = encode_envelope(Kind.CAST, 0, "a", GetCount())
    _sender, (loaded, addresses) = restricted_loads(pickle.dumps((_address(), (body, {"registry": _address(6000)}))))
    assert loaded == body and addresses == {"registry": _address(6000)}


@pytest.mark.parametrize(
    "pickled",
    [
        b"cos\nsystem\n(S'touch /nonexistent-dir/pwned'\ntR.",  # protocol 0 GLOBAL
        b"\x80\x04\x8c\x08builtins\x8c\x04eval\x93\x8c\x011\x85R.",  # protocol 4 STACK_GLOBAL
        b"cbuiltins\ngetattr\n.",
        b"csubprocess\nPopen\n.",
        b"cthespian.actors\nActorSystem\n.",  # an allowed module, a forbidden class
        b"ccharger.runtime\nActorProcess\n.",
        b"cthespian.actors\nActorAddress.__init__\n.",  # dotted names reach attributes
    ],
)
def test_any_other_global_is_blocked(pickled: bytes) -> None:
    with pytest.raises(BlockedGlobal):
        restricted_loads(pickled)


def test_the_blocked_payload_is_live_with_plain_pickle(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    pickled = b"cos\nsystem\n(S'touch " + str(marker).encode() + b"'\ntR."
    with pytest.raises(BlockedGlobal):
        restricted_loads(pickled)
    assert not marker.exists()
    pickle.loads(pickled)
    assert marker.exists()


def test_every_allowed_global_exists() -> None:
    resolver = pickle.Unpickler(io.BytesIO(b""))
    for module, name in ALLOWED_GLOBALS:
        assert isinstance(resolver.find_class(module, name), type), (module, name)


@dataclass(frozen=True)
class _Registered:
    n: int


@dataclass(frozen=True)
class _NotRegistered:
    n: int


def test_a_registered_class_loads_and_an_unregistered_one_does_not() -> None:
    allow_pickled(_Registered)
    assert allowed(__name__, "_Registered")
    assert restricted_loads(pickle.dumps(_Registered(3))) == _Registered(3)
    with pytest.raises(BlockedGlobal, match="_NotRegistered"):
        restricted_loads(pickle.dumps(_NotRegistered(3)))


def test_allow_pickled_takes_classes_only() -> None:
    with pytest.raises(TypeError):
        allow_pickled(_Registered(1))  # type: ignore[arg-type]
