"""Thespian's transport with charger.frame_auth installed, on a live multiprocTCPBase system.

Malicious pickles (their unpickling would create a marker file) go to the admin port and to an
actor's port, raw and correctly signed; none may run, and the system keeps answering. Around
them: the codec on its own (sealing, tampering, replay, destination, size), where listening
sockets bind, and that the secret never reaches a log. A control shows the same attack frame does
run code against stock Thespian, so the absence of the marker means something.
"""

from __future__ import annotations

import base64
import os
import pickle
import shlex
import socket
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from charger.actors.counter import Count, GetCount
from hypothesis import given, settings
from hypothesis import strategies as st
from thespian.actors import ActorAddress, ActorExitRequest, ActorSystem
from thespian.system.transport.IPBase import TCPv4ActorAddress

from charger import frame_auth
from charger.frame_auth import HEADER_BYTES, REJECTED, FrameCodec, FrameRejected
from charger.messages import Kind, encode_envelope
from charger.processes import kill_all, session_of, session_processes, wait_until_gone
from charger.site_secret import SiteSecret, generate_secret
from charger.system import start_system
from charger.testing import RunningSystem, free_port, running_system
from tests.conftest import group, worker
from tests.supervisors.test_strategies import wait_for

LOOPBACK = "127.0.0.1"
_LOCAL = socket.inet_aton(LOOPBACK)


class Exploit:
    """Unpickling this runs ``touch MARKER`` (pickle calls os.system); pickling it runs nothing."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return os.system, (f"touch {shlex.quote(str(self.marker))}",)


def length_prefixed(frame: bytes) -> bytes:
    return b"%d>" % len(frame) + frame


def exchange(port: int, data: bytes, timeout: float = 10.0) -> bytes:
    """Send `data` to a Thespian endpoint and return the one frame it answers (empty if it just closes)."""
    with socket.create_connection((LOOPBACK, port), timeout=timeout) as conn:
        conn.sendall(data)
        received = b""
        while b">" not in received:
            chunk = conn.recv(4096)
            if not chunk:
                return received
            received += chunk
        size, _, frame = received.partition(b">")
        while len(frame) < int(size):
            chunk = conn.recv(4096)
            if not chunk:
                break
            frame += chunk
        return frame


def answer(secret: SiteSecret, frame: bytes) -> str:
    """What a sealed ACK frame says: 'ACK' or 'ACK+DATAERR'."""
    result = FrameCodec(secret).open(frame)
    assert isinstance(result, str)
    return result


def nobody() -> Any:
    """A sender address nobody listens on (the receiver may keep our connection for it)."""
    return ActorAddress(TCPv4ActorAddress(LOOPBACK, free_port(), external=True))


def signed(secret: SiteSecret, message: Any, port: int) -> bytes:
    """A correctly signed frame carrying `message` to the endpoint on `port`."""
    codec = FrameCodec(secret)
    return length_prefixed(codec.seal(pickle.dumps((nobody(), message)), _LOCAL, port))


# --- the codec on its own -----------------------------------------------------------------------------


def _codec(secret: SiteSecret | None = None) -> FrameCodec:
    return FrameCodec(secret or generate_secret(), is_local=lambda ip, port: (ip, port) == (_LOCAL, 4000))


def test_a_sealed_frame_opens_to_its_message() -> None:
    codec = _codec()
    frame = codec.seal(pickle.dumps(("sender", b"\x93payload")), _LOCAL, 4000)
    assert codec.open(frame) == ("sender", b"\x93payload")


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_any_changed_byte_is_refused(data: st.DataObject) -> None:
    codec = _codec()
    frame = bytearray(codec.seal(pickle.dumps(("sender", b"payload")), _LOCAL, 4000))
    index = data.draw(st.integers(0, len(frame) - 1))
    frame[index] ^= data.draw(st.integers(1, 255))
    with pytest.raises(FrameRejected):
        codec.open(bytes(frame))


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_are_refused_without_raising_anything_else(junk: bytes) -> None:
    with pytest.raises(FrameRejected):
        _codec().open(frame_auth.MAGIC + junk)
    assert frame_auth._TransportSerializer.loads(junk) == REJECTED


def test_a_frame_sealed_under_another_secret_is_refused() -> None:
    frame = _codec().seal(pickle.dumps("hello"), _LOCAL, 4000)
    with pytest.raises(FrameRejected, match="bad MAC"):
        _codec().open(frame)


def test_a_frame_is_accepted_once_and_only_at_its_destination() -> None:
    codec = _codec()
    frame = codec.seal(pickle.dumps("hello"), _LOCAL, 4000)
    assert codec.open(frame) == "hello"
    with pytest.raises(FrameRejected, match="replay"):
        codec.open(frame)
    elsewhere = codec.seal(pickle.dumps("hello"), _LOCAL, 4001)
    with pytest.raises(FrameRejected, match="misdirected"):
        codec.open(elsewhere)


def test_a_signed_frame_naming_a_disallowed_global_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    codec = _codec()
    with pytest.raises(FrameRejected, match="blocked global"):
        codec.open(codec.seal(pickle.dumps(Exploit(marker)), _LOCAL, 4000))
    assert not marker.exists()


def test_the_exploit_payload_is_live_with_plain_pickle(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    pickle.loads(pickle.dumps(Exploit(marker)))  # what stock Thespian does with every frame
    assert marker.exists()


def test_ack_frames_are_sealed_and_open_to_thespians_packets() -> None:
    codec = _codec()
    assert codec.open(codec.control_frame("ACK")) == "ACK"
    assert codec.open(codec.control_frame("ACK+DATAERR")) == "ACK+DATAERR"
    with pytest.raises(FrameRejected):
        _codec().open(codec.control_frame("ACK"))  # another site's ACK


def test_an_oversize_length_prefix_is_refused_before_buffering() -> None:
    buffer = frame_auth._CappedReceiveBuffer(frame_auth._TransportSerializer.loads)
    buffer.addMore(b"%d>" % (frame_auth.DEFAULT_MAX_FRAME_BYTES + 1) + b"x" * 100)
    assert buffer.isDone() and buffer.completed() == (REJECTED, b"")
    garbage = frame_auth._CappedReceiveBuffer(frame_auth._TransportSerializer.loads)
    garbage.addMore(b"12x4>" + b"x" * 10)  # stock raises here, which hangs a send waiting for its ACK
    assert garbage.isDone() and garbage.completed() == (REJECTED, b"")


def test_a_buffer_asked_twice_for_its_frame_opens_it_once() -> None:
    """Thespian asks twice when data arrives in reverse on a socket awaiting an ACK; a second
    opening would count as a replay and drop a good frame."""
    codec = _codec()
    buffer = frame_auth._CappedReceiveBuffer(codec.open)
    buffer.addMore(length_prefixed(codec.seal(pickle.dumps("hello"), _LOCAL, 4000)) + b"3>abc")
    assert buffer.isDone() and buffer.completed() == ("hello", b"3>abc")
    buffer.removeExtra()
    assert buffer.completed() == ("hello", b"")


def test_the_header_is_what_the_module_says() -> None:
    frame = _codec().seal(b"", _LOCAL, 4000)
    assert len(frame) == HEADER_BYTES
    assert struct.unpack_from("!4s", frame)[0] == frame_auth.MAGIC


# --- a live system ------------------------------------------------------------------------------------


@dataclass
class Live:
    system: RunningSystem
    admin_port: int
    log: Path
    secret: SiteSecret

    def counter_port(self) -> int:
        return int(self.system.client.resolve("counter").addressDetails.sockname[1])

    def count(self) -> Count:
        count = self.system.client.call("counter", GetCount())
        assert isinstance(count, Count)
        return count


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    state = tmp_path_factory.mktemp("frame_auth")
    root = group(
        "root",
        worker("ticker", actor="Ticker", config={"period_s": 0.05}),
        worker("counter", actor="Counter", requires={"source": ("ticker",)}),
        intensity=100,
    )
    port = free_port()
    with running_system(root, port, str(state), log_file=str(state / "system.log")) as system:
        secret = frame_auth.installed_secret()
        assert secret is not None and secret.origin == "generated"  # start_system's default
        yield Live(system, port, state / "system.log", secret)


def test_normal_messaging_works_with_the_patch_installed(live: Live) -> None:
    first = live.count().total
    wait_for(lambda: live.count().total > first, what="ticks counted")


@pytest.mark.parametrize("target", ["admin", "actor"])
def test_a_raw_malicious_pickle_runs_nothing(live: Live, target: str, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    port = live.admin_port if target == "admin" else live.counter_port()
    reply = exchange(port, length_prefixed(pickle.dumps((nobody(), Exploit(marker)))))
    assert answer(live.secret, reply) == "ACK+DATAERR"  # read, refused, and the connection closed
    assert live.count().total >= 0
    assert not marker.exists()


@pytest.mark.parametrize("target", ["admin", "actor"])
def test_a_signed_malicious_pickle_is_stopped_by_the_allowlist(live: Live, target: str, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    port = live.admin_port if target == "admin" else live.counter_port()
    reply = exchange(port, signed(live.secret, Exploit(marker), port))
    assert answer(live.secret, reply) == "ACK+DATAERR"
    assert live.count().total >= 0
    assert not marker.exists()


def test_a_frame_with_a_bad_mac_is_dropped_and_the_same_frame_signed_right_is_delivered(live: Live) -> None:
    pid, port = live.system.pid_of("counter"), live.counter_port()
    good = signed(live.secret, ActorExitRequest(), port)
    prefix = len(good) - len(good.partition(b">")[2])
    tampered = bytearray(good)
    tampered[prefix + len(frame_auth.MAGIC)] ^= 0x01  # first MAC byte
    assert answer(live.secret, exchange(port, bytes(tampered))) == "ACK+DATAERR"
    assert live.system.pid_of("counter") == pid and live.count().total >= 0
    # control: the untouched frame is obeyed (the counter exits and its supervisor restarts it)
    assert answer(live.secret, exchange(port, good)) == "ACK"
    wait_for(lambda: live.system.status().actors.get("counter") not in (None, pid), what="counter restarted")
    assert live.count().total >= 0


def test_a_replayed_or_misdirected_frame_is_dropped(live: Live) -> None:
    port = live.counter_port()
    cast = signed(live.secret, encode_envelope(Kind.CAST, 0, "test", GetCount()), port)
    assert answer(live.secret, exchange(port, cast)) == "ACK"
    assert answer(live.secret, exchange(port, cast)) == "ACK+DATAERR"
    for_the_admin = signed(live.secret, encode_envelope(Kind.CAST, 0, "test", GetCount()), live.admin_port)
    assert answer(live.secret, exchange(port, for_the_admin)) == "ACK+DATAERR"
    assert live.count().total >= 0


def test_an_oversize_frame_is_refused_without_reading_it(live: Live) -> None:
    reply = exchange(live.counter_port(), b"%d>" % (1 << 40) + b"x" * 1000)
    assert answer(live.secret, reply) == "ACK+DATAERR"
    assert live.count().total >= 0


def _listening_sockets(pids: list[int]) -> dict[int, set[tuple[str, int]]]:
    """(ip, port) of every listening TCP socket (IPv4 and IPv6) of each of `pids`."""
    listening: dict[int, tuple[str, int]] = {}
    for table, width in (("/proc/net/tcp", 4), ("/proc/net/tcp6", 16)):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] != "0A":  # LISTEN
                continue
            ip_hex, port_hex = fields[1].split(":")
            raw = bytes.fromhex(ip_hex)
            words = b"".join(raw[i : i + 4][::-1] for i in range(0, width, 4))  # kernel byte order per word
            ip = socket.inet_ntop(socket.AF_INET if width == 4 else socket.AF_INET6, words)
            listening[int(fields[9])] = (ip, int(port_hex, 16))
    found: dict[int, set[tuple[str, int]]] = {}
    for pid in pids:
        sockets: set[tuple[str, int]] = set()
        try:
            fds = list(Path(f"/proc/{pid}/fd").iterdir())
        except OSError:  # gone, or not ours
            fds = []
        for fd in fds:
            try:
                link = os.readlink(fd)
            except OSError:
                continue
            if link.startswith("socket:[") and int(link[8:-1]) in listening:
                sockets.add(listening[int(link[8:-1])])
        found[pid] = sockets
    return found


def test_no_socket_of_the_system_listens_on_all_interfaces(live: Live) -> None:
    by_pid = _listening_sockets(live.system.processes())
    everything = set().union(*by_pid.values())
    assert (LOOPBACK, live.admin_port) in everything
    assert (LOOPBACK, live.counter_port()) in everything
    assert len([pid for pid, socks in by_pid.items() if socks]) >= 4  # admin, logger, kernel, actors
    assert {ip for ip, _ in everything} == {LOOPBACK}, by_pid
    starter = live.system.asys._systemBase.transport.socket.getsockname()  # this process's own endpoint
    assert starter[0] == LOOPBACK


def test_drops_are_logged_by_the_dropping_process_and_the_secret_never_is(
    live: Live, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    counter_pid, port = live.system.pid_of("counter"), live.counter_port()
    admin_pid = next(
        pid for pid, s in _listening_sockets(live.system.processes()).items() if (LOOPBACK, live.admin_port) in s
    )
    logged_before = {pid: live.log.read_text().count(f"pid {pid} dropped") for pid in (counter_pid, admin_pid)}
    for target in (live.admin_port, port):
        exchange(target, length_prefixed(pickle.dumps((nobody(), Exploit(tmp_path / "pwned")))))
        exchange(target, signed(generate_secret(), ActorExitRequest(), target))
    # each process logs its drops when it next handles a message: the counter on a call, the admin
    # when asked to create an actor
    assert live.count().total >= 0
    extra = live.system.asys.createActor("charger.runtime.ActorProcess")
    live.system.asys.tell(extra, ActorExitRequest())
    for pid, before in logged_before.items():
        wait_for(lambda p=pid, b=before: live.log.read_text().count(f"pid {p} dropped") > b, what=f"{pid}'s log")
    logs = live.log.read_bytes() + _thespian_log().encode() + "".join(capfd.readouterr()).encode()
    assert b"bad MAC" in logs and b"unauthenticated" in logs
    for form in _forms(live.secret.key):
        assert form not in logs
    assert not (tmp_path / "pwned").exists()


def _thespian_log() -> str:
    from thespian.system import utilis

    path = (
        utilis._thesplog_file or os.getenv("THESPLOG_FILE") or os.path.join(os.getenv("TMPDIR", "/tmp"), "thespian.log")
    )
    return Path(path).read_text(errors="replace") if Path(path).exists() else ""


def _forms(key: bytes) -> list[bytes]:
    """The ways a key could show up in text."""
    return [key, key.hex().encode(), key.hex().upper().encode(), base64.b64encode(key), repr(key).encode()[2:-1]]


# --- secrets from files, and stock Thespian for contrast ----------------------------------------------


def _key_file(directory: Path, mode: int) -> Path:
    path = directory / "site.key"
    path.write_bytes(base64.b64encode(os.urandom(48)) + b"\n")
    path.chmod(mode)
    return path


def test_a_system_runs_on_a_secret_from_a_private_file(tmp_path: Path) -> None:
    previous = frame_auth.installed_secret()
    key_file = _key_file(tmp_path, 0o600)
    try:
        root = group(
            "root",
            worker("ticker", actor="Ticker"),
            worker("counter", actor="Counter", requires={"source": ("ticker",)}),
        )
        with running_system(root, free_port(), str(tmp_path), site_secret=str(key_file)) as system:
            assert system.client.call("counter", GetCount()).total >= 0
            installed = frame_auth.installed_secret()
            assert installed is not None and installed.origin == str(key_file)
    finally:
        if previous is not None:
            frame_auth.install(previous)


def test_a_secret_file_others_can_read_is_refused_without_showing_the_secret(tmp_path: Path) -> None:
    from charger.site_secret import SecretFileError

    key_file = _key_file(tmp_path, 0o640)
    with pytest.raises(SecretFileError, match="chmod 600") as refused:
        start_system(free_port(), site_secret=key_file)
    assert key_file.read_bytes().strip().decode() not in str(refused.value)


def test_control_stock_thespian_runs_the_same_attack(tmp_path: Path) -> None:
    """Without charger.frame_auth the raw attack frame of the tests above does run code."""
    previous = frame_auth.installed_secret()
    frame_auth.uninstall()  # the bind patch stays: the stock system still listens on loopback only
    marker, port = tmp_path / "pwned", free_port()
    os.environ["THESPIAN_BASE_IPADDR"] = LOOPBACK
    asys = ActorSystem("multiprocTCPBase", capabilities={"Admin Port": port}, logDefs=None, transientUnique=True)
    session = 0
    try:
        admin = _listening_sockets_pid(port)
        session = session_of(admin)
        reply = exchange(port, length_prefixed(pickle.dumps((nobody(), Exploit(marker)))))
        assert pickle.loads(reply) == "ACK"  # stock: plain pickle; os.system's 0 made a valid (sender, 0) frame
        wait_for(marker.exists, what="the stock admin to run the payload")
    finally:
        asys.shutdown()
        left = wait_until_gone(lambda: session_processes(session), timeout=10.0) if session else []
        kill_all(left)
        if previous is not None:
            frame_auth.install(previous)
    assert not left


def _listening_sockets_pid(port: int) -> int:
    """The PID of the process of our own user listening on `port` on loopback."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        candidates = [int(p) for p in os.listdir("/proc") if p.isdigit()]
        mine = [p for p in candidates if _owned(p)]
        for pid, socks in _listening_sockets(mine).items():
            if (LOOPBACK, port) in socks:
                return pid
        time.sleep(0.05)
    raise AssertionError(f"nobody listens on {port}")


def _owned(pid: int) -> bool:
    try:
        return os.stat(f"/proc/{pid}").st_uid == os.getuid() and os.access(f"/proc/{pid}/fd", os.R_OK)
    except OSError:
        return False
