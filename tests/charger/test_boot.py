"""`python -m charger.boot` as a user runs it: a real subprocess, real actor system, checked by PID."""

from __future__ import annotations

import contextlib
import fcntl
import os
import pty
import re
import select
import shutil
import signal
import struct
import subprocess
import sys
import termios
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from charger.ctl import ApiError
from charger.processes import TOKEN_VARIABLE, kill_all, token_processes, wait_until_gone
from charger.status_view import SUMMARY_HEADER
from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]
SITE = ROOT / "topology" / "site.yaml"
DEMO = ROOT / "topology" / "demo.yaml"  # the runtime alone: tickers and a counter


class Boot:
    """One boot process; output goes to a file (the admin daemon inherits it, so never a pipe).

    The token is in the exec'd environment, so every process forked below boot shows it in
    /proc/PID/environ: that is how the test finds them, by PID.

    With `tty`, boot's stdout and stderr are a pseudo-terminal (as for a person at a terminal); a
    thread copies what it shows to the same file, so nothing ever waits on an unread pipe."""

    def __init__(self, tmp_path: Path, *args: str, tty: bool = False) -> None:
        self.token = uuid.uuid4().hex
        self.out = tmp_path / "boot.out"
        self._pty: int | None = None
        self._copier: threading.Thread | None = None
        self._closing = threading.Event()
        env = {**os.environ, TOKEN_VARIABLE: self.token}
        cmd = [sys.executable, "-m", "charger.boot", *args]
        if tty:
            self.out.write_bytes(b"")  # exists before the copier's first write, for text()
            self._pty, term = pty.openpty()
            fcntl.ioctl(term, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 140, 0, 0))
            env = {**env, "TERM": "xterm-256color", "COLUMNS": "140", "LINES": "40"}
            try:
                self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=term, stderr=term, env=env, cwd=ROOT)
            finally:
                os.close(term)  # the copier sees EOF once every process holding the terminal is gone
            self._copier = threading.Thread(target=self._copy, args=(self._pty,), daemon=True)
            self._copier.start()
            return
        with open(self.out, "wb") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT)

    def _copy(self, fd: int) -> None:
        with open(self.out, "ab") as out:
            while not self._closing.is_set():
                if not select.select([fd], [], [], 0.1)[0]:
                    continue
                try:
                    data = os.read(fd, 65536)
                except OSError:  # EIO: no process holds the terminal any more
                    return
                if not data:
                    return
                out.write(data)
                out.flush()

    def close(self) -> None:
        """Stop copying the terminal and close it."""
        self._closing.set()
        if self._copier is not None:
            self._copier.join(5.0)
        if self._pty is not None:
            os.close(self._pty)
            self._pty = None

    def text(self) -> str:
        return self.out.read_text(encoding="utf-8", errors="replace")

    def wait_for_output(self, phrase: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while phrase not in self.text():
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise AssertionError(f"{phrase!r} not printed; output:\n{self.text()}")
            time.sleep(0.05)

    def finish(self, timeout: float = 60.0) -> int:
        try:
            return self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait()
            if self._copier is not None:  # the last lines may still be on their way through the terminal
                self._copier.join(5.0)

    def find_process(self, title: bytes, timeout: float = 10.0) -> int:
        """The PID of this run's process whose title contains `title`."""
        deadline = time.monotonic() + timeout
        while True:
            titles = {}
            for pid in token_processes(self.token):
                try:
                    titles[pid] = Path(f"/proc/{pid}/cmdline").read_bytes()
                except OSError:
                    continue
                if title in titles[pid]:
                    return pid
            if time.monotonic() > deadline:
                raise AssertionError(f"no process titled {title!r}; this run's processes: {titles}\n{self.text()}")
            time.sleep(0.05)

    def survivors(self) -> list[int]:
        left = wait_until_gone(lambda: token_processes(self.token), timeout=5.0)
        kill_all(left)
        return left


@pytest.fixture
def boot(tmp_path: Path):  # type: ignore[no-untyped-def]
    started: list[Boot] = []

    def start(*args: str, tty: bool = False) -> Boot:
        b = Boot(tmp_path, *args, tty=tty)
        started.append(b)
        return b

    yield start
    for b in started:
        if b.proc.poll() is None:
            b.proc.kill()
        kill_all(token_processes(b.token))
        b.close()


@pytest.mark.parametrize("topology", [SITE, DEMO], ids=["site", "demo"])
def test_check_accepts_the_shipped_topology(boot, topology: Path) -> None:
    b = boot(str(topology), "--check")
    assert b.finish() == 0, b.text()
    assert "ok" in b.text()


def test_check_reports_problems_with_locations_and_no_traceback(boot, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("site: x\nactors:\n  a: {type: NoSuchType}\nsupervision: {children: [a]}\n", encoding="utf-8")
    b = boot(str(bad), "--check")
    assert b.finish() == 2
    assert f"{bad}:3:" in b.text() and "unknown actor type 'NoSuchType'" in b.text()
    assert "Traceback" not in b.text()


def test_missing_file_is_a_user_error(boot, tmp_path: Path) -> None:
    b = boot(str(tmp_path / "nope.yaml"), "--check")
    assert b.finish() == 2
    assert "Traceback" not in b.text() and "nope.yaml:1:1:" in b.text()


def test_duration_runs_and_stops_cleanly_leaving_no_process(boot, tmp_path: Path) -> None:
    b = boot(str(DEMO), "--duration", "3", "--admin-port", str(free_port()), "--state-dir", str(tmp_path / "state"))
    assert b.finish() == 0, b.text()
    assert "running" in b.text() and "stopped after" in b.text()
    assert b.survivors() == []


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_everything_in_reverse_order(boot, tmp_path: Path, sig: signal.Signals) -> None:
    state = tmp_path / "state"
    b = boot(str(DEMO), "--admin-port", str(free_port()), "--state-dir", str(state), "--log-level", "INFO")
    b.wait_for_output("running")
    b.find_process(b"charger: kernel")  # the survivors check below can see this run's processes
    time.sleep(1.0)
    b.proc.send_signal(sig)
    assert b.finish() == 0, b.text()
    assert f"stopping ({sig.name})" in b.text()
    stops = [line.split("charger.")[-1] for line in b.text().splitlines() if line.endswith(" stopped")]
    # demo.yaml starts ticker, then the counting group (fast-ticker, counter): stop is the mirror image
    assert stops == [
        "counting: counter stopped",
        "counting: fast-ticker stopped",
        "root: counting stopped",
        "root: ticker stopped",
    ]
    assert b.survivors() == []


def test_a_killed_actor_is_restarted_and_reported(boot, tmp_path: Path) -> None:
    b = boot(str(DEMO), "--admin-port", str(free_port()), "--state-dir", str(tmp_path / "state"))
    b.wait_for_output("running")
    counter = b.find_process(b"charger: counter")
    os.kill(counter, signal.SIGKILL)
    b.wait_for_output("counter started")
    b.proc.send_signal(signal.SIGTERM)
    assert b.finish() == 0, b.text()
    assert "counter: restarted 1x" in b.text()
    assert b.survivors() == []


def test_port_in_use_is_reported_without_traceback(boot, tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        b = boot(str(DEMO), "--duration", "1", "--admin-port", str(port), "--state-dir", str(tmp_path / "s"))
        assert b.finish() == 1
    assert "already in use" in b.text() and "Traceback" not in b.text()
    assert b.survivors() == []


def test_a_site_secret_file_that_others_can_read_is_refused_without_traceback(boot, tmp_path: Path) -> None:
    secret = tmp_path / "site.key"
    secret.write_bytes(os.urandom(32))
    secret.chmod(0o644)
    b = boot(str(DEMO), "--duration", "1", "--admin-port", str(free_port()), "--site-secret", str(secret))
    assert b.finish() == 1
    assert "chmod 600" in b.text() and "Traceback" not in b.text()
    assert secret.read_bytes().hex() not in b.text()


def test_a_private_site_secret_file_runs_the_site(boot, tmp_path: Path) -> None:
    secret = tmp_path / "site.key"
    secret.write_bytes(os.urandom(32))
    secret.chmod(0o600)
    args = ("--duration", "2", "--admin-port", str(free_port()), "--state-dir", str(tmp_path / "state"))
    b = boot(str(DEMO), *args, "--site-secret", str(secret))
    assert b.finish() == 0, b.text()
    assert "stopped after" in b.text() and secret.read_bytes().hex() not in b.text()
    assert b.survivors() == []


def test_the_readme_commands_exist() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "python -m charger.boot topology/site.yaml" in readme and "make test" in readme
    assert shutil.which("make") is not None


# --- the status view and the session summary -----------------------------------------------------------

FAKE = "tests.support.fake_connector:FakeConnector"


def write_topology(tmp_path: Path, actors: str, children: str) -> Path:
    path = tmp_path / "site.yaml"
    path.write_text(f"site: test\nactors:\n{actors}supervision:\n  name: root\n  children: [{children}]\n")
    return path


def two_fakes(tmp_path: Path) -> Path:
    actors = (
        "  ticker: {type: Ticker}\n"
        f"  evse-1: {{type: '{FAKE}', config: {{charge_after_s: 0.5, sessions_wh: [1234.4, 2000]}}}}\n"
        f"  evse-2: {{type: '{FAKE}', config: {{connector_id: 2, charge_after_s: 1.0, refuse_history: true}}}}\n"
    )
    return write_topology(tmp_path, actors, "ticker, evse-1, evse-2")


def between(text: str, first: str, last: str) -> list[str]:
    """The lines from the one starting with `first` up to (not including) the next one starting with `last`."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(first))
    end = next(i for i, line in enumerate(lines) if line.startswith(last) and i > start)
    return lines[start:end]


def test_a_run_without_connectors_ends_with_a_summary_that_says_so(boot, tmp_path: Path) -> None:
    topology = write_topology(tmp_path, "  ticker: {type: Ticker}\n", "ticker")
    b = boot(str(topology), "--duration", "2", "--admin-port", str(free_port()), "--state-dir", str(tmp_path / "s"))
    assert b.finish() == 0, b.text()
    assert between(b.text(), "charger: stopping", "charger: stopped after") == [
        "charger: stopping (duration reached)",
        f"{SUMMARY_HEADER}: no connectors in this topology",
    ]
    assert b.survivors() == []


def test_plain_output_follows_each_connector_and_ends_with_their_sessions(boot, tmp_path: Path) -> None:
    b = boot(
        str(two_fakes(tmp_path)), "--duration", "3", "--admin-port", str(free_port()), "--state-dir", str(tmp_path)
    )
    assert b.finish() == 0, b.text()
    lines = b.text().splitlines()
    for connector in ("evse-1", "evse-2"):  # a line per change, in order; none per poll
        assert [line for line in lines if line.startswith(f"{connector}: ")] == [
            f"{connector}: Available 6.0 A pilot A",
            f"{connector}: Charging 16.0 A session {connector}-7 pilot C",
        ], b.text()
    assert between(b.text(), "charger: stopping", "charger: stopped after") == [
        "charger: stopping (duration reached)",
        f"{SUMMARY_HEADER} (this run):",
        "  evse-1: 2 sessions, 3.234 kWh",
        "  evse-2: no history: rejected: history is switched off in this fake",
        "  total:  2 sessions, 3.234 kWh; 1 connector(s) gave no history",
    ]
    assert "Traceback" not in b.text()
    assert b.survivors() == []


def test_on_a_terminal_the_live_table_replaces_the_plain_lines(boot, tmp_path: Path) -> None:
    port = str(free_port())
    b = boot(str(two_fakes(tmp_path)), "--duration", "5", "--admin-port", port, "--state-dir", str(tmp_path), tty=True)
    b.wait_for_output("ChargingStarted")
    os.kill(b.find_process(b"charger: evse-2 "), signal.SIGKILL)
    assert b.finish() == 0, b.text()
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", b.text())  # the terminal's styles and cursor moves
    assert "charger: site 'test', up" in text and "last event" in text and "ChargingStarted" in text
    assert "evse-1-7" in text and "supervision: 1 restart(s) (evse-2 1x)" in text, text
    assert "evse-1: Charging 16.0 A" not in text  # the table shows it; no line per change
    assert "  evse-1: 2 sessions, 3.234 kWh" in text  # the summary is plain text below the last table
    # the actors' log went to a file, not through the table
    assert f"charger: logging to {tmp_path / 'charger.log'}" in text
    assert "evse-2" in (tmp_path / "charger.log").read_text() and "WARNING" not in text
    assert b.survivors() == []


@pytest.mark.parametrize("flag", ["--no-view", "--json-logs"])
def test_on_a_terminal_no_view_and_json_logs_keep_the_plain_lines(boot, tmp_path: Path, flag: str) -> None:
    port = str(free_port())
    b = boot(
        str(two_fakes(tmp_path)), "--duration", "3", "--admin-port", port, "--state-dir", str(tmp_path), flag, tty=True
    )
    assert b.finish() == 0, b.text()
    assert "evse-1: Charging 16.0 A session evse-1-7 pilot C" in b.text()
    assert "last event" not in b.text()
    assert b.survivors() == []


def test_the_shipped_charger_charges_cars_and_sums_up_their_sessions(boot, tmp_path: Path) -> None:
    """topology/site.yaml as shipped, on this test's own ports, with cars that leave after seconds."""
    text = SITE.read_text()
    for fixed in ("15021", "15022"):
        text = text.replace(fixed, str(free_port()))
    text = text.replace("port: 8765", "port: 0").replace("sleep 40", "sleep 4").replace("sleep 20", "sleep 3")
    site = tmp_path / "site.yaml"
    site.write_text(text)
    b = boot(str(site), "--duration", "30", "--admin-port", str(free_port()), "--state-dir", str(tmp_path / "state"))
    assert b.finish(timeout=90) == 0, b.text()
    out = b.text()
    assert "evse-1: Charging" in out and "evse-2: Charging" in out, out
    # the 32 A fuse: one car alone gets 32 - 6 (the idle connector's minimum), two share it
    assert re.search(r"evse-\d: Charging 26\.0 A", out) and re.search(r"evse-\d: Charging 16\.0 A", out), out
    summary = out[out.index(SUMMARY_HEADER) :]
    sessions = re.findall(r"evse-(\d): (\d+) sessions?, ([0-9.]+) kWh", summary)
    assert {c for c, n, _ in sessions if int(n) >= 1} == {"1", "2"}, summary
    assert all(float(kwh) > 0 for _, _, kwh in sessions), summary
    assert b.survivors() == []


def _charger_copy(tmp_path: Path) -> Path:
    """site.yaml on this test's own ports, its control API port written under the state dir."""
    text = SITE.read_text()
    for fixed in ("15021", "15022"):
        text = text.replace(fixed, str(free_port()))
    text = text.replace("config: {port: 8765}", "config: {port: 0, port_file: api.port}")
    site = tmp_path / "site.yaml"
    site.write_text(text)
    return site


def _api(state: Path, method: str, **params: Any) -> Any:
    from websockets.sync.client import connect

    from charger.ctl import request

    with connect(f"ws://127.0.0.1:{(state / 'api.port').read_text()}", open_timeout=5) as ws:
        return request(ws, method, params)


def test_a_whole_box_sigkill_loses_no_session(tmp_path: Path) -> None:
    """SIGKILL every process of a charging station, boot again on the same state dir: the session that
    was charging is closed and billed exactly, from the journal and the meter register."""
    site, state = _charger_copy(tmp_path), tmp_path / "state"
    (tmp_path / "first").mkdir()
    (tmp_path / "second").mkdir()
    args = (str(site), "--state-dir", str(state), "--no-view")
    first = Boot(tmp_path / "first", *args, "--admin-port", str(free_port()))
    second: Boot | None = None
    try:
        first.wait_for_output("evse-1: Charging", timeout=60)
        deadline = time.monotonic() + 30
        while not ((status := _api(state, "connectors.status")[0])["energy_wh"] or 0) > 1.0:
            assert time.monotonic() < deadline, status
            time.sleep(0.2)
        session = status["session_id"]
        kill_all(token_processes(first.token))  # the whole box loses power: boot, admin, every actor
        first.proc.wait()
        assert first.survivors() == []

        second = Boot(tmp_path / "second", *args, "--admin-port", str(free_port()))
        second.wait_for_output("running", timeout=60)
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(OSError, ConnectionError, ApiError):
                bills = [b for b in _api(state, "connector.sessions", connector=1) if b["session_id"] == session]
                if bills:
                    break
            assert time.monotonic() < deadline, f"session {session} was never billed after the restart"
            time.sleep(0.2)
        (bill,) = bills
        assert bill["energy_wh"] == bill["meter_stop_wh"] - bill["meter_start_wh"] > 1.0
        assert bill["stop_reason"] == "EVDisconnected"  # the simulated car did not survive the power cut
        second.proc.send_signal(signal.SIGINT)
        assert second.finish() == 0, second.text()
        assert second.survivors() == []
    finally:
        for b in (first, second):
            if b is not None:
                if b.proc.poll() is None:
                    b.proc.kill()
                kill_all(token_processes(b.token))
                b.close()
