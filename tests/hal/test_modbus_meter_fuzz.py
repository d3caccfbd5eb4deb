"""Fuzzed Modbus answers into `ModbusMeter`: random words served by the real pymodbus server, and random
bytes on the TCP connection from a proxy in front of it. Every read returns a reading or raises
`MeterOffline` with a reason, and the next read after the garbage is served again."""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from collections.abc import Iterator

import pytest
from charger.hal.meter import MeterFault, MeterOffline, ModbusMeter
from charger.protocols.modbus_maps import SDM630, MeterReading, RegisterMap, SunSpecProbe, plan_reads
from charger.sim.meter_server import MeterLayout, MeterServer
from hypothesis import example, given
from hypothesis import strategies as st

from tests.support.fuzz import live
from tests.support.resources import no_leaks

LAYOUTS: dict[MeterLayout, RegisterMap | SunSpecProbe] = {
    MeterLayout.SDM630: SDM630,
    MeterLayout.SUNSPEC_203: SunSpecProbe(),
}
FAST = {"timeout": 0.1, "retries": 0}  # a garbled answer costs one timeout, not three


@pytest.fixture(scope="module", autouse=True)
def _no_leaks() -> Iterator[None]:
    yield from no_leaks()


@pytest.fixture(scope="module", params=list(LAYOUTS), ids=lambda layout: layout.value)
def server(request: pytest.FixtureRequest) -> Iterator[MeterServer]:
    with MeterServer(request.param, energy_wh=1000.0) as sim:
        sim.set_load(7360.0, (10.0, 11.0, 12.0), 230.0)
        yield sim


def served_addresses(server: MeterServer) -> list[int]:
    """Every register a SunSpec discovery or a block read touches, so overrides land where they matter."""
    blocks = [b.address + i for b in plan_reads(server.register_map) for i in range(b.count)]
    return sorted(set(blocks) | (set(range(40000, 40080)) if server.layout is MeterLayout.SUNSPEC_203 else set()))


def fresh_read(server: MeterServer) -> MeterReading:
    meter = ModbusMeter.tcp("127.0.0.1", LAYOUTS[server.layout], port=server.port)
    try:
        return meter.read()
    finally:
        meter.close()


@live(150)
@given(data=st.data())
def test_random_register_words_are_read_or_refused_with_a_reason(server: MeterServer, data: st.DataObject) -> None:
    addresses = served_addresses(server)
    words = data.draw(st.dictionaries(st.sampled_from(addresses), st.integers(0, 0xFFFF), min_size=1, max_size=40))
    meter = ModbusMeter.tcp("127.0.0.1", LAYOUTS[server.layout], port=server.port, **FAST)
    try:
        server.set_words(words)
        try:
            meter.read()
        except MeterOffline as exc:
            assert exc.reason in (MeterFault.BAD_DATA, MeterFault.IMPLAUSIBLE, MeterFault.NOT_SUNSPEC), exc
            assert exc.detail
        server.set_words({})
        assert read_again(meter) in ("ok", "energy went backwards")  # the same driver, the meter healthy again
    finally:
        server.set_words({})
        meter.close()
    assert fresh_read(server).voltages_v == (230.0, 230.0, 230.0)


class GarblingProxy:
    """Forwards Modbus TCP to the real server, except that the answer to the next request can be
    replaced by arbitrary bytes (a broken gateway, a device answering with the wrong framing)."""

    def __init__(self, upstream: int) -> None:
        self._upstream = upstream
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._garbage: list[bytes] = []
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._sockets: list[socket.socket] = []
        self._accepting = threading.Thread(target=self._accept, daemon=True)
        self._accepting.start()

    def garble_next(self, answer: bytes) -> None:
        with self._lock:
            self._garbage.append(answer)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept(); close() alone does not
        self._listener.close()
        with self._lock:
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
        self._accepting.join()
        for thread in self._threads:
            thread.join()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self._upstream))
            with self._lock:
                self._sockets += [client, upstream]
            thread = threading.Thread(target=self._relay, args=(client, upstream), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _relay(self, client: socket.socket, upstream: socket.socket) -> None:
        with contextlib.suppress(OSError), client, upstream:
            while request := client.recv(260):
                with self._lock:
                    garbage = self._garbage.pop(0) if self._garbage else None
                if garbage is not None:
                    client.sendall(garbage)
                    continue
                upstream.sendall(request)
                client.sendall(upstream.recv(260))


def read_again(meter: ModbusMeter) -> str:
    """Read with the driver that saw the garbage. A TIMEOUT is retried: with the short timeout these
    tests use, a loaded machine can be late with a healthy answer (timing, not the garbage)."""
    for _ in range(3):
        try:
            assert meter.read().voltages_v == (230.0, 230.0, 230.0)
        except MeterOffline as exc:
            if exc.reason is MeterFault.TIMEOUT:
                continue
            # designed: a garbage energy above the real one was accepted, so the real one "goes back"
            assert exc.reason is MeterFault.IMPLAUSIBLE and "backwards" in exc.detail, exc
            return "energy went backwards"
        return "ok"
    return "timed out three times"


@st.composite
def garbled_answers(draw: st.DrawFn) -> bytes:
    """Raw bytes, or an MBAP header (any transaction id, protocol, length, unit) around a random PDU."""
    if draw(st.booleans()):
        return draw(st.binary(min_size=1, max_size=40))
    pdu = bytes([draw(st.sampled_from([3, 4, 0x83, 0x84]) | st.integers(0, 255))]) + draw(st.binary(max_size=30))
    length = draw(st.just(len(pdu) + 1) | st.integers(0, 0xFFFF))
    head = struct.pack(">HHHB", draw(st.integers(0, 3)), draw(st.sampled_from([0, 0, 1])), length, 1)
    return head + pdu


@pytest.fixture(scope="module")
def proxy() -> Iterator[GarblingProxy]:
    # The framing is the same for every layout: one (the SDM630, no discovery) is enough here.
    with MeterServer(MeterLayout.SDM630, energy_wh=1000.0) as sim:
        sim.set_load(7360.0, (10.0, 11.0, 12.0), 230.0)
        garbler = GarblingProxy(sim.port)
        yield garbler
        garbler.close()


@live(50)
@given(garbage=garbled_answers())
@example(garbage=struct.pack(">HHHB", 1, 0, 3, 1) + bytes([3, 4]))  # a byte count beyond the packet
def test_garbled_answers_are_refused_with_a_reason_and_the_next_read_works(
    proxy: GarblingProxy, garbage: bytes
) -> None:
    meter = ModbusMeter.tcp("127.0.0.1", SDM630, port=proxy.port, **FAST)
    try:
        assert read_again(meter) == "ok"  # connected: the garbage hits a block read
        proxy.garble_next(garbage)
        try:
            meter.read()  # random bytes that happen to be a well-formed answer are read like any other
        except MeterOffline as exc:
            assert exc.reason is not MeterFault.CONNECTION and exc.detail, exc
        assert read_again(meter) in ("ok", "energy went backwards")  # the same driver reads again
    finally:
        meter.close()
