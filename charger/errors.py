"""Typed errors that a `call` can end with. Each has a stable wire code."""

from __future__ import annotations

__all__ = [
    "BadRequest",
    "CallError",
    "CallTimeout",
    "Rejected",
    "RemoteCrash",
    "Unavailable",
    "error_for_code",
]


class CallError(Exception):
    """A call did not produce a result. `code` is what travels in the ERROR envelope."""

    code = "error"

    def __init__(self, message: str = "") -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return f"{self.code}: {self.message}" if self.message else self.code


class Unavailable(CallError):
    """The target is not running right now (starting, restarting or gone). Fails fast, never hangs."""

    code = "unavailable"


class CallTimeout(CallError):
    """No answer within the call's timeout."""

    code = "timeout"


class Rejected(CallError):
    """The handler refused the request on purpose (raise it from a handler to answer without crashing)."""

    code = "rejected"


class RemoteCrash(CallError):
    """The handler crashed while serving this call; its supervisor is restarting it."""

    code = "crashed"


class BadRequest(CallError):
    """The receiver could not decode the request, or has no handler for its type."""

    code = "bad_request"


_BY_CODE = {cls.code: cls for cls in (Unavailable, CallTimeout, Rejected, RemoteCrash, BadRequest)}


def error_for_code(code: str, message: str) -> CallError:
    """The typed error for a wire code; unknown codes become a plain `CallError`."""
    cls = _BY_CODE.get(code)
    if cls is None:
        err = CallError(message)
        err.code = code
        return err
    return cls(message)
