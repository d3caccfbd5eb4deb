"""The invariants every fault-injection case is checked against, as pure functions over its records:
the CSMS's frame record, the rig's relay record, and what the run saw (docs/faults.md explains them).

Each check returns human-readable violations; an empty list means the invariant held.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "Billing",
    "SafetyWindow",
    "billing",
    "dangling_descriptors",
    "fd_counts",
    "safety_violations",
]

PILOT_ON = frozenset({"C", "D"})
STOP_BUDGET_S = 6.0
"""IEC 61851-1 seq 9/10: PWM stopped and the EV stays in C/D: relays open under load after 6 s."""
PILOT_BUDGET_S = 0.1
"""IEC 61851-1 seq 8.1/8.2: the EV leaves C/D: supply off within 100 ms."""
_SLACK_S = 0.05
"""The board simulator's own tick (20 ms) and the record's timestamps, rounded up."""


@dataclass(slots=True)
class SafetyWindow:
    """When, in one case, the relays may be closed (monotonic seconds, comparable with the relay record)."""

    start: float
    """The case began: nothing before this is looked at."""
    authorized_at: float | None
    """The token was accepted; None: never (the relays must stay open the whole case)."""
    stop_requested_at: list[float] = field(default_factory=list)
    """Pause or stop requested on the host: PWM stops, the relays must open within `STOP_BUDGET_S`."""
    end: float | None = None


def safety_violations(record: list[dict[str, Any]], window: SafetyWindow) -> list[str]:
    """Relays closed outside the allowed states, or not opened within the standard's time."""
    out: list[str] = []
    rows = [r for r in record if r["t"] >= window.start and (window.end is None or r["t"] <= window.end)]
    closed, pwm_off_since = False, None
    for r in rows:
        at = f"t+{r['t'] - window.start:.2f} s"
        pwm_on = r["pwm"] is not None and 0 < r["pwm"] < 1000
        if r["relays"] and not closed:  # closing: every condition must hold at this moment
            if not pwm_on:
                out.append(f"{at}: relays closed without PWM ({r['pwm']})")
            if window.authorized_at is None or r["t"] < window.authorized_at:
                out.append(f"{at}: relays closed before the session was authorized")
        if r["relays"]:
            if r["pilot"] not in PILOT_ON:
                out.append(f"{at}: relays closed with the pilot in {r['pilot']}")
            if r["watchdog"] or r["rcd"]:
                out.append(f"{at}: relays closed with a latched board fault (watchdog {r['watchdog']}, rcd {r['rcd']})")
            # PWM stopped under load: the EV gets STOP_BUDGET_S to go to B before the relays must open
            pwm_off_since = None if pwm_on else (pwm_off_since if pwm_off_since is not None else r["t"])
            if pwm_off_since is not None and r["t"] - pwm_off_since > STOP_BUDGET_S + _SLACK_S:
                out.append(f"{at}: relays closed {r['t'] - pwm_off_since:.2f} s after PWM stopped")
        else:
            pwm_off_since = None
        closed = r["relays"]
    for asked in window.stop_requested_at:
        if not _closed_at(rows, asked):
            continue
        opened = next((r["t"] for r in rows if r["t"] > asked and not r["relays"]), None)
        late = (opened if opened is not None else window.end or asked) - asked
        if opened is None or late > STOP_BUDGET_S + _SLACK_S:
            out.append(f"relays still closed {late:.2f} s after PWM stop was asked (allowed {STOP_BUDGET_S} s)")
    return out


def _closed_at(rows: list[dict[str, Any]], t: float) -> bool:
    state = False
    for r in rows:
        if r["t"] > t:
            break
        state = r["relays"]
    return state


@dataclass(slots=True)
class Billing:
    """What the CSMS received about connector 1's transactions in one case."""

    starts: list[dict[str, Any]] = field(default_factory=list)
    """StartTransaction payloads (distinct message ids), each with ``_id`` (message id) and
    ``_tx`` (the transactionId the CSMS answered)."""
    stops: list[dict[str, Any]] = field(default_factory=list)
    """StopTransaction payloads (distinct message ids) for those transactions, with ``_id``."""
    out_of_order: list[str] = field(default_factory=list)

    @property
    def reported_wh(self) -> int | None:
        if len(self.starts) != 1 or len(self.stops) != 1:
            return None
        return int(self.stops[0]["meterStop"]) - int(self.starts[0]["meterStart"])

    @property
    def missing(self) -> int:
        return max(0, 1 - len(self.starts)) + max(0, 1 - len(self.stops))

    @property
    def duplicate(self) -> int:
        return max(0, len(self.starts) - 1) + max(0, len(self.stops) - 1)


def _calls(
    frames: list[dict[str, Any]], charge_point: str | None, since_wall: float
) -> tuple[dict[str, tuple[str, dict[str, Any], int]], dict[str, Any]]:
    """The CALLs the CSMS received (message id -> action, payload, arrival order) and its CALLRESULTs."""
    calls: dict[str, tuple[str, dict[str, Any], int]] = {}
    answers: dict[str, Any] = {}
    for entry in frames:
        if entry.get("at", 0) < since_wall or "frame" not in entry:
            continue
        if charge_point is not None and entry.get("cp") != charge_point:
            continue
        try:
            frame = json.loads(entry["frame"])
        except ValueError:
            continue
        if entry.get("dir") == "rx" and frame[0] == 2 and frame[1] not in calls:
            calls[frame[1]] = (frame[2], frame[3] if isinstance(frame[3], dict) else {}, len(calls) + 1)
        elif entry.get("dir") == "tx" and frame[0] == 3:
            answers[frame[1]] = frame[2]
    return calls, answers


def billing(frames: list[dict[str, Any]], charge_point: str | None, connector_id: int, since_wall: float) -> Billing:
    """Connector `connector_id`'s StartTransaction/StopTransaction traffic the CSMS saw after `since_wall`.

    A CALL retransmitted with the same message id is one message (OCPP-J's at-least-once delivery); two
    message ids for one transaction are a duplicate."""
    calls, answers = _calls(frames, charge_point, since_wall)
    result = Billing()
    tx_ids: dict[Any, int] = {}  # transactionId -> arrival order of its StartTransaction
    for msg_id, (action, payload, at) in calls.items():
        if action == "StartTransaction" and payload.get("connectorId") == connector_id:
            tx = (answers.get(msg_id) or {}).get("transactionId")
            result.starts.append({**payload, "_id": msg_id, "_tx": tx, "_order": at})
            if tx is not None:
                tx_ids[tx] = at
    for msg_id, (action, payload, at) in calls.items():
        tx = payload.get("transactionId")
        if action == "StopTransaction" and tx in tx_ids:
            result.stops.append({**payload, "_id": msg_id, "_order": at})
            if at < tx_ids[tx]:
                result.out_of_order.append(f"StopTransaction for {tx} before its StartTransaction")
    stopped_at = {s["transactionId"]: s["_order"] for s in result.stops}
    for msg_id, (action, payload, at) in calls.items():
        if action == "MeterValues" and at > stopped_at.get(payload.get("transactionId"), at):
            result.out_of_order.append(f"MeterValues {msg_id} after the StopTransaction")
    return result


_CLOSE_WAIT = "08"


def dangling_descriptors(pids: list[int]) -> list[str]:
    """Descriptors that outlived what they pointed at: TCP sockets whose peer has gone (CLOSE_WAIT: the
    peer closed, this side never did: a connection to a killed actor nobody cleaned up) and files that
    were deleted while still open.

    Counting all descriptors would not do: connections between actors are opened lazily, so a run's
    totals grow once as the system warms up, leak or not."""
    closing: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = open(table, encoding="ascii").read().splitlines()[1:]  # noqa: SIM115 - read at once
        except OSError:
            continue
        for line in lines:
            cols = line.split()
            if len(cols) > 9 and cols[3] == _CLOSE_WAIT:
                closing.add(cols[9])
    out = []
    for pid, entry, target in _descriptors(pids):
        if target.startswith("socket:[") and target[8:-1] in closing:
            out.append(f"pid {pid} fd {entry}: socket whose peer has gone (CLOSE_WAIT)")
        elif target.endswith(" (deleted)"):
            out.append(f"pid {pid} fd {entry}: deleted file {target[: -len(' (deleted)')]}")
    return out


def fd_counts(pids: list[int]) -> tuple[int, int]:
    """Open descriptors, and how many of them are sockets, over `pids` (gone processes count 0)."""
    targets = [target for _, _, target in _descriptors(pids)]
    return len(targets), sum(t.startswith("socket:") for t in targets)


def _descriptors(pids: list[int]) -> Iterator[tuple[int, str, str]]:
    """(pid, fd number, what it points at) of every descriptor still open; gone ones are skipped."""
    for pid in pids:
        try:
            entries = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for entry in entries:
            try:
                yield pid, entry, os.readlink(f"/proc/{pid}/fd/{entry}")
            except OSError:
                continue
