"""`python -m charger.boot` as a user runs it: a real subprocess, real actor system, checked by PID."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from charger.processes import TOKEN_VARIABLE, kill_all, token_processes, wait_until_gone
from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]
SITE = ROOT / "topology" / "site.yaml"


class Boot:
    """One boot process; output goes to a file (the admin daemon inherits it, so never a pipe).

    The token is in the exec'd environment, so every process forked below boot shows it in
    /proc/PID/environ: that is how the test finds them, by PID."""

    def __init__(self, tmp_path: Path, *args: str) -> None:
        self.token = uuid.uuid4().hex
        self.out = tmp_path / "boot.out"
        env = {**os.environ, TOKEN_VARIABLE: self.token}
        with open(self.out, "wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "charger.boot", *args], stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT
            )

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

    def start(*args: str) -> Boot:
        b = Boot(tmp_path, *args)
        started.append(b)
        return b

    yield start
    for b in started:
        if b.proc.poll() is None:
            b.proc.kill()
        kill_all(token_processes(b.token))


def test_check_accepts_the_shipped_topology(boot) -> None:
    b = boot(str(SITE), "--check")
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
    b = boot(str(SITE), "--duration", "3", "--admin-port", str(free_port()), "--state-dir", str(tmp_path / "state"))
    assert b.finish() == 0, b.text()
    assert "running" in b.text() and "stopped after" in b.text()
    assert b.survivors() == []


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_everything_in_reverse_order(boot, tmp_path: Path, sig: signal.Signals) -> None:
    state = tmp_path / "state"
    b = boot(str(SITE), "--admin-port", str(free_port()), "--state-dir", str(state), "--log-level", "INFO")
    b.wait_for_output("running")
    b.find_process(b"charger: kernel")  # the survivors check below can see this run's processes
    time.sleep(1.0)
    b.proc.send_signal(sig)
    assert b.finish() == 0, b.text()
    assert f"stopping ({sig.name})" in b.text()
    stops = [line.split("charger.")[-1] for line in b.text().splitlines() if line.endswith(" stopped")]
    # site.yaml starts ticker, then the counting group (fast-ticker, counter): stop is the mirror image
    assert stops == [
        "counting: counter stopped",
        "counting: fast-ticker stopped",
        "root: counting stopped",
        "root: ticker stopped",
    ]
    assert b.survivors() == []


def test_a_killed_actor_is_restarted_and_reported(boot, tmp_path: Path) -> None:
    b = boot(str(SITE), "--admin-port", str(free_port()), "--state-dir", str(tmp_path / "state"))
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
        b = boot(str(SITE), "--duration", "1", "--admin-port", str(port), "--state-dir", str(tmp_path / "s"))
        assert b.finish() == 1
    assert "already in use" in b.text() and "Traceback" not in b.text()
    assert b.survivors() == []


def test_the_readme_commands_exist() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "python -m charger.boot topology/site.yaml" in readme and "make test" in readme
    assert shutil.which("make") is not None
