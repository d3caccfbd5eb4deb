"""Messaging benchmark: call round trip and sequential throughput, framework vs bare Thespian vs asyncio.

Three paths carry the same bytes (the msgpack envelope of one `BenchPing`), measured side by side:

- ``framework``: a driver Behaviour calls an echo Behaviour by name (``yield self.call(...)``), both
  under a real supervision tree on multiprocTCPBase (`charger.testing.running_system`).
- ``thespian``: two plain `thespian.actors.Actor`s; the driver sends the envelope bytes, the echo
  sends them back unchanged (no decode). The floor the framework is built on.
- ``asyncio``: a raw asyncio TCP client (this process) and server (another process) exchanging
  length-prefixed frames. The floor of any Python message passing over loopback.

Round trips are timed with `time.perf_counter` inside the driver (the actor, or the asyncio
client), so the benchmark process's own requests are not counted. Each path gets a discarded
warm-up, then the paths run in alternating rounds (rotating the order) so drift on the machine
affects all three alike. The minor page faults of each driver/echo pair are reported too: tens per
round trip mean CPython 3.11's data-stack chunk thrash, which `--stack-pad` can provoke (RESULTS.md §3).

Run from the repository root::

    python -m bench.messaging [--n 2000] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from charger.supervisors.spec import ChildKind, ChildSpec, SupFlags
from thespian.actors import ActorExitRequest

from bench._actors import DRIVER_ACTOR, ECHO_ACTOR, BenchPing, RawDriver, RawRun, RawSamples, RunPingPong, Samples
from bench._asyncio_echo import HEADER
from bench._common import (
    at_stack_depth,
    machine,
    minor_faults,
    percentile,
    print_json,
    to_ms,
    today,
)
from charger.messages import Kind, encode_envelope
from charger.processes import session_of, session_processes
from charger.testing import RunningSystem, running_system

__all__ = ["PATHS", "main", "run"]

PATHS = ("framework", "thespian", "asyncio")
DEFAULT_PORT = 19500
_REPO = Path(__file__).resolve().parents[1]

Measure = Callable[[int], tuple[list[float], float]]
"""Run k sequential round trips; return the per-trip seconds and the loop's wall time."""


def _tree() -> ChildSpec:
    echo = ChildSpec(id="echo", actor=ECHO_ACTOR)
    driver = ChildSpec(id="driver", actor=DRIVER_ACTOR, requires={"peer": ("echo",)})
    return ChildSpec(
        id="bench", kind=ChildKind.SUPERVISOR, flags=SupFlags(intensity=10, period=1.0), children=(echo, driver)
    )


def _framework(system: RunningSystem, payload: bytes) -> Measure:
    def measure(k: int) -> tuple[list[float], float]:
        reply = system.client.call("driver", RunPingPong(n=k, payload=payload), timeout=60.0 + k * 0.05)
        assert isinstance(reply, Samples)
        return list(reply.seconds), reply.elapsed

    return measure


def _counting_faults(measure: Measure, pids: Sequence[int], faults: list[int]) -> Measure:
    """Also record the minor page faults of `pids` (driver and echo) during each run in `faults`.

    Healthy: about 0 per round trip. CPython 3.11's data-stack chunk thrash (see `at_stack_depth`)
    shows up as tens per round trip, long before anyone profiles it.
    """

    def counted(k: int) -> tuple[list[float], float]:
        before = sum(minor_faults(p) for p in pids)
        got = measure(k)
        faults.append(sum(minor_faults(p) for p in pids) - before)
        return got

    return counted


def _titled(sid: int, prefixes: Sequence[str]) -> list[int]:
    """PIDs in session `sid` whose title (setproctitle: ``"ClassName ActorAddr-..."``) starts with a prefix."""
    found = []
    for pid in session_processes(sid):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
                title = cmdline.read().decode(errors="replace")
        except OSError:
            continue
        if title.startswith(tuple(prefixes)):
            found.append(pid)
    return found


def _thespian(asys: Any, driver: Any, frame: bytes) -> Measure:
    def measure(k: int) -> tuple[list[float], float]:
        reply = asys.ask(driver, RawRun(n=k, frame=frame), 60.0 + k * 0.05)
        if not isinstance(reply, RawSamples):
            raise RuntimeError(f"bare Thespian driver answered {reply!r}")
        return reply.seconds, reply.elapsed

    return measure


async def _asyncio_client(port: int, frame: bytes, k: int) -> tuple[list[float], float]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)  # asyncio sets TCP_NODELAY
    try:
        wire = len(frame).to_bytes(HEADER, "big") + frame
        clock = time.perf_counter
        samples: list[float] = []
        started = clock()
        for _ in range(k):
            t0 = clock()
            writer.write(wire)
            header = await reader.readexactly(HEADER)
            body = await reader.readexactly(int.from_bytes(header, "big"))
            samples.append(clock() - t0)
            if body != frame:
                raise RuntimeError("asyncio echo changed the frame")
        return samples, clock() - started
    finally:
        writer.close()
        await writer.wait_closed()


@contextmanager
def _asyncio_server(workdir: str) -> Iterator[int]:
    """Start the echo server in its own process; yield its port; always stop it."""
    port_file = os.path.join(workdir, "asyncio-echo.port")
    # stdout to a file, never a pipe (a habit: nothing here may hold a benchmark's pipe open)
    with open(os.path.join(workdir, "asyncio-echo.log"), "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bench._asyncio_echo", port_file],
            cwd=_REPO,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 15.0
        while not os.path.exists(port_file):
            if proc.poll() is not None:
                raise RuntimeError(f"asyncio echo server exited with {proc.returncode}")
            if time.monotonic() > deadline:
                raise RuntimeError("asyncio echo server did not start")
            time.sleep(0.01)
        with open(port_file, encoding="ascii") as f:
            yield int(f.read())
    finally:
        proc.terminate()
        try:
            proc.wait(5.0)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5.0)


def _split(n: int, rounds: int) -> list[int]:
    rounds = max(1, min(rounds, n))
    return [n // rounds + (1 if i < n % rounds else 0) for i in range(rounds)]


def _summary(samples: Sequence[float], elapsed: float) -> dict[str, float]:
    return {
        "p50_ms": to_ms(percentile(samples, 50)),
        "p99_ms": to_ms(percentile(samples, 99)),
        "mean_ms": to_ms(statistics.fmean(samples)),
        "min_ms": to_ms(min(samples)),
        "max_ms": to_ms(max(samples)),
        "rps": round(len(samples) / elapsed, 1),
    }


def run(
    n: int, *, warmup: int = 200, rounds: int = 4, payload_size: int = 200, port: int = DEFAULT_PORT
) -> dict[str, Any]:
    """Measure all three paths; return the flat result dict (the JSON printed by `main`)."""
    load = round(os.getloadavg()[0], 2)  # other work on the machine skews every figure: say so
    payload = bytes(i % 251 for i in range(payload_size))
    # the exact bytes the framework puts on the wire for this call: the baselines carry them too
    frame = encode_envelope(Kind.CALL, 1, "driver", BenchPing(payload=payload))
    samples: dict[str, list[float]] = {p: [] for p in PATHS}
    elapsed: dict[str, float] = dict.fromkeys(PATHS, 0.0)
    faults: dict[str, list[int]] = {"framework": [], "thespian": []}
    with (
        tempfile.TemporaryDirectory(prefix="charger-bench-") as tmp,
        running_system(_tree(), port, tmp, log_file=os.path.join(tmp, "system.log")) as system,
    ):
        raw_driver = system.asys.createActor(RawDriver)
        try:
            with _asyncio_server(tmp) as echo_port:
                measures: dict[str, Measure] = {
                    "framework": _framework(system, payload),
                    "thespian": _thespian(system.asys, raw_driver, frame),
                    "asyncio": lambda k: asyncio.run(_asyncio_client(echo_port, frame, k)),
                }
                for path in PATHS:
                    measures[path](max(warmup, 1))  # discarded: first calls pay connects, imports, caches
                sid = session_of(system.pid_of("driver"))
                pids = {
                    "framework": [system.pid_of("driver"), system.pid_of("echo")],
                    "thespian": _titled(sid, ("RawDriver", "RawEcho")),  # the raw echo exists once it answered
                }
                for path, of in pids.items():
                    measures[path] = _counting_faults(measures[path], of, faults[path])
                for i, k in enumerate(_split(n, rounds)):
                    for path in PATHS[i % 3 :] + PATHS[: i % 3]:  # rotate who goes first
                        got, took = measures[path](k)
                        samples[path].extend(got)
                        elapsed[path] += took
        finally:
            system.asys.tell(raw_driver, ActorExitRequest())
    stats = {p: _summary(samples[p], elapsed[p]) for p in PATHS}
    result: dict[str, Any] = {
        "n": n,
        "warmup": warmup,
        "rounds": len(_split(n, rounds)),
        "payload_bytes": payload_size,
        "frame_bytes": len(frame),
        "date": today(),
        "machine": machine(),
    }
    for path in PATHS:
        for key, value in stats[path].items():
            result[f"{path}_{key}"] = value
    result["ratio_framework_thespian"] = round(stats["framework"]["p50_ms"] / stats["thespian"]["p50_ms"], 3)
    result["ratio_framework_asyncio"] = round(stats["framework"]["p50_ms"] / stats["asyncio"]["p50_ms"], 3)
    result["ratio_thespian_asyncio"] = round(stats["thespian"]["p50_ms"] / stats["asyncio"]["p50_ms"], 3)
    result["ratio_rps_framework_thespian"] = round(stats["framework"]["rps"] / stats["thespian"]["rps"], 3)
    result["framework_page_faults_per_call"] = round(sum(faults["framework"]) / n, 2)
    result["thespian_page_faults_per_call"] = round(sum(faults["thespian"]) / n, 2)
    result["loadavg_1m_at_start"] = load
    return result


def _print_table(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"call round trip, n={result['n']} per path, {result['frame_bytes']}-byte frame")
    for column in ("path", "p50 ms", "p99 ms", "mean ms", "min ms", "max ms", "round trips/s", "p50 vs thespian"):
        table.add_column(column, justify="left" if column == "path" else "right", no_wrap=True)
    base = result["thespian_p50_ms"]
    for path in PATHS:
        table.add_row(
            path,
            f"{result[f'{path}_p50_ms']:.3f}",
            f"{result[f'{path}_p99_ms']:.3f}",
            f"{result[f'{path}_mean_ms']:.3f}",
            f"{result[f'{path}_min_ms']:.3f}",
            f"{result[f'{path}_max_ms']:.3f}",
            f"{result[f'{path}_rps']:.0f}",
            f"{result[f'{path}_p50_ms'] / base:.2f}x",
        )
    console = Console(width=max(110, Console().width))  # not 80 columns when piped to a file
    console.print(table)
    verdict = "met" if result["ratio_framework_thespian"] <= 1.3 else "NOT met"
    console.print(f"target framework/thespian p50 <= 1.3: {result['ratio_framework_thespian']:.2f} ({verdict})")
    console.print(
        f"minor page faults per round trip (driver + echo): framework {result['framework_page_faults_per_call']:.1f},"
        f" thespian {result['thespian_page_faults_per_call']:.1f} (about 0 when healthy; tens = CPython 3.11"
        " data-stack chunk thrash, see bench/RESULTS.md)"
    )
    console.print(f"load average (1 min) at start: {result['loadavg_1m_at_start']}")
    console.print(result["machine"], style="dim")


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.messaging", description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    parser.add_argument("--n", type=int, default=2000, help="measured round trips per path (default 2000)")
    parser.add_argument(
        "--warmup",
        type=int,
        default=200,
        help="discarded round trips per path first (default 200; at least 1 is always run)",
    )
    parser.add_argument("--rounds", type=int, default=4, help="alternating rounds the n are split into (default 4)")
    parser.add_argument("--payload", type=int, default=200, help="payload bytes inside BenchPing (default 200)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"admin port (default {DEFAULT_PORT})")
    parser.add_argument(
        "--stack-pad",
        type=int,
        default=0,
        help="start the actor system this many Python frames deeper (diagnostic, see bench/RESULTS.md)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    args = parser.parse_args(argv)
    if args.n < 1 or args.warmup < 0 or args.rounds < 1 or args.stack_pad < 0 or args.payload < 0:
        parser.error("--n and --rounds must be >= 1, --warmup, --payload and --stack-pad >= 0")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    result = at_stack_depth(
        args.stack_pad,
        lambda: run(args.n, warmup=args.warmup, rounds=args.rounds, payload_size=args.payload, port=args.port),
    )
    result["stack_pad"] = args.stack_pad
    _print_table(result)
    if args.json:
        print_json(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
