"""Start and stop the two test CSMSs behind one interface, `CsmsPeer`.

- ``sim``: our own simulator (`charger.sim.csms`) on a thread of this process (`SimCsms`);
- ``ocpp-rpc``: the third-party peer in ``tests/peers/ocpp-rpc`` (ocpp-rpc in strict mode) as a node
  subprocess (`NodeCsms`), driven through JSON-line commands on its stdin and read back from its JSON-lines
  log, which has the simulator's format. It is stopped by closing its stdin, then by its PID (SIGTERM,
  then SIGKILL); it is always gone when the context exits.

`csms_peer(kind, tmp_path, ...)` opens either on a free port; `require_node_peer()` skips a test (with the
reason) only when ``node`` or the peer's ``node_modules`` are missing. CI installs them with
``npm ci --prefix tests/peers/ocpp-rpc``.

Code that runs an asyncio charge point in the same thread must not block its loop on these methods:
call them through ``asyncio.to_thread``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Protocol, TextIO, TypeVar

import pytest
from charger.sim.csms import (
    CallAnswer,
    CsmsBehaviour,
    CsmsSecurity,
    CsmsSimulator,
    CsmsThread,
    EventKind,
    Fault,
    FaultKind,
    Frame,
    FrameLog,
    LinkEvent,
)

from charger.testing import free_port

__all__ = [
    "NODE_PEER_DIR",
    "PEER_KINDS",
    "CsmsPeer",
    "NodeCsms",
    "PeerOptions",
    "SimCsms",
    "csms_peer",
    "node_csms",
    "require_node_peer",
    "sim_csms",
]

NODE_PEER_DIR = Path(__file__).resolve().parent.parent / "peers" / "ocpp-rpc"
PEER_KINDS = ("sim", "ocpp-rpc")
_T = TypeVar("_T")


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class PeerOptions:
    """What both peers can be configured with at start."""

    basic_auth: Mapping[str, str] = dataclasses.field(default_factory=dict, repr=False)
    tls_cert: Path | None = None
    tls_key: Path | None = None
    client_ca: Path | None = None
    client_organization: str | None = None
    boot_status: str = "Accepted"
    boot_interval: int = 300
    id_tags: Mapping[str, str] = dataclasses.field(default_factory=dict)


class CsmsPeer(Protocol):
    """The operations a backend-link test needs from a CSMS, whichever it is."""

    name: str

    @property
    def url(self) -> str: ...

    def next_seq(self) -> int: ...

    def frames(self, cp_id: str | None = None) -> list[Frame]: ...

    def events(self, kind: EventKind | None = None) -> list[LinkEvent]: ...

    def invalid_inbound(self) -> list[LinkEvent]:
        """INVALID events about frames the CSMS received: empty when the charge point behaved."""
        ...

    def wait_for(self, match: Callable[[Frame], bool], *, after: int = 0, timeout: float = 10.0) -> Frame: ...

    def wait_for_event(
        self,
        kind: EventKind,
        *,
        after: int = 0,
        where: Callable[[LinkEvent], bool] | None = None,
        timeout: float = 10.0,
    ) -> LinkEvent: ...

    def call_action(
        self, cp_id: str, action: str, payload: Mapping[str, Any], *, timeout: float = 30.0
    ) -> CallAnswer: ...

    def send_raw(self, cp_id: str, text: str) -> Frame: ...

    def set_behaviour(
        self,
        *,
        boot_status: str | None = None,
        boot_interval: int | None = None,
        id_tags: Mapping[str, str] | None = None,
    ) -> None: ...

    def fail_next(self, action: str, times: int = 1, error_code: str = "InternalError") -> None: ...


def _inbound_invalid(events: list[LinkEvent]) -> list[LinkEvent]:
    return [e for e in events if e.kind is EventKind.INVALID and not e.fields.get("outbound")]


class SimCsms(CsmsThread):
    """Our simulator on a thread, with the `CsmsPeer` extras."""

    name = "sim"

    def invalid_inbound(self) -> list[LinkEvent]:
        return _inbound_invalid(self.events(EventKind.INVALID))

    def set_behaviour(
        self,
        *,
        boot_status: str | None = None,
        boot_interval: int | None = None,
        id_tags: Mapping[str, str] | None = None,
    ) -> None:
        changes: dict[str, Any] = {"boot_status": boot_status, "boot_interval": boot_interval, "id_tags": id_tags}
        current = self.simulator.behaviour
        self.simulator.behaviour = dataclasses.replace(current, **{k: v for k, v in changes.items() if v is not None})

    def fail_next(self, action: str, times: int = 1, error_code: str = "InternalError") -> None:
        self.simulator.faults.add(action, Fault(kind=FaultKind.CALL_ERROR, error_code=error_code), times)


class NodeCsms:
    """The ocpp-rpc peer as a subprocess; see the module docstring."""

    name = "ocpp-rpc"

    def __init__(self, port: int, log_path: Path, options: PeerOptions) -> None:
        self.port = port
        self.log_path = log_path
        self.options = options
        self._log = FrameLog()
        self._offset = 0
        self._commands = 0
        self._process: subprocess.Popen[str] | None = None
        self._stderr_path = log_path.with_suffix(".stderr")

    @property
    def url(self) -> str:
        return f"{'wss' if self.options.tls_cert else 'ws'}://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def _argv(self) -> list[str]:
        options = self.options
        argv = ["node", "csms.js", "--port", str(self.port), "--log", str(self.log_path), "--commands"]
        for cp_id, key in options.basic_auth.items():
            argv += ["--basic-auth", f"{cp_id}:{key}"]
        for flag, path in (
            ("--tls-cert", options.tls_cert),
            ("--tls-key", options.tls_key),
            ("--ca", options.client_ca),
        ):
            if path is not None:
                argv += [flag, str(path)]
        if options.client_organization is not None:
            argv += ["--client-organization", options.client_organization]
        argv += ["--boot-status", options.boot_status, "--boot-interval", str(options.boot_interval)]
        for tag, status in options.id_tags.items():
            argv += ["--id-tag", f"{tag}={status}"]
        return argv

    def start(self, timeout: float = 20.0) -> None:
        self.log_path.touch()
        with self._stderr_path.open("w") as stderr:
            self._process = subprocess.Popen(
                self._argv(),
                cwd=NODE_PEER_DIR,
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                text=True,
            )
        deadline = time.monotonic() + timeout
        while self._sync().find_event(EventKind.LISTENING) is None:
            if self._process.poll() is not None:
                raise RuntimeError(f"csms.js exited with {self._process.returncode}: {self._stderr_path.read_text()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"csms.js did not listen within {timeout} s")
            time.sleep(0.02)

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        try:
            with contextlib.suppress(OSError):
                if process.stdin is not None:
                    process.stdin.close()  # with --commands, stdin closing makes it exit
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.terminate()
                try:
                    process.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=5)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()

    # -- reading the log --------------------------------------------------------------------------------

    def _sync(self) -> FrameLog:
        """Bring the in-memory log up to date with the file (whole lines only)."""
        with self.log_path.open("rb") as file:
            file.seek(self._offset)
            data = file.read()
        complete = data.rfind(b"\n") + 1
        for line in data[:complete].decode("utf-8").splitlines():
            self._log.add_jsonl_line(line)
        self._offset += complete
        return self._log

    def _poll(self, lookup: Callable[[FrameLog], _T | None], timeout: float, what: str) -> _T:
        deadline = time.monotonic() + timeout
        while (found := lookup(self._sync())) is None:
            if self._process is None or self._process.poll() is not None:
                raise RuntimeError(f"csms.js is not running while waiting for {what}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"no matching {what} within {timeout} s")
            time.sleep(0.01)
        return found

    def next_seq(self) -> int:
        return self._sync().next_seq

    def frames(self, cp_id: str | None = None) -> list[Frame]:
        return self._sync().frames(cp_id)

    def events(self, kind: EventKind | None = None) -> list[LinkEvent]:
        return self._sync().events(kind)

    def invalid_inbound(self) -> list[LinkEvent]:
        return _inbound_invalid(self.events(EventKind.INVALID))

    def wait_for(self, match: Callable[[Frame], bool], *, after: int = 0, timeout: float = 10.0) -> Frame:
        return self._poll(lambda log: log.find(match, after), timeout, "frame")

    def wait_for_event(
        self,
        kind: EventKind,
        *,
        after: int = 0,
        where: Callable[[LinkEvent], bool] | None = None,
        timeout: float = 10.0,
    ) -> LinkEvent:
        return self._poll(lambda log: log.find_event(kind, after, where), timeout, f"{kind.value} event")

    # -- commands ---------------------------------------------------------------------------------------

    def _command(self, command: dict[str, Any], timeout: float) -> LinkEvent:
        assert self._process is not None and self._process.stdin is not None, "csms.js is not running"
        self._commands += 1
        number = self._commands
        after = self.next_seq()
        self._process.stdin.write(json.dumps({"command": number, **command}) + "\n")
        self._process.stdin.flush()
        return self.wait_for_event(
            EventKind.ANSWER, after=after, where=lambda e: e.fields.get("command") == number, timeout=timeout
        )

    def call_action(self, cp_id: str, action: str, payload: Mapping[str, Any], *, timeout: float = 30.0) -> CallAnswer:
        command = {"cp": cp_id, "action": action, "payload": dict(payload), "timeoutMs": int(timeout * 1000)}
        fields = self._command(command, timeout + 5.0).fields
        if fields.get("code") == "NotConnected":
            raise LookupError(fields.get("description"))
        return CallAnswer(
            action=action,
            ok=bool(fields["ok"]),
            payload=fields.get("payload") or {},
            error_code=fields.get("code"),
            error_description=fields.get("description"),
        )

    def send_raw(self, cp_id: str, text: str) -> Frame:
        after = self.next_seq()
        fields = self._command({"cp": cp_id, "raw": text}, 10.0).fields
        if not fields["ok"]:
            raise LookupError(fields.get("description"))
        return self.wait_for(lambda f: f.cp_id == cp_id and f.text == text and f.direction.value == "tx", after=after)

    def set_behaviour(
        self,
        *,
        boot_status: str | None = None,
        boot_interval: int | None = None,
        id_tags: Mapping[str, str] | None = None,
    ) -> None:
        changes = {"bootStatus": boot_status, "bootInterval": boot_interval, "idTags": id_tags}
        self._command({"set": {k: v for k, v in changes.items() if v is not None}}, 10.0)

    def fail_next(self, action: str, times: int = 1, error_code: str = "InternalError") -> None:
        self._command({"set": {"fail": {action: {"times": times, "code": error_code}}}}, 10.0)


def require_node_peer() -> None:
    """Skip the calling test when the third-party peer cannot run here."""
    if shutil.which("node") is None:
        pytest.skip("node is not installed: the ocpp-rpc CSMS peer needs it")
    if not (NODE_PEER_DIR / "node_modules" / "ocpp-rpc" / "package.json").is_file():
        pytest.skip(f"ocpp-rpc is not installed: run `npm ci --prefix {NODE_PEER_DIR}`")


def simulator_for(options: PeerOptions, port: int, record: TextIO | None) -> CsmsSimulator:
    """Our simulator, configured as `options` say, on `port`; frames go to `record` too."""
    return CsmsSimulator(
        port=port,
        security=CsmsSecurity(
            basic_auth=options.basic_auth,
            tls_cert=options.tls_cert,
            tls_key=options.tls_key,
            client_ca=options.client_ca,
            client_organization=options.client_organization,
        ),
        behaviour=CsmsBehaviour(
            boot_status=options.boot_status, boot_interval=options.boot_interval, id_tags=options.id_tags
        ),
        record=record,
    )


@contextlib.contextmanager
def sim_csms(options: PeerOptions | None = None, record: Path | None = None) -> Iterator[SimCsms]:
    """Our simulator on a free port, on a thread of this process."""
    options = options or PeerOptions()
    with contextlib.ExitStack() as stack:
        sink = stack.enter_context(record.open("a", encoding="utf-8")) if record is not None else None
        yield stack.enter_context(SimCsms(simulator_for(options, free_port(), sink)))


@contextlib.contextmanager
def node_csms(log_path: Path, options: PeerOptions | None = None) -> Iterator[NodeCsms]:
    """The ocpp-rpc peer on a free port, logging to `log_path`; skips when it cannot run here."""
    require_node_peer()
    peer = NodeCsms(free_port(), log_path, options or PeerOptions())
    try:
        peer.start()
        yield peer
    finally:
        peer.stop()


@contextlib.contextmanager
def csms_peer(kind: str, directory: Path, options: PeerOptions | None = None) -> Iterator[CsmsPeer]:
    """Either peer by name (one of `PEER_KINDS`); its log goes to `directory`."""
    if kind == "sim":
        with sim_csms(options, record=directory / "csms-sim.jsonl") as sim:
            yield sim
    elif kind == "ocpp-rpc":
        with node_csms(directory / "csms-ocpp-rpc.jsonl", options) as node:
            yield node
    else:
        raise ValueError(f"unknown CSMS peer {kind!r}; expected one of {PEER_KINDS}")
