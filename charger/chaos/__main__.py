"""``python -m charger.chaos TOPOLOGY``: kill actors of a SIL station mid-session and check that nothing
was lost (docs/faults.md).

    python -m charger.chaos topology/site.yaml                          # every target, charging phase
    python -m charger.chaos topology/site.yaml --all                    # every target x every phase
    python -m charger.chaos topology/site.yaml --targets auth,meter --phases authorizing,paused
    python -m charger.chaos topology/site.yaml --cases whole-box@csms-offline,backend-link@stopping

Exit codes: 0 every case held every invariant; 1 a case failed (or the station could not run); 2 usage.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from charger.chaos.cases import CaseResult, run_case
from charger.chaos.report import table
from charger.chaos.station import Station, StationError
from charger.chaos.targets import PHASES, TARGETS

__all__ = ["main", "select_cases"]


def _names(text: str, known: Mapping[str, object], what: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"unknown {what} {', '.join(unknown)}; known: {', '.join(known)}")
    return names


def select_cases(targets: str | None, phases: str | None, cases: str | None, every: bool) -> list[tuple[str, str]]:
    """(target, phase) pairs to run, in order; ValueError for a name that does not exist."""
    if cases:
        out = []
        for case in cases.split(","):
            target, _, phase = case.strip().partition("@")
            _names(target, TARGETS, "target")
            _names(phase or "charging", PHASES, "phase")
            out.append((target, phase or "charging"))
        return out
    chosen_targets = _names(targets, TARGETS, "target") if targets else list(TARGETS)
    chosen_phases = _names(phases, PHASES, "phase") if phases else (list(PHASES) if every else ["charging"])
    return [(t, p) for t in chosen_targets for p in chosen_phases]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m charger.chaos", description=__doc__.splitlines()[0])
    p.add_argument("topology", help="a SIL topology with a ControlApi, a SilRig per connector and a CsmsSim")
    p.add_argument("--targets", help=f"comma-separated, from: {', '.join(TARGETS)} (default: all)")
    p.add_argument("--phases", help=f"comma-separated, from: {', '.join(PHASES)} (default: charging)")
    p.add_argument("--all", action="store_true", help="every phase for each chosen target")
    p.add_argument("--cases", help="explicit TARGET@PHASE list, comma-separated (overrides the two above)")
    p.add_argument("--state-dir", type=Path, help="the station's state directory (default: a fresh temporary one)")
    p.add_argument("--recovery-timeout", type=float, default=30.0, metavar="S", help="per case (default 30)")
    p.add_argument("--json", action="store_true", help="print one JSON object with every case as the last line")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        chosen = select_cases(args.targets, args.phases, args.cases, args.all)
    except ValueError as exc:
        print(f"charger.chaos: {exc}", file=sys.stderr)
        return 2
    if not Path(args.topology).is_file():
        print(f"charger.chaos: {args.topology}: no such file", file=sys.stderr)
        return 2
    results: list[CaseResult] = []
    error = ""
    with tempfile.TemporaryDirectory(prefix="charger-chaos-") as work:
        try:
            station = Station(Path(args.topology), Path(work), args.state_dir)
        except StationError as exc:
            print(f"charger.chaos: {exc}", file=sys.stderr)
            return 2
        try:
            station.boot()
            for target, phase in chosen:
                print(f"charger.chaos: {target}@{phase} ...", file=sys.stderr, flush=True)
                results.append(
                    run_case(station, TARGETS[target], PHASES[phase], recovery_timeout=args.recovery_timeout)
                )
        except (StationError, KeyboardInterrupt) as exc:
            error = str(exc) or type(exc).__name__
        finally:
            station.stop()
    for line in table(results):
        print(line)
    if error:
        print(f"charger.chaos: stopped early: {error}", file=sys.stderr)
    ok = not error and all(r.ok for r in results)
    if args.json:
        print(json.dumps({"ok": ok, "error": error, "cases": [r.as_dict() for r in results]}))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
