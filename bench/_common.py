"""Shared helpers of the benchmarks: percentiles, machine description, output."""

from __future__ import annotations

import datetime
import json
import math
import os
import platform
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

__all__ = [
    "at_stack_depth",
    "cpu_model",
    "machine",
    "minor_faults",
    "percentile",
    "print_json",
    "to_ms",
    "today",
]

T = TypeVar("T")


def percentile(samples: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100): always one of the measured values, never interpolated."""
    if not samples:
        raise ValueError("no samples")
    ordered = sorted(samples)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def to_ms(seconds: float) -> float:
    return round(seconds * 1000.0, 4)


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown cpu"


def machine() -> str:
    """Platform, CPU model and count, Python version: enough to compare runs across hosts."""
    return (
        f"{platform.platform()}; {cpu_model()}; {os.cpu_count()} cpus; "
        f"{platform.python_implementation()} {platform.python_version()}"
    )


def today() -> str:
    return datetime.date.today().isoformat()


def print_json(result: dict[str, Any]) -> None:
    """One JSON object on one line, printed last so a caller can parse the final line."""
    print(json.dumps(result, sort_keys=True), flush=True)


def minor_faults(pid: int) -> int:
    """Minor page faults of a process so far (field 10 of /proc/PID/stat)."""
    with open(f"/proc/{pid}/stat", "rb") as stat:
        return int(stat.read().rsplit(b")", 1)[1].split()[7])


def at_stack_depth(pad: int, fn: Callable[[], T]) -> T:
    """Call `fn` `pad` Python frames deeper than here.

    Every actor process is forked (never exec'd), so it keeps the stack of its parent at the moment
    of the fork, and the whole tree inherits the starter's depth at `ActorSystem()`. On CPython 3.11
    a hot loop that runs across a 16 KiB data-stack chunk boundary mmaps and munmaps a chunk on
    every crossing (python/cpython#142183); `--stack-pad` moves where that boundary falls, so the
    benchmarks can show how much the framework's figures depend on it.
    """
    return fn() if pad <= 0 else at_stack_depth(pad - 1, fn)
