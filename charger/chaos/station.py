"""A station under test: a copy of a topology on private ports, booted with ``python -m charger.boot``.

The copy differs from the user's file only where a fault-injection run needs control:
- every port is a free one (Modbus servers, the CSMS simulator; the control API binds port 0 and writes
  the port it got to ``api.port`` under the state directory);
- the backend link reaches the CSMS through a `CsmsRelay` that the run can take offline;
- the SIL rigs run no car script (the run plugs the car itself) and show no card (the run presents the
  token, so that it knows when authorization was given), and keep a relay record (``relays-N.jsonl``);
- the supervisor of connector 1 gets a process of its own, so that killing it kills only its subtree.

Processes are found by a token in boot's exec'd environment (`charger.processes`), actors by the
title every actor process carries (``charger: NAME (Type)``), and killed only by PID.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from websockets.exceptions import WebSocketException
from websockets.sync.client import ClientConnection, connect

from charger.chaos.proxy import CsmsRelay
from charger.ctl import ApiError, request
from charger.processes import TOKEN_VARIABLE, kill_all, session_processes, token_processes, wait_until_gone
from charger.testing import free_port

__all__ = ["RELAY_LOG", "Layout", "Station", "StationError"]

RELAY_LOG = "relays-1.jsonl"
"""Connector 1's relay record, under the state directory."""


class StationError(Exception):
    """The station could not be prepared, booted or reached."""


@dataclass(frozen=True, slots=True)
class Layout:
    """Who is who in the topology, for connector 1 (the one a run drives) and the station."""

    evse: str
    board: str | None
    meter: str | None
    rig: str
    connector_supervisor: str | None
    """The supervisor whose subtree holds connector 1's EVSE manager (None: it is root's own child)."""
    token: str
    auth: str | None
    backend: str | None
    energy_manager: str | None
    load_share: str | None
    api: str
    charge_point_id: str | None


def _by_type(actors: dict[str, Any], type_name: str) -> list[str]:
    return [name for name, spec in actors.items() if isinstance(spec, dict) and spec.get("type") == type_name]


def _first(names: list[str]) -> str | None:
    return names[0] if names else None


def _parent_group(group: dict[str, Any], child: str) -> dict[str, Any] | None:
    """The supervision group (below root) whose children list `child`, searched depth first."""
    for entry in group.get("children", []):
        if isinstance(entry, dict):
            if child in entry.get("children", []):
                return entry
            found = _parent_group(entry, child)
            if found is not None:
                return found
    return None


def _quiet_rigs(actors: dict[str, Any], rig: str) -> None:
    """Rigs on private Modbus ports (and their meters with them), with no car script and no card;
    `rig` keeps the relay record."""
    ports: dict[int, int] = {}
    for name in _by_type(actors, "SilRig"):
        cfg = actors[name].setdefault("config", {})
        if cfg.get("modbus_port"):
            ports[cfg["modbus_port"]] = cfg["modbus_port"] = free_port()
        cfg.update(script="", repeat=False, token=None)
        if name == rig:
            cfg["relay_log"] = RELAY_LOG
    for name in _by_type(actors, "PowerMeter"):
        cfg = actors[name].setdefault("config", {})
        if cfg.get("port") in ports:
            cfg["port"] = ports[cfg["port"]]


def prepare(topology: Path, out: Path, relay_port: int) -> tuple[dict[str, Any], Layout, int]:
    """Write the run's copy of `topology` to `out`; return it, its layout and the CSMS simulator's port."""
    try:
        doc = yaml.safe_load(topology.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise StationError(f"{topology}: {exc}") from None
    actors: dict[str, Any] = doc.get("actors") or {}
    apis = _by_type(actors, "ControlApi")
    if not apis:
        raise StationError(f"{topology}: a fault-injection run drives the station through a ControlApi actor")
    api = apis[0]
    wiring = actors[api].get("connections") or {}
    evses, rigs = wiring.get("evse") or [], wiring.get("rig") or []
    if not evses or not rigs:
        raise StationError(f"{topology}: the control API must be wired to an EVSE manager and its SIL rig")
    evse, rig = evses[0], rigs[0]
    evse_links = actors[evse].get("connections") or {}
    rig_cfg = actors[rig].setdefault("config", {})
    if "connectors" in rig_cfg:
        raise StationError(f"{topology}: rig {rig!r} simulates several connectors; use one rig per connector")
    auth_cfg = (actors.get(_first(_by_type(actors, "Auth")) or "", {}) or {}).get("config") or {}
    token = rig_cfg.get("token") or next(iter(auth_cfg.get("allow") or []), None)
    if not token:
        raise StationError(f"{topology}: no token for connector 1 (rig {rig!r} has none and auth allows none)")
    _quiet_rigs(actors, rig)
    csms_port = free_port()
    for name in _by_type(actors, "CsmsSim"):
        actors[name].setdefault("config", {})["port"] = csms_port
    backends = _by_type(actors, "BackendLink")
    charge_point_id = None
    for name in backends:
        cfg = actors[name].setdefault("config", {})
        cfg["csms_url"] = f"ws://127.0.0.1:{relay_port}"
        charge_point_id = charge_point_id or cfg.get("charge_point_id")
    api_cfg = actors[api].setdefault("config", {})
    api_cfg.update(port=0, port_file="api.port")
    group = _parent_group(doc.get("supervision") or {}, evse)
    if group is not None:
        group["own_process"] = True
    out.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    layout = Layout(
        evse=evse,
        board=_first(evse_links.get("board") or []),
        meter=_first(evse_links.get("meter") or []),
        rig=rig,
        connector_supervisor=None if group is None else group.get("supervisor"),
        token=token,
        auth=_first(_by_type(actors, "Auth")),
        backend=_first(backends),
        energy_manager=_first(_by_type(actors, "EnergyManager")),
        load_share=_first(_by_type(actors, "LoadShare")),
        api=api,
        charge_point_id=charge_point_id,
    )
    return doc, layout, csms_port


class Station:
    """One station under test. `boot` starts it (again, after `kill_box`, on the same state directory)."""

    def __init__(self, topology: Path, workdir: Path, state_dir: Path | None = None, python: str = sys.executable):
        self.workdir = workdir
        self.state_dir = (state_dir or workdir / "state").resolve()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.relay_port = free_port()
        self.site = workdir / "chaos-site.yaml"
        _, self.layout, csms_port = prepare(topology, self.site, self.relay_port)
        self.relay = CsmsRelay(self.relay_port, csms_port)
        self.python = python
        self.boots = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.token = ""
        self.session = 0
        self._ws: ClientConnection | None = None
        self._ws_scope = contextlib.ExitStack()  # websockets wants its connections used as context managers

    # --- life ---------------------------------------------------------------------------------------
    @property
    def log(self) -> Path:
        return self.workdir / f"boot-{self.boots}.out"

    def boot(self, timeout: float = 90.0) -> None:
        """Start ``charger.boot`` and wait until its tree runs and the control API answers."""
        self.boots += 1
        self.token = uuid.uuid4().hex
        (self.state_dir / "api.port").unlink(missing_ok=True)
        env = {**os.environ, TOKEN_VARIABLE: self.token, "THESPIAN_BASE_IPADDR": "127.0.0.1"}
        cmd = [self.python, "-m", "charger.boot", str(self.site), "--state-dir", str(self.state_dir)]
        cmd += ["--admin-port", str(free_port()), "--no-view", "--log-level", "WARNING"]
        with open(self.log, "wb") as out:  # a file, never a pipe: the admin daemon inherits it
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while "running," not in self.log.read_text(errors="replace"):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise StationError(f"the station did not start; {self.log}:\n{self.log.read_text(errors='replace')}")
            time.sleep(0.1)
        self.session = os.getsid(self.pid_of("kernel"))
        self.call("ping", timeout=timeout)

    def kill_box(self) -> None:
        """Power cut: SIGKILL boot, the admin and every actor at once."""
        self._drop_ws()
        kill_all(token_processes(self.token))
        if self.proc is not None:
            self.proc.wait(10.0)
        left = wait_until_gone(lambda: token_processes(self.token), timeout=10.0)
        if left:
            raise StationError(f"processes survived the power cut: {left}")

    def stop(self) -> None:
        """Stop the station in order (SIGINT to boot), then make sure nothing of it is left; close the relay."""
        self._drop_ws()
        try:
            if self.proc is not None and self.proc.poll() is None:
                self.proc.send_signal(signal.SIGINT)
                try:
                    self.proc.wait(90.0)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
            if self.token:
                kill_all(wait_until_gone(lambda: token_processes(self.token), timeout=10.0))
        finally:
            self.relay.close()

    # --- processes ----------------------------------------------------------------------------------
    def titles(self) -> dict[int, str]:
        """This run's live processes and their titles."""
        found = {}
        for pid in token_processes(self.token):
            with contextlib.suppress(OSError):
                found[pid] = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        return found

    def pids_of(self, name: str) -> list[int]:
        """Every live process titled as actor `name` (more than one means an old one survived)."""
        prefix = f"charger: {name} ("
        return sorted(pid for pid, title in self.titles().items() if title.startswith(prefix))

    def pid_of(self, name: str, timeout: float = 10.0, *, not_pid: int = 0) -> int:
        """The PID of actor `name`'s process (other than `not_pid`), waiting through a restart."""
        deadline = time.monotonic() + timeout
        while True:
            pids = [p for p in self.pids_of(name) if p != not_pid]
            if len(pids) == 1:
                return pids[0]
            if time.monotonic() > deadline:
                raise StationError(f"no single process titled {name!r}: {pids}; this run's: {self.titles()}")
            time.sleep(0.02)

    def system_processes(self) -> list[int]:
        return session_processes(self.session) if self.session else []

    def orphans(self) -> list[int]:
        """Processes of this run outside the running system: left over from a killed actor or box."""
        boot = self.proc.pid if self.proc is not None else 0
        system = set(self.system_processes())
        return sorted(pid for pid in token_processes(self.token) if pid != boot and pid not in system)

    # --- the control API ------------------------------------------------------------------------------
    def _drop_ws(self) -> None:
        if self._ws is not None:
            with contextlib.suppress(Exception):
                self._ws_scope.close()
            self._ws = None

    def call(self, method: str, timeout: float = 10.0, **params: Any) -> Any:
        """One control-API call; reconnects (re-reading the port, which changes when the API restarts)
        until `timeout` passes."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                if self._ws is None:
                    port = (self.state_dir / "api.port").read_text().strip()
                    url = f"ws://127.0.0.1:{port}"
                    self._ws = self._ws_scope.enter_context(connect(url, open_timeout=2.0, close_timeout=1.0))
                return request(self._ws, method, params, timeout=max(0.5, min(5.0, deadline - time.monotonic())))
            except (OSError, WebSocketException, TimeoutError, ValueError) as exc:
                self._drop_ws()
                if time.monotonic() > deadline:
                    raise StationError(f"the control API did not answer {method}: {exc}") from None
            time.sleep(0.05)

    def try_call(self, method: str, **params: Any) -> Any:
        """One attempt, quick: None when the API or the actor behind it cannot answer right now."""
        try:
            return self.call(method, timeout=0.5, **params)
        except (StationError, ApiError):
            return None

    def connector(self) -> dict[str, Any] | None:
        """Connector 1's status, or None while it (or the API) cannot answer."""
        statuses = self.try_call("connectors.status")
        if not statuses:
            return None
        status = next((s for s in statuses if s["connector"] == self.layout.evse), None)
        return status if status is not None and "pilot" in status else None

    def rig(self) -> dict[str, Any]:
        return dict(self.call("connector.rig", connector=self.layout.evse))

    # --- records ------------------------------------------------------------------------------------
    def frames(self) -> list[dict[str, Any]]:
        """Every line the CSMS simulator recorded (all boots)."""
        path = self.state_dir / f"{self._csms_name()}.frames.jsonl"
        if not path.exists():
            return []
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
        out = []
        for line in lines:
            with contextlib.suppress(ValueError):
                out.append(json.loads(line))
        return out

    def relay_record(self) -> list[dict[str, Any]]:
        path = self.state_dir / RELAY_LOG
        if not path.exists():
            return []
        out = []
        for line in path.read_text(encoding="utf-8").splitlines():
            with contextlib.suppress(ValueError):
                out.append(json.loads(line))
        return out

    def _csms_name(self) -> str:
        doc = yaml.safe_load(self.site.read_text(encoding="utf-8"))
        names = _by_type(doc.get("actors") or {}, "CsmsSim")
        return names[0] if names else "csms"
