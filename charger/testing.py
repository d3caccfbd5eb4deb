"""Public test utilities: run a supervision tree in a real actor system and prove nothing is left behind.

Every process an actor system forks inherits the environment, so a unique ``CHARGER_RUN_TOKEN``
set before the system starts marks exactly the processes this run created; `leftover_processes`
finds them by that token, never by name.
"""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from collections.abc import Iterator
from typing import Any

from charger.client import Client
from charger.kernel import KERNEL_ACTOR, kernel_config
from charger.lifecycle import GetSystemStatus, Init, Shutdown, SystemStatus
from charger.processes import TOKEN_VARIABLE, kill_leftovers, leftover_processes, wait_until_gone
from charger.runtime import ActorProcess
from charger.supervisors.spec import ChildSpec
from charger.system import logging_config, start_system

__all__ = [
    "TOKEN_VARIABLE",
    "RunningSystem",
    "kill_leftovers",
    "leftover_processes",
    "running_system",
    "wait_until_gone",
]


class RunningSystem:
    """An actor system with a kernel running `root`; `client` calls into it by name."""

    def __init__(self, asys: Any, kernel: Any, token: str) -> None:
        self.asys = asys
        self.kernel = kernel
        self.token = token
        self.client = Client(asys, kernel)

    def status(self) -> SystemStatus:
        status = self.client.call_address(self.kernel, GetSystemStatus())
        assert isinstance(status, SystemStatus)
        return status

    def pid_of(self, name: str, timeout: float = 10.0) -> int:
        """The PID of `name` once it is registered (waits through restarts)."""
        deadline = time.monotonic() + timeout
        while True:
            pid = self.status().actors.get(name)
            if pid is not None:
                return pid
            if time.monotonic() > deadline:
                raise TimeoutError(f"{name} did not come up within {timeout} s")
            time.sleep(0.01)

    def shutdown(self, timeout: float = 60.0) -> None:
        self.client.call_address(self.kernel, Shutdown(), timeout)


@contextlib.contextmanager
def running_system(
    root: ChildSpec, admin_port: int, state_dir: str, log_file: str | None = None
) -> Iterator[RunningSystem]:
    """Start a system on `admin_port`, boot `root` under a kernel, and on exit stop it and
    verify (then enforce) that none of its processes survive."""
    token = uuid.uuid4().hex
    previous = os.environ.get(TOKEN_VARIABLE)
    os.environ[TOKEN_VARIABLE] = token
    log = logging_config("INFO", filename=log_file) if log_file else None
    try:
        asys = start_system(admin_port, log_config=log)
    finally:
        if previous is None:
            os.environ.pop(TOKEN_VARIABLE, None)
        else:
            os.environ[TOKEN_VARIABLE] = previous
    system: RunningSystem | None = None
    try:
        kernel = asys.createActor(ActorProcess)
        system = RunningSystem(asys, kernel, token)
        init = Init(name="kernel", actor=KERNEL_ACTOR, config=kernel_config(root), requires={}, state_dir=state_dir)
        system.client.call_address(kernel, init, timeout=30.0)
        yield system
    finally:
        with contextlib.suppress(Exception):
            if system is not None:
                system.shutdown(timeout=30.0)
        asys.shutdown()
        left = wait_until_gone(token, timeout=10.0)
        kill_leftovers(token)
        if left:
            raise AssertionError(f"processes survived the actor system on port {admin_port}: {left}")
