"""OCPP outage benchmark: N SIL connectors charge through a CSMS outage of M minutes, then the backend
link reconnects and drains its persistent queue.

One actor system runs the park topology of `bench.park` (one SilRig, per connector a board driver, a
meter and an EVSE manager, a LoadShare) plus one ``backend`` (BackendLink) wired to every EVSE manager
and meter, with MeterValueSampleInterval ``--meter-interval`` (Energy.Active.Import.Register only). The
CSMS is our simulator (`charger.sim.csms_server`) on a thread of this process. Then:

1. every connector is authorized and its car plugged in; once every StartTransaction has been answered,
   an **online window** (``--online-s``) measures how long a sampled MeterValues takes from its
   timestamp to the CSMS (the link keeping up with what is generated);
2. the CSMS goes offline (TCP refused) for ``--outage-min`` minutes while the cars charge;
3. just before it comes back, the benchmark reads the station's own queue (``backend-queue.db``, the
   SQLite file the link delivers from): that is what the station generated and still owes the CSMS;
4. **drain**: from the CSMS coming back until it has answered the last of those messages. The link's
   **rate** is transaction messages answered per second from its first to its last answer of the
   drain (MeterValues of the still charging cars keep joining the queue behind them);
5. **baseline** in the same run, cars still charging: a plain `ocpp` ChargePoint over `websockets` in
   its own process, no actors and no queue, sends the same MeterValues one after another (one CALL in
   flight, as OCPP-J requires and as the link does) to the same simulator;
6. every car unplugs; once each StopTransaction is delivered, each transaction's stream as the CSMS saw
   it is checked against the EVSE manager's bill.

Checks: **lost** = queued messages the CSMS never answered + messages the link discarded; **duplicates**
= a queued message answered more than once; **order violations** = queued messages that reached the
CSMS before one queued earlier, plus, per transaction over the whole run, a StartTransaction not first,
a StopTransaction not last, a MeterValues timestamp or register going backwards (a sample stamped after
its StopTransaction is reported apart: see `check_transactions`). Messages are matched by their exact
payload (the queue's payload plus the transactionId it fills in). The per-message breakdown (the
CSMS's answer time, and the station's turnaround from an answer to its next CALL) comes from the
simulator's frame log, for the link and for the baseline.

Run from the repository root (output to a file: the actor system's Admin inherits stdout)::

    python -m bench.ocpp [--connectors 10] [--outage-min 2] [--meter-interval 1] [--json] > out.txt
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from charger.actors.charging import AuthorizeSession, GetSessionHistory, PlugCar, SessionHistory, UnplugCar
from charger.actors.ocpp_messages import BackendLinkStatus, GetBackendLinkStatus
from charger.sim.csms_record import CALL, CALLRESULT, Direction, EventKind, Frame, LinkEvent
from charger.sim.csms_server import CsmsSimulator
from charger.sim.csms_thread import CsmsThread

from bench._common import machine, percentile, print_json, today
from bench.park import CHARGE_SCRIPT, _call, _charging, _operational, _wait_all, _wait_ready, topology_yaml
from charger.testing import RunningSystem, free_port, running_system
from charger.topology import load_topology

__all__ = ["main", "run"]

CP_ID = "BENCH1"
RAW_CP_ID = "RAW1"
TX_ACTIONS = ("StartTransaction", "MeterValues", "StopTransaction")
ENERGY = "Energy.Active.Import.Register"
LINK_KEYS = {
    "RetryBackOffWaitMinimum": "0",  # reconnect within a second of the CSMS coming back
    "RetryBackOffRandomRange": "1",
    "RetryBackOffRepeatTimes": "1",
    "HeartbeatInterval": "0",
    "MeterValuesSampledData": ENERGY,
}


def bench_topology(n: int, admin_port: int, modbus_ports: Sequence[int], csms_url: str, meter_interval: int) -> str:
    """The park of `bench.park` plus a backend link wired to every EVSE manager and meter."""
    doc = yaml.safe_load(topology_yaml(n, admin_port, modbus_ports))
    doc["site"] = f"ocpp-{n}"
    doc["actors"]["backend"] = {
        "type": "BackendLink",
        "config": {
            "csms_url": csms_url,
            "charge_point_id": CP_ID,
            "configuration": {**LINK_KEYS, "MeterValueSampleInterval": meter_interval},
        },
        "connections": {
            "evse": [f"evse-{i}" for i in range(1, n + 1)],
            "meter": [f"meter-{i}" for i in range(1, n + 1)],
        },
    }
    doc["supervision"]["children"].append("backend")
    return str(yaml.safe_dump(doc, sort_keys=False, width=200))


# --- what the station owes: its own queue ----------------------------------------------------------


def read_queue(path: Path) -> tuple[list[dict[str, Any]], int]:
    """The queued messages (seq, action, wire payload with the transactionId the link will fill in),
    oldest first, and how many the link has discarded so far."""
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        rows = db.execute(
            "SELECT m.seq, m.action, m.payload, t.transaction_id FROM message m"
            " LEFT JOIN transaction_id t USING (tx_key) ORDER BY m.seq"
        ).fetchall()
        discarded = int(db.execute("SELECT count(*) FROM discarded").fetchone()[0])
    messages = []
    for seq, action, text, transaction_id in rows:
        payload = json.loads(text)
        if action != "StartTransaction" and transaction_id is not None:
            payload["transactionId"] = transaction_id
        messages.append({"seq": seq, "action": action, "payload": payload})
    return messages, discarded


def _oldest_seq(path: Path) -> int | None:
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        row = db.execute("SELECT min(seq) FROM message").fetchone()
    return None if row[0] is None else int(row[0])


def _key(action: str, payload: Any) -> str:
    return action + json.dumps(payload, sort_keys=True, separators=(",", ":"))


# --- what the CSMS saw -------------------------------------------------------------------------------


def delivered(frames: list[Frame]) -> list[tuple[Frame, Frame]]:
    """(CALL, CALLRESULT) of every transaction-related message the CSMS answered, in answer order."""
    calls = {
        f.unique_id: f
        for f in frames
        if f.direction is Direction.RECEIVED and f.message_type == CALL and f.action in TX_ACTIONS
    }
    return [
        (calls[f.unique_id], f)
        for f in frames
        if f.direction is Direction.SENT and f.message_type == CALLRESULT and f.unique_id in calls
    ]


def _stamp(call: Frame) -> str:
    payload = call.payload
    return str(payload["timestamp"] if "timestamp" in payload else payload["meterValue"][0]["timestamp"])


def _register(call: Frame) -> float | None:
    payload = call.payload
    if call.action == "StartTransaction":
        return float(payload["meterStart"])
    if call.action == "StopTransaction":
        return float(payload["meterStop"])
    for sample in payload["meterValue"][0]["sampledValue"]:
        if sample.get("measurand", ENERGY) == ENERGY and "phase" not in sample:
            return float(sample["value"]) * (1000.0 if sample.get("unit") == "kWh" else 1.0)
    return None


def check_drain(queued: list[dict[str, Any]], answered: list[tuple[Frame, Frame]]) -> dict[str, Any]:
    """Lost, duplicated and out-of-order messages among `queued`, and when the last was answered."""
    wanted = {_key(m["action"], m["payload"]): m["seq"] for m in queued}
    if len(wanted) != len(queued):
        raise RuntimeError("two queued messages with the same payload: cannot tell them apart")
    times: dict[int, list[float]] = {}
    arrival: list[int] = []
    for call, result in answered:
        seq = wanted.get(_key(str(call.action), call.payload))
        if seq is not None:
            if seq not in times:
                arrival.append(seq)
            times.setdefault(seq, []).append(result.at)
    inversions = sum(1 for a, b in itertools.pairwise(arrival) if b < a)
    return {
        "lost": len(wanted) - len(times),
        "duplicates": sum(len(t) - 1 for t in times.values()),
        "order_violations": inversions,
        "last_answer_at": max((t[0] for t in times.values()), default=None),
    }


def check_transactions(answered: list[tuple[Frame, Frame]], bills: dict[int, list[dict[str, Any]]]) -> dict[str, Any]:
    """Each transaction's whole stream as the CSMS got it: Start first, Stop last, timestamps and
    registers never going back, and Start/Stop registers equal to the EVSE manager's bill.

    A MeterValues stamped after its transaction's StopTransaction (or above its meterStop) is counted
    apart, as ``samples_after_stop``: it was sampled, and queued, before the link heard of the stop
    (the EVSE manager stamps the stop; the sample timer can fire before its event arrives), so it is
    not a message delivered out of order."""
    streams: dict[int, list[Frame]] = {}
    for call, result in answered:
        tx = result.payload["transactionId"] if call.action == "StartTransaction" else call.payload["transactionId"]
        streams.setdefault(int(tx), []).append(call)
    violations: list[str] = []
    late: list[str] = []
    mismatches = 0
    for tx, stream in streams.items():
        actions = [str(f.action) for f in stream]
        if actions[0] != "StartTransaction" or actions.count("StartTransaction") != 1:
            violations.append(f"transaction {tx}: does not begin with its one StartTransaction")
        if actions[-1] != "StopTransaction" or actions.count("StopTransaction") != 1:
            violations.append(f"transaction {tx}: does not end with its one StopTransaction")
        for a, b in itertools.pairwise(stream):
            ra, rb = _register(a), _register(b)
            # meterStart and meterStop are whole Wh, sampled registers are not: half a Wh is rounding
            slack = 0.0 if a.action == b.action == "MeterValues" else 0.5
            back = _stamp(b) < _stamp(a) or (ra is not None and rb is not None and rb < ra - slack)
            if back:
                what = f"transaction {tx}: {b.action} {_stamp(b)} ({rb} Wh) after {a.action} {_stamp(a)} ({ra} Wh)"
                (late if b.action == "StopTransaction" and a.action == "MeterValues" else violations).append(what)
        if actions[0] != "StartTransaction" or actions[-1] != "StopTransaction":
            continue
        start, stop = stream[0], stream[-1]
        bill = next(
            (b for b in bills.get(int(start.payload["connectorId"]), []) if b["meter_start_wh"] is not None), None
        )
        if bill is None or (
            round(bill["meter_start_wh"]) != start.payload["meterStart"]
            or round(bill["meter_stop_wh"]) != stop.payload["meterStop"]
        ):
            mismatches += 1
    return {
        "transactions": len(streams),
        "transaction_order_violations": len(violations),
        "violations": violations[:10],
        "samples_after_stop": len(late),
        "samples_after_stop_examples": late[:5],
        "bill_mismatches": mismatches,
        "meter_values_total": sum(1 for call, _ in answered if call.action == "MeterValues"),
    }


# --- the baseline: the ocpp library alone -----------------------------------------------------------


async def _raw_client(url: str, payloads: list[dict[str, Any]]) -> dict[str, Any]:
    from ocpp.v16 import ChargePoint, call
    from websockets.asyncio.client import connect

    async with connect(f"{url}/{RAW_CP_ID}", subprotocols=["ocpp1.6"], compression=None, proxy=None) as ws:  # type: ignore[list-item]
        cp = ChargePoint(RAW_CP_ID, ws)
        reader = asyncio.ensure_future(cp.start())
        await cp.call(call.BootNotification(charge_point_model="bench", charge_point_vendor="charger"))
        t0 = time.perf_counter()
        for p in payloads:
            await cp.call(
                call.MeterValues(
                    connector_id=p["connectorId"], meter_value=p["meterValue"], transaction_id=p.get("transactionId")
                )
            )
        elapsed = time.perf_counter() - t0
        reader.cancel()
    return {"messages": len(payloads), "seconds": elapsed}


def raw_baseline(url: str, payloads: list[dict[str, Any]], workdir: Path) -> dict[str, Any]:
    """The same MeterValues through the bare library, from a fresh process (not sharing this one's GIL
    with the simulator, as the link does not)."""
    source = workdir / "raw-payloads.json"
    source.write_text(json.dumps(payloads))
    command = [sys.executable, "-m", "bench.ocpp", "--raw-client", url, "--raw-payloads", str(source)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)  # no actor system there
    if done.returncode != 0:
        raise RuntimeError(f"the raw ocpp client failed:\n{done.stderr[-3000:]}")
    got: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return got


# --- the run ----------------------------------------------------------------------------------------


def _link(system: RunningSystem) -> BackendLinkStatus:
    status = system.client.call("backend", GetBackendLinkStatus(), timeout=10.0)
    assert isinstance(status, BackendLinkStatus)
    return status


def _until(check: Any, what: str, timeout: float, step: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while not (got := check()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout} s")
        time.sleep(step)
    return got


def _answered(csms: CsmsThread, action: str) -> int:
    return sum(1 for call, _ in delivered(csms.frames(CP_ID)) if call.action == action)


def _latencies_ms(answered: list[tuple[Frame, Frame]], after: float, before: float) -> list[float]:
    """Timestamp of each sampled MeterValues -> the CSMS receiving it, for those received in the window."""
    from datetime import datetime

    out = []
    for call, _ in answered:
        if call.action == "MeterValues" and after <= call.at <= before:
            stamp = datetime.fromisoformat(_stamp(call).replace("Z", "+00:00")).timestamp()
            out.append((call.at - stamp) * 1000.0)
    return out


@dataclass
class _Observed:
    """What one run saw, before it becomes figures."""

    queued: list[dict[str, Any]]
    discarded: int
    frames: list[Frame]
    raw_frames: list[Frame]
    events: list[LinkEvent]
    raw: dict[str, Any]
    online_window: tuple[float, float]
    bills: dict[int, list[dict[str, Any]]]
    restarts: int


def _drive(system: RunningSystem, csms: CsmsThread, n: int, settings: dict[str, Any]) -> _Observed:
    timeout, queue_db = settings["timeout"], settings["queue_db"]
    evses = [f"evse-{i}" for i in range(1, n + 1)]
    _until(lambda: (s := _link(system)).online and s.registration == "Accepted", "the link accepted", timeout)
    for i in range(1, n + 1):
        _call(system, f"evse-{i}", AuthorizeSession(token_id=f"BENCH{i:04d}"))
        _call(system, "rig", PlugCar(script=CHARGE_SCRIPT, connector=i))
    _wait_all(system, evses, _charging, "charging", timeout)
    _until(lambda: _answered(csms, "StartTransaction") == n, "every StartTransaction answered", timeout)
    online_from = time.time()
    time.sleep(settings["online_s"])
    online_to = time.time()
    csms.go_offline()
    time.sleep(settings["outage_s"])
    queued, _ = read_queue(queue_db)
    csms.go_online()
    last = max((m["seq"] for m in queued), default=0)
    drain_limit = timeout + settings["outage_s"]
    _until(lambda: (s := _oldest_seq(queue_db)) is None or s > last, "the queue drained", drain_limit)
    meter_values = [m["payload"] for m in queued if m["action"] == "MeterValues"]
    raw = raw_baseline(csms.url, meter_values, settings["workdir"])
    for i in range(1, n + 1):
        _call(system, "rig", UnplugCar(connector=i))
    _wait_all(system, evses, lambda s: s.state == "Idle" and s.sessions_completed >= 1, "billed", timeout)
    _until(lambda: _answered(csms, "StopTransaction") == n, "every StopTransaction answered", timeout)
    _until(lambda: _link(system).queued_messages == 0, "the queue empty", timeout)
    _, discarded = read_queue(queue_db)
    bills = {}
    for i, name in enumerate(evses, start=1):
        history = system.client.call(name, GetSessionHistory(), timeout=10.0)
        assert isinstance(history, SessionHistory)
        bills[i] = [{"meter_start_wh": s.meter_start_wh, "meter_stop_wh": s.meter_stop_wh} for s in history.sessions]
    return _Observed(
        queued=queued,
        discarded=discarded,
        frames=csms.frames(CP_ID),
        raw_frames=csms.frames(RAW_CP_ID),
        events=csms.events(),
        raw=raw,
        online_window=(online_from, online_to),
        bills=bills,
        restarts=sum(system.status().restarts.values()),
    )


def turnarounds_ms(answered: list[tuple[Frame, Frame]], after: float, before: float) -> tuple[list[float], list[float]]:
    """Where a message's time goes, from the CSMS's clock: its answer (CALL in -> CALLRESULT out) and
    the station's turnaround (CALLRESULT out -> the next CALL in), for messages answered in the window."""
    window = [(c, r) for c, r in answered if after <= r.at <= before]
    csms = [(r.at - c.at) * 1000.0 for c, r in window]
    station = [(b[0].at - a[1].at) * 1000.0 for a, b in itertools.pairwise(window)]
    return csms, station


def _p50(samples: list[float]) -> float | None:
    return round(percentile(samples, 50), 3) if samples else None


def _figures(n: int, got: _Observed) -> dict[str, Any]:
    answered = delivered(got.frames)
    drain = check_drain(got.queued, answered)
    streams = check_transactions(answered, got.bills)
    online_at = next(e.at for e in got.events if e.kind is EventKind.ONLINE)
    opened_at = next(e.at for e in got.events if e.kind is EventKind.OPEN and e.cp_id == CP_ID and e.at >= online_at)
    drained_at = drain["last_answer_at"] if drain["last_answer_at"] is not None else opened_at
    in_drain = [r.at for _, r in answered if opened_at <= r.at <= drained_at]
    span = in_drain[-1] - in_drain[0] if len(in_drain) > 1 else 0.0
    rate = (len(in_drain) - 1) / span if span > 0 else None
    raw = got.raw
    raw_rate = raw["messages"] / raw["seconds"] if raw["seconds"] > 0 else None
    online = _latencies_ms(answered, *got.online_window)
    link_csms, link_station = turnarounds_ms(answered, opened_at, drained_at)
    raw_csms, raw_station = turnarounds_ms(delivered(got.raw_frames), 0.0, float("inf"))
    by_action = {a: sum(1 for m in got.queued if m["action"] == a) for a in TX_ACTIONS}
    return {
        "queued_at_reconnect": len(got.queued),
        "queued_by_action": by_action,
        "queued_meter_values_per_connector": round(by_action["MeterValues"] / n, 2),
        "reconnect_s": round(opened_at - online_at, 3),
        "drain_s": round(drained_at - online_at, 3),
        "drain_after_connect_s": round(drained_at - opened_at, 3),
        "answered_in_drain": len(in_drain),
        "rate_msgs_per_s": None if rate is None else round(rate, 1),
        "raw_ocpp_rate_msgs_per_s": None if raw_rate is None else round(raw_rate, 1),
        "raw_ocpp_messages": raw["messages"],
        "ratio_link_raw": round(rate / raw_rate, 3) if rate and raw_rate else None,
        "drain_csms_answer_p50_ms": _p50(link_csms),
        "drain_station_turnaround_p50_ms": _p50(link_station),
        "raw_csms_answer_p50_ms": _p50(raw_csms),
        "raw_client_turnaround_p50_ms": _p50(raw_station),
        "online_window_s": round(got.online_window[1] - got.online_window[0], 2),
        "online_meter_values": len(online),
        "online_latency_p50_ms": _p50(online),
        "online_latency_p99_ms": round(percentile(online, 99), 3) if online else None,
        "lost": drain["lost"] + got.discarded,
        "discarded": got.discarded,
        "duplicates": drain["duplicates"],
        "order_violations": drain["order_violations"] + streams["transaction_order_violations"],
        "queue_order_violations": drain["order_violations"],
        **streams,
        "restarts": got.restarts,
    }


def run(
    n: int, outage_s: float, meter_interval: int, *, online_s: float, timeout: float, workdir: str
) -> dict[str, Any]:
    """One run in one actor system; see the module docstring."""
    load = os.getloadavg()[0]
    state = Path(workdir) / "state"
    state.mkdir()
    admin, csms_port = free_port(), free_port()
    ports: list[int] = []
    while len(ports) < n:
        if (port := free_port()) not in (*ports, admin, csms_port):
            ports.append(port)
    path = Path(workdir) / "ocpp.yaml"
    path.write_text(bench_topology(n, admin, ports, f"ws://127.0.0.1:{csms_port}", meter_interval), encoding="utf-8")
    topology = load_topology(path)
    evses = [f"evse-{i}" for i in range(1, n + 1)]
    settings = {
        "timeout": timeout,
        "online_s": online_s,
        "outage_s": outage_s,
        "queue_db": state / "backend-queue.db",
        "workdir": Path(workdir),
    }
    with running_system(topology.root, admin, str(state), log_file=str(Path(workdir) / "system.log")) as system:
        _wait_ready(system, topology.actors, timeout)
        _wait_all(system, evses, _operational, "operational", timeout)
        # The CSMS starts after the actor system: a listening socket open at a fork would stay open in
        # the actor processes, and the outage could not close it.
        with CsmsThread(CsmsSimulator(port=csms_port)) as csms:
            got = _drive(system, csms, n, settings)
    result: dict[str, Any] = {"connectors": n, "outage_s": outage_s, "meter_interval_s": meter_interval}
    result.update(_figures(n, got))
    result["generation_rate_msgs_per_s"] = round(n / meter_interval, 2)
    result.update({"loadavg_1m_at_start": round(load, 2), "date": today(), "machine": machine()})
    return result


# --- output -----------------------------------------------------------------------------------------


def _print_table(r: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    def fmt(value: Any, unit: str = "") -> str:
        return "-" if value is None else f"{value}{unit}"

    console = Console(width=max(120, Console().width))
    table = Table(
        title=(
            f"{r['connectors']} SIL connectors charging, CSMS offline {r['outage_s']:g} s,"
            f" MeterValueSampleInterval {r['meter_interval_s']} s"
        )
    )
    table.add_column("measure")
    table.add_column("value", justify="right")
    rows = [
        (
            "queued at reconnect (Start/MeterValues/Stop)",
            f"{r['queued_at_reconnect']} {tuple(r['queued_by_action'].values())}",
        ),
        ("reconnect (CSMS online -> link connected)", fmt(r["reconnect_s"], " s")),
        ("drain (CSMS online -> last queued message answered)", fmt(r["drain_s"], " s")),
        ("link rate while draining", fmt(r["rate_msgs_per_s"], " msg/s")),
        ("baseline: bare ocpp client, same CSMS, same messages", fmt(r["raw_ocpp_rate_msgs_per_s"], " msg/s")),
        ("link / baseline", fmt(r["ratio_link_raw"], "x")),
        (
            "per message, link: CSMS answers / station turns around, p50",
            f"{fmt(r['drain_csms_answer_p50_ms'])} / {fmt(r['drain_station_turnaround_p50_ms'])} ms",
        ),
        (
            "per message, baseline: CSMS answers / client turns around, p50",
            f"{fmt(r['raw_csms_answer_p50_ms'])} / {fmt(r['raw_client_turnaround_p50_ms'])} ms",
        ),
        ("online: generated", fmt(r["generation_rate_msgs_per_s"], " msg/s")),
        (
            "online: sample -> CSMS p50 / p99",
            f"{fmt(r['online_latency_p50_ms'])} / {fmt(r['online_latency_p99_ms'])} ms",
        ),
        ("lost (must be 0)", str(r["lost"])),
        ("duplicates (must be 0)", str(r["duplicates"])),
        ("order violations (must be 0)", str(r["order_violations"])),
        ("transactions / bill mismatches", f"{r['transactions']} / {r['bill_mismatches']}"),
        ("MeterValues stamped after their StopTransaction", str(r["samples_after_stop"])),
        ("actor restarts", str(r["restarts"])),
    ]
    for name, value in rows:
        table.add_row(name, value)
    console.print(table)
    console.print(f"load average (1 min) at start: {r['loadavg_1m_at_start']}")
    console.print(r["machine"], style="dim")


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.ocpp", description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    parser.add_argument("--connectors", type=int, default=10, help="SIL connectors charging (default 10)")
    parser.add_argument("--outage-min", type=float, default=2.0, help="CSMS outage in minutes (default 2)")
    parser.add_argument("--meter-interval", type=int, default=1, help="MeterValueSampleInterval s (default 1)")
    parser.add_argument("--online-s", type=float, default=10.0, help="online window before the outage (default 10)")
    parser.add_argument("--timeout", type=float, default=120.0, help="limit for each wait (default 120)")
    parser.add_argument("--keep", metavar="DIR", help="keep state, topology and logs in DIR (must not exist)")
    parser.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    parser.add_argument("--raw-client", help=argparse.SUPPRESS)  # internal: the baseline's client process
    parser.add_argument("--raw-payloads", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.connectors < 1 or args.connectors > 64:
        parser.error("--connectors is 1..64 (a backend link serves up to 64)")
    if args.outage_min <= 0 or args.meter_interval < 1 or args.online_s <= 0 or args.timeout <= 0:
        parser.error("--outage-min, --online-s and --timeout must be > 0, --meter-interval >= 1")
    if args.keep is not None and os.path.exists(args.keep):
        parser.error(f"--keep {args.keep}: already exists")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    if args.raw_client:
        payloads = json.loads(Path(args.raw_payloads).read_text())
        print(json.dumps(asyncio.run(_raw_client(args.raw_client, payloads))), flush=True)
        return 0
    with (
        contextlib.nullcontext(os.path.abspath(args.keep))
        if args.keep is not None
        else tempfile.TemporaryDirectory(prefix="charger-ocpp-")
    ) as tmp:
        os.makedirs(tmp, exist_ok=True)
        result = run(
            args.connectors,
            args.outage_min * 60.0,
            args.meter_interval,
            online_s=args.online_s,
            timeout=args.timeout,
            workdir=tmp,
        )
    _print_table(result)
    if args.json:
        print_json(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
