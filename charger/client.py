"""Calling actors from outside the actor system (boot, ctl, tests, benchmarks)."""

from __future__ import annotations

import time
from typing import Any

from charger.errors import CallError, CallTimeout, Unavailable, error_for_code
from charger.lifecycle import CallFailed, Resolve, Resolved
from charger.messages import DecodeError, Envelope, Kind, decode_envelope, encode_envelope
from charger.runtime import Attached, frame_parts

__all__ = ["Client"]


class Client:
    """Blocking calls into a running system through an `ActorSystem` handle."""

    def __init__(self, asys: Any, kernel: Any, label: str = "client") -> None:
        self._asys = asys
        self.kernel = kernel
        self._label = label
        self._corr = 0

    def call_address(self, address: Any, msg: Any, timeout: float = 5.0) -> Any:
        """Call an address; returns the reply message (an `Attached` when addresses ride along)."""
        self._corr += 1
        body = msg.body if isinstance(msg, Attached) else msg
        frame: Any = encode_envelope(Kind.CALL, self._corr, self._label, body)
        if isinstance(msg, Attached):
            frame = (frame, msg.addresses)
        deadline = time.monotonic() + timeout
        answer = self._asys.ask(address, frame, timeout)
        while True:
            env, addresses = self._decode(answer, timeout)
            if env.kind in (Kind.REPLY, Kind.ERROR) and env.corr == self._corr:
                break
            # a stray answer to an earlier call that timed out, or to someone else's frame: not ours
            answer = self._asys.listen(max(0.0, deadline - time.monotonic()))
        if env.kind is Kind.ERROR:
            failed: CallFailed = env.body
            raise error_for_code(failed.code, failed.message)
        return Attached(env.body, addresses) if addresses else env.body

    @staticmethod
    def _decode(answer: Any, timeout: float) -> tuple[Envelope, dict[str, Any]]:
        if answer is None:
            raise CallTimeout(f"no answer within {timeout} s")
        parts = frame_parts(answer)
        if parts is None:
            raise CallError(f"unexpected answer {type(answer).__name__}")
        try:
            return decode_envelope(parts[0]), parts[1]
        except DecodeError as exc:
            raise CallError(f"undecodable answer: {exc}") from None

    def resolve(self, name: str, timeout: float = 5.0) -> Any:
        reply = self.call_address(self.kernel, Resolve(name=name), timeout)
        body = reply.body if isinstance(reply, Attached) else reply
        assert isinstance(body, Resolved)
        if not body.up:
            raise Unavailable(f"{name} is not running")
        return reply.addresses["address"]

    def call(self, name: str, msg: Any, timeout: float = 5.0) -> Any:
        """Call the instance registered as `name`."""
        return self.call_address(self.resolve(name, timeout), msg, timeout)

    def cast(self, name: str, msg: Any) -> None:
        self._asys.tell(self.resolve(name), encode_envelope(Kind.CAST, 0, self._label, msg))
