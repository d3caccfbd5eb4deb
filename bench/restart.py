"""Restart benchmark: SIGKILL of a supervised child -> the restarted child answers a call by name.

A probe actor (a Behaviour wired to the target by name) asks the target for its PID, SIGKILLs it and
starts the clock, then calls the target by name until a reply comes from a new PID. While the target
is down the call fails fast with `Unavailable` (the supervisor unregistered it and the registry
pushed ``Unbound``); the probe retries after a short timer. The time therefore covers: Thespian's
``ChildActorExited`` in the supervisor, unregistering, forking and initialising the new process,
registering it, the registry's ``Bound`` push to the probe, and one call round trip.

For context the same run measures Thespian's raw floor: a plain Thespian parent that re-creates
its SIGKILLed child on ``ChildActorExited`` and times until the new child answers its first message.
The two are interleaved in rounds. The target's supervisor has a restart intensity high enough
(1000 in 1 s) that the kills never escalate.

Run from the repository root::

    python -m bench.restart [--kills 60] [--json]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from collections.abc import Sequence
from typing import Any

from charger.supervisors.spec import ChildKind, ChildSpec, SupFlags
from thespian.actors import ActorExitRequest

from bench._actors import (
    ECHO_ACTOR,
    PROBE_ACTOR,
    MeasureRestarts,
    RawRecreateParent,
    RawRecreateRun,
    RawSamples,
    RestartSamples,
)
from bench._common import at_stack_depth, machine, percentile, print_json, to_ms, today
from charger.testing import RunningSystem, running_system

__all__ = ["main", "run"]

DEFAULT_PORT = 19501
TARGET_MS = 50.0


def _tree(intensity: int) -> ChildSpec:
    target = ChildSpec(id="target", actor=ECHO_ACTOR)
    probe = ChildSpec(id="probe", actor=PROBE_ACTOR, requires={"target": ("target",)})
    # one_for_one: only the target restarts; the probe (its sibling) keeps its state and its binding
    flags = SupFlags(intensity=intensity, period=1.0)
    return ChildSpec(id="bench", kind=ChildKind.SUPERVISOR, flags=flags, children=(target, probe))


def _framework(system: RunningSystem, kills: int, retry_s: float) -> tuple[list[float], list[int]]:
    reply = system.client.call("probe", MeasureRestarts(kills=kills, retry_s=retry_s), timeout=30.0 + kills * 5.0)
    assert isinstance(reply, RestartSamples)
    return list(reply.seconds), list(reply.attempts)


def _thespian(asys: Any, parent: Any, kills: int) -> list[float]:
    reply = asys.ask(parent, RawRecreateRun(kills=kills), 30.0 + kills * 5.0)
    if not isinstance(reply, RawSamples):
        raise RuntimeError(f"bare Thespian parent answered {reply!r}")
    return reply.seconds


def _split(n: int, rounds: int) -> list[int]:
    rounds = max(1, min(rounds, n))
    return [n // rounds + (1 if i < n % rounds else 0) for i in range(rounds)]


def run(
    kills: int,
    *,
    warmup: int = 2,
    rounds: int = 3,
    retry_ms: float = 2.0,
    baseline: bool = True,
    port: int = DEFAULT_PORT,
) -> dict[str, Any]:
    """Measure; return the flat result dict (the JSON printed by `main`)."""
    load = round(os.getloadavg()[0], 2)  # other work on the machine skews every figure: say so
    fw: list[float] = []
    attempts: list[int] = []
    raw: list[float] = []
    # generous: every kill is a restart in the window, and a slow machine must not escalate
    intensity = max(1000, 4 * (kills + warmup))
    with (
        tempfile.TemporaryDirectory(prefix="charger-bench-") as tmp,
        running_system(_tree(intensity), port, tmp, log_file=os.path.join(tmp, "system.log")) as system,
    ):
        parent = system.asys.createActor(RawRecreateParent) if baseline else None
        try:
            if warmup > 0:  # discarded: the first restarts pay lazy imports and first connections
                _framework(system, warmup, retry_ms / 1000)
                if parent is not None:
                    _thespian(system.asys, parent, warmup)
            for i, k in enumerate(_split(kills, rounds)):
                order = ("framework", "thespian") if i % 2 == 0 else ("thespian", "framework")
                for path in order:
                    if path == "framework":
                        got, tries = _framework(system, k, retry_ms / 1000)
                        fw.extend(got)
                        attempts.extend(tries)
                    elif parent is not None:
                        raw.extend(_thespian(system.asys, parent, k))
            restarts = system.status().restarts.get("target", 0)
        finally:
            if parent is not None:
                system.asys.tell(parent, ActorExitRequest())
    result: dict[str, Any] = {
        "kills": len(fw),
        "warmup": warmup,
        "retry_ms": retry_ms,
        "restart_p50_ms": to_ms(percentile(fw, 50)),
        "restart_p99_ms": to_ms(percentile(fw, 99)),
        "restart_mean_ms": to_ms(statistics.fmean(fw)),
        "restart_min_ms": to_ms(min(fw)),
        "restart_max_ms": to_ms(max(fw)),
        "calls_per_restart_p50": percentile(attempts, 50),
        "calls_per_restart_max": max(attempts),
        "supervisor_restarts": restarts,
        "loadavg_1m_at_start": load,
        "date": today(),
        "machine": machine(),
    }
    if raw:
        result["thespian_recreate_p50_ms"] = to_ms(percentile(raw, 50))
        result["thespian_recreate_p99_ms"] = to_ms(percentile(raw, 99))
        result["thespian_recreate_min_ms"] = to_ms(min(raw))
        result["thespian_recreate_max_ms"] = to_ms(max(raw))
        result["ratio_restart_thespian"] = round(result["restart_p50_ms"] / result["thespian_recreate_p50_ms"], 3)
    return result


def _print_table(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"SIGKILL -> restarted child answers, {result['kills']} kills")
    for column in ("path", "p50 ms", "p99 ms", "min ms", "max ms"):
        table.add_column(column, justify="left" if column == "path" else "right", no_wrap=True)
    table.add_row(
        "framework (supervisor + registry, call by name)",
        *(f"{result[f'restart_{k}_ms']:.2f}" for k in ("p50", "p99", "min", "max")),
    )
    if "thespian_recreate_p50_ms" in result:
        table.add_row(
            "thespian (parent re-creates on ChildActorExited)",
            *(f"{result[f'thespian_recreate_{k}_ms']:.2f}" for k in ("p50", "p99", "min", "max")),
        )
    console = Console(width=max(110, Console().width))  # not 80 columns when piped to a file
    console.print(table)
    verdict = "met" if result["restart_p50_ms"] <= TARGET_MS else "NOT met"
    console.print(f"target restart p50 <= {TARGET_MS:g} ms: {result['restart_p50_ms']:.2f} ms ({verdict})")
    console.print(
        f"probe calls per restart: p50 {result['calls_per_restart_p50']}, max {result['calls_per_restart_max']};"
        f" restarts counted by the kernel: {result['supervisor_restarts']}"
    )
    console.print(f"load average (1 min) at start: {result['loadavg_1m_at_start']}")
    console.print(result["machine"], style="dim")


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.restart", description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    parser.add_argument("--kills", type=int, default=60, help="measured kills (default 60)")
    parser.add_argument("--warmup", type=int, default=2, help="discarded kills per path first (default 2)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds the kills are split into (default 3)")
    parser.add_argument(
        "--retry-ms", type=float, default=2.0, help="probe's pause between calls while down (default 2)"
    )
    parser.add_argument("--no-baseline", action="store_true", help="skip the bare Thespian re-create baseline")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"admin port (default {DEFAULT_PORT})")
    parser.add_argument(
        "--stack-pad",
        type=int,
        default=0,
        help="start the actor system this many Python frames deeper (diagnostic, see bench/RESULTS.md)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    args = parser.parse_args(argv)
    if args.kills < 1 or args.warmup < 0 or args.rounds < 1 or args.stack_pad < 0 or args.retry_ms <= 0:
        parser.error("--kills and --rounds must be >= 1, --warmup and --stack-pad >= 0, --retry-ms > 0")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    result = at_stack_depth(
        args.stack_pad,
        lambda: run(
            args.kills,
            warmup=args.warmup,
            rounds=args.rounds,
            retry_ms=args.retry_ms,
            baseline=not args.no_baseline,
            port=args.port,
        ),
    )
    result["stack_pad"] = args.stack_pad
    _print_table(result)
    if args.json:
        print_json(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
