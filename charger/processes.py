"""Finding the processes of one actor system by an environment token, never by name.

Every process an actor system forks inherits the environment, so a unique ``CHARGER_RUN_TOKEN``
set before the system starts marks exactly the processes that run created.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time

__all__ = ["TOKEN_VARIABLE", "kill_leftovers", "leftover_processes", "wait_until_gone"]

TOKEN_VARIABLE = "CHARGER_RUN_TOKEN"


def leftover_processes(token: str) -> list[int]:
    """PIDs of live processes (other than this one) whose environment carries `token`."""
    needle = f"{TOKEN_VARIABLE}={token}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as env:
                if needle not in env.read().split(b"\0"):
                    continue
            with open(f"/proc/{entry}/stat", "rb") as stat:
                if stat.read().rsplit(b")", 1)[1].split()[0] == b"Z":
                    continue
        except OSError:
            continue
        found.append(int(entry))
    return found


def kill_leftovers(token: str) -> list[int]:
    """SIGKILL what `leftover_processes` finds (by PID) and return those PIDs."""
    pids = leftover_processes(token)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return pids


def wait_until_gone(token: str, timeout: float = 10.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while (left := leftover_processes(token)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left
