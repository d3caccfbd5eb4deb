"""Public test utilities: run a supervision tree in a real actor system and prove nothing is left behind.

The processes of a system are found by the session id its admin daemon creates (see
`charger.processes`), never by name, and killed only by PID.
"""

from __future__ import annotations

import contextlib
import random
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from charger.client import Client
from charger.federation import host_plan, tune_convention
from charger.kernel import KERNEL_ACTOR, kernel_config
from charger.lifecycle import GetSystemStatus, Init, Shutdown, SystemStatus
from charger.processes import kill_all, session_of, session_processes, wait_until_gone
from charger.runtime import ActorProcess
from charger.site_secret import SiteSecretSource
from charger.supervisors.spec import ChildSpec
from charger.system import logging_config, start_system
from charger.topology import Topology

__all__ = ["RunningSystem", "free_port", "running_host", "running_system"]


class RunningSystem:
    """An actor system with a kernel running `root`; `client` calls into it by name."""

    def __init__(self, asys: Any, kernel: Any) -> None:
        self.asys = asys
        self.kernel = kernel
        self.client = Client(asys, kernel)
        self.session = 0
        """Session id shared by every process of this system (0 until the kernel has started)."""
        self.killed = False

    def processes(self) -> list[int]:
        """PIDs of every live process of this system: admin, logger and actors."""
        return session_processes(self.session) if self.session else []

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

    def kill(self) -> list[int]:
        """SIGKILL every process of this system at once, as when its box loses power; returns the PIDs."""
        pids = self.processes()
        kill_all(pids)
        left = wait_until_gone(self.processes, timeout=10.0)
        if left:
            raise AssertionError(f"processes survived SIGKILL: {left}")
        self.killed = True
        return pids


@contextlib.contextmanager
def running_system(
    root: ChildSpec,
    admin_port: int,
    state_dir: str,
    log_file: str | None = None,
    *,
    site_secret: SiteSecretSource = None,
    bind_address: str = "127.0.0.1",
    capabilities: dict[str, Any] | None = None,
    federation: ChildSpec | None = None,
) -> Iterator[RunningSystem]:
    """Start a system on `admin_port`, boot `root` under a kernel, and on exit stop it and
    verify (then enforce) that none of its processes survive. `site_secret` as for `start_system`;
    `capabilities` and `federation` make it a host of a park (see `running_host`)."""
    log = logging_config("INFO", filename=log_file) if log_file else None
    asys = start_system(
        admin_port, log_config=log, site_secret=site_secret, bind_address=bind_address, capabilities=capabilities
    )
    system: RunningSystem | None = None
    try:
        kernel = asys.createActor(ActorProcess)
        system = RunningSystem(asys, kernel)
        config = kernel_config(root, federation)
        init = Init(name="kernel", actor=KERNEL_ACTOR, config=config, requires={}, state_dir=state_dir)
        started = system.client.call_address(kernel, init, timeout=30.0)
        system.session = session_of(started.pid)
        yield system
    finally:
        if system is None or not system.killed:  # a killed system has nobody left to ask
            with contextlib.suppress(Exception):
                if system is not None:
                    system.shutdown(timeout=30.0)
            asys.shutdown()
        if system is not None and system.session:
            left = wait_until_gone(system.processes, timeout=10.0)
            kill_all(left)
            if left:
                raise AssertionError(f"processes survived the actor system on port {admin_port}: {left}")


def running_host(
    topology: Topology,
    host: str,
    *,
    state_dir: str | None = None,
    log_file: str | None = None,
    site_secret: SiteSecretSource = None,
) -> contextlib.AbstractContextManager[RunningSystem]:
    """Run one host of a park (as ``charger.boot TOPOLOGY --host HOST`` does) in its own actor system."""
    plan = host_plan(topology, host, state_dir=state_dir)
    tune_convention()
    Path(plan.state_dir).mkdir(parents=True, exist_ok=True)
    return running_system(
        plan.root,
        plan.admin_port,
        plan.state_dir,
        log_file,
        site_secret=site_secret,
        bind_address=plan.bind,
        capabilities=plan.capabilities,
        federation=plan.federation,
    )


_GIVEN: set[int] = set()


def free_port() -> int:
    """A port nobody listens on right now: a fresh admin port per system, never a stale admin's.

    Picked below the kernel's ephemeral range (from 32768 here), not with bind(0): a port from that
    range can be taken by any outgoing connection (Thespian opens many) before the server binds it."""
    low, _ = (int(v) for v in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    while True:
        port = random.randrange(10000, max(10001, low))
        if port in _GIVEN:  # handed out earlier in this run, perhaps not bound yet
            continue
        _GIVEN.add(port)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
