"""Finding the processes of one actor system again, to prove none outlives it, and to kill by PID.

Thespian's admin daemon calls ``setsid()``, and every actor is forked below it, so all processes
of one actor system share the admin's session id: `session_processes` lists them. (A variable put
into ``os.environ`` does not work for this: ``/proc/PID/environ`` shows only the environment a
process was exec'd with, and actor processes are forked.) A test that starts ``charger.boot`` as a
subprocess can instead mark it with a ``CHARGER_RUN_TOKEN`` in the exec'd environment.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable

__all__ = [
    "TOKEN_VARIABLE",
    "kill_all",
    "session_of",
    "session_processes",
    "token_processes",
    "wait_until_gone",
]

TOKEN_VARIABLE = "CHARGER_RUN_TOKEN"


def _stat_fields(pid: int) -> list[bytes] | None:
    """Fields of /proc/PID/stat after the command name; None when gone or a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return None if fields[0] == b"Z" else fields


def session_of(pid: int) -> int:
    """The session of `pid`; refuses our own, so a mix-up can never make us kill our shell or test runner."""
    sid = os.getsid(pid)
    if sid == os.getsid(0):
        raise RuntimeError(f"process {pid} is in our own session; refusing to track it as an actor system")
    return sid


def _live_pids() -> list[int]:
    return [int(e) for e in os.listdir("/proc") if e.isdigit() and int(e) != os.getpid()]


def session_processes(sid: int) -> list[int]:
    """Live (non-zombie) processes in session `sid`."""
    found = []
    for pid in _live_pids():
        fields = _stat_fields(pid)
        if fields is not None and int(fields[3]) == sid:  # field 6 of stat: session id
            found.append(pid)
    return found


def token_processes(token: str) -> list[int]:
    """Live processes whose exec'd environment carries ``CHARGER_RUN_TOKEN=token``."""
    needle = f"{TOKEN_VARIABLE}={token}".encode()
    found = []
    for pid in _live_pids():
        try:
            with open(f"/proc/{pid}/environ", "rb") as env:
                if needle not in env.read().split(b"\0"):
                    continue
        except OSError:
            continue
        if _stat_fields(pid) is not None:
            found.append(pid)
    return found


def wait_until_gone(find: Callable[[], list[int]], timeout: float = 10.0) -> list[int]:
    """Poll `find` until it returns nothing or `timeout` passes; return what is still there."""
    deadline = time.monotonic() + timeout
    while (left := find()) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


def kill_all(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
