"""The table `python -m charger.chaos` prints, one row per case (docs/faults.md, "Reading the table")."""

from __future__ import annotations

from charger.chaos.cases import CaseResult

__all__ = ["table"]

_HEADER = ("case", "recovered", "recovery", "session outcome", "energy err", "tx miss/dup/order", "safety", "result")


def _row(r: CaseResult) -> tuple[str, ...]:
    if r.skipped:
        return (r.case, "-", "-", r.skipped, "-", "-", "-", "skipped")
    recovery = "-" if r.recovery_s is None else f"{r.recovery_s * 1000:.0f} ms"
    energy = "-" if r.energy_error_wh is None else f"{r.energy_error_wh:g} Wh"
    safety = str(len(r.safety)) if r.safety else "0"
    return (
        r.case,
        "yes" if r.recovered else "NO",
        recovery,
        r.outcome,
        energy,
        f"{r.missing}/{r.duplicate}/{r.out_of_order}",
        safety,
        "ok" if r.ok else "FAIL",
    )


def table(results: list[CaseResult]) -> list[str]:
    """The table's lines, then one line per violation (so a failing row says why)."""
    rows = [_HEADER, *(_row(r) for r in results)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(_HEADER))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    for r in results:
        for kind in ("safety", "billing", "continuity", "cleanliness"):
            lines += [f"{r.case}: {kind}: {v}" for v in getattr(r, kind)]
        if not r.skipped and not r.recovered:
            lines.append(f"{r.case}: not served again within the recovery timeout")
    return lines
