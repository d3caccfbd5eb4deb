"""``python -m charger.ctl``: talk to a running charger through its control API (JSON-RPC 2.0 over a websocket).

    python -m charger.ctl status               # actors, restarts, recent events
    python -m charger.ctl connectors           # every connector: state, limit, power, session
    python -m charger.ctl events               # stream supervision and session events until Ctrl-C
    python -m charger.ctl plug 1 [SCRIPT]      # plug the simulated car in (and run a car-sim script)
    python -m charger.ctl unplug 1
    python -m charger.ctl car 1 "draw_power_regulated 16,3;sleep 60;unplug"
    python -m charger.ctl rfid 04A1B2C3D4 [--connector 1]
    python -m charger.ctl pause 1 | resume 1 | stop 1 [--reason Local]
    python -m charger.ctl unlock 1             # release the plug of a car no one authorized
    python -m charger.ctl disable 1 [--reason Other] | enable 1   # take out of service, or back in
    python -m charger.ctl fault 1 rcd|meter_offline|lock_failure|pilot_error_e|diode_failure [--clear]
    python -m charger.ctl lease 1 --amps 10 --valid-for 60
    python -m charger.ctl sessions 1           # completed sessions, as billed
    python -m charger.ctl plan                 # the energy manager's currents, and why each got its own
    python -m charger.ctl need 1 --kwh 20 --depart 07:30   # what the car at connector 1 wants (--clear: unknown)
    python -m charger.ctl cap grid --amps 40 --valid-for 3600   # a grid-operator cap (no --amps/--kw: lifted)
    python -m charger.ctl call METHOD [JSON]   # any method, params as a JSON object

Exit codes: 0 ok, 1 the API answered with an error or could not be reached, 2 usage error.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from collections.abc import Sequence
from typing import Any

from websockets.exceptions import WebSocketException
from websockets.sync.client import ClientConnection, connect

from charger.energy_view import plan_lines

__all__ = ["main"]

_plan_lines = plan_lines  # the name the tests and older callers use

DEFAULT_URL = "ws://127.0.0.1:8765"
_ids = itertools.count(1)


class ApiError(Exception):
    """The control API answered with a JSON-RPC error."""


def request(ws: ClientConnection, method: str, params: dict[str, Any], timeout: float = 10.0) -> Any:
    """One call; notifications that arrive meanwhile are skipped."""
    call_id = next(_ids)
    ws.send(json.dumps({"jsonrpc": "2.0", "id": call_id, "method": method, "params": params}))
    while True:
        answer = json.loads(ws.recv(timeout=timeout))
        if answer.get("id") != call_id:
            continue
        if "error" in answer:
            err = answer["error"]
            raise ApiError(f"{err.get('message')} (code {err.get('code')})")
        return answer["result"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m charger.ctl", description="Control a running charger.")
    p.add_argument("--url", default=DEFAULT_URL, help=f"control API websocket (default {DEFAULT_URL})")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("status", help="actors, restarts and recent events")
    sub.add_parser("connectors", help="every connector at a glance")
    sub.add_parser("plan", help="the energy manager's plan: current per EVSE and why")
    sub.add_parser("events", help="stream events until interrupted")
    need = sub.add_parser("need", help="the energy a car still wants and when it leaves (energy manager)")
    need.add_argument("connector")
    need.add_argument("--kwh", type=float, help="energy still wanted")
    need.add_argument("--depart", type=next_clock_time, help="local time HH:MM (the next one to come)")
    need.add_argument("--clear", action="store_true", help="forget both: unknown again")
    cap = sub.add_parser("cap", help="cap a node of the energy manager's tree (grid operator)")
    cap.add_argument("node")
    cap.add_argument("--amps", type=float, help="A per phase")
    cap.add_argument("--kw", type=float)
    cap.add_argument("--valid-for", type=float, help="seconds (default: until replaced)")
    for name, text in (
        ("unplug", "pull the simulated car's plug"),
        ("pause", "pause charging"),
        ("resume", "resume charging"),
        ("unlock", "release the plug (no transaction: the waiting session ends)"),
        ("sessions", "completed sessions, as billed"),
    ):
        sub.add_parser(name, help=text).add_argument("connector", help="connector id or EVSE manager name")
    plug = sub.add_parser("plug", help="plug the simulated car in")
    plug.add_argument("connector")
    plug.add_argument("script", nargs="?", default="", help="car-simulator commands to run")
    car = sub.add_parser("car", help="run car-simulator commands on a connector's car")
    car.add_argument("connector")
    car.add_argument("script")
    rfid = sub.add_parser("rfid", help="present an RFID token")
    rfid.add_argument("token")
    rfid.add_argument("--connector", help="hand it to this connector (skips the card reader)")
    stop = sub.add_parser("stop", help="stop the running session")
    stop.add_argument("connector")
    stop.add_argument("--reason", default="Local", help="OCPP stop reason (default Local)")
    disable = sub.add_parser("disable", help="take the connector out of service (stops its session)")
    disable.add_argument("connector")
    disable.add_argument("--reason", default="Other", help="OCPP stop reason for a running session (default Other)")
    sub.add_parser("enable", help="put the connector back in service").add_argument("connector")
    fault = sub.add_parser("fault", help="inject (or --clear) a fault into the simulated hardware")
    fault.add_argument("connector")
    fault.add_argument("fault", choices=["rcd", "meter_offline", "lock_failure", "pilot_error_e", "diode_failure"])
    fault.add_argument("--clear", action="store_true")
    lease = sub.add_parser("lease", help="grant a current (or power) limit for a while")
    lease.add_argument("connector")
    limit = lease.add_mutually_exclusive_group(required=True)
    limit.add_argument("--amps", type=float)
    limit.add_argument("--watts", type=float)
    lease.add_argument("--valid-for", type=float, default=60.0, help="seconds (default 60)")
    call = sub.add_parser("call", help="call any method")
    call.add_argument("method")
    call.add_argument("params", nargs="?", default="{}", help="a JSON object")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    params: dict[str, Any] = {}
    if args.command == "call":
        try:
            params = json.loads(args.params)
        except ValueError as exc:
            print(f"charger.ctl: params are not JSON: {exc}", file=sys.stderr)
            return 2
        if not isinstance(params, dict):
            print("charger.ctl: params must be a JSON object", file=sys.stderr)
            return 2
    try:
        with connect(args.url, open_timeout=5) as ws:
            return _run(ws, args, params)
    except (OSError, WebSocketException, TimeoutError) as exc:
        print(f"charger.ctl: cannot reach the control API at {args.url} ({exc}); is charger running?", file=sys.stderr)
        return 1
    except ApiError as exc:
        print(f"charger.ctl: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0


def _run(ws: ClientConnection, args: argparse.Namespace, params: dict[str, Any]) -> int:
    if args.command == "status":
        _print_status(request(ws, "system.status", {}))
    elif args.command == "connectors":
        for connector in request(ws, "connectors.status", {}):
            print(_connector_line(connector))
    elif args.command == "plan":
        print("\n".join(_plan_lines(request(ws, "energy.plan", {}))))
    elif args.command == "events":
        request(ws, "events.subscribe", {})
        for frame in ws:
            line = _event_line(json.loads(frame))
            if line is not None:
                print(line, flush=True)
    else:
        method, call_params = (args.method, params) if args.command == "call" else _shortcut(args)
        print(json.dumps(request(ws, method, call_params), indent=2))
    return 0


def _print_status(status: dict[str, Any]) -> None:
    print("halted: " + status["reason"] if status["halted"] else "running")
    for name, pid in sorted(status["actors"].items()):
        restarts = status["restarts"].get(name, 0)
        print(f"  {name:<24} pid {pid:<8} restarts {restarts}")
    for line in status["events"]:
        print(f"  | {line}")


def _connector_line(c: dict[str, Any]) -> str:
    if "pilot" not in c:
        return f"{c['connector']:<12} {c['state']}: {c.get('detail', '')}"
    power = "-" if c["power_w"] is None else f"{c['power_w'] / 1000:.1f} kW"
    energy = "-" if c["energy_wh"] is None else f"{c['energy_wh'] / 1000:.3f} kWh"
    faults = f"  faults: {', '.join(c['faults'])}" if c["faults"] else ""
    return (
        f"{c['connector']:<12} {c['pilot']} {c['state']:<26} {c['current_limit_a']:5.1f} A {power:>9} "
        f"{energy:>11}  {c['session_id'] or '-'}  {c['last_event'] or ''}{faults}{_leases(c)}{_reservations(c)}"
    )


def _leases(c: dict[str, Any]) -> str:
    """Each grantor's current, lowest (the one the connector obeys) first."""
    leases = sorted((c.get("leases") or {}).items(), key=lambda item: (item[1], item[0]))
    return (
        "  leases: " + ", ".join(f"{grantor or '(unnamed)'} {amps:.1f} A" for grantor, amps in leases) if leases else ""
    )


def _reservations(c: dict[str, Any]) -> str:
    return "".join(
        f"  reserved: #{r['reservation_id']} for {r['id_tag']} until "
        f"{time.strftime('%H:%M', time.localtime(r['expires_at']))}"
        for r in c.get("reservations") or ()
    )


def _event_line(message: dict[str, Any]) -> str | None:
    params = message.get("params") or {}
    if message.get("method") == "event":
        return str(params["text"])
    if message.get("method") == "session_event":
        return f"{params['connector']}: {params['kind']} session {params['session_id']}"
    if message.get("method") == "session_completed":
        return f"{params['connector']}: session {params['session_id']} billed {params['energy_wh']} Wh"
    return None


_SHORTCUTS: dict[str, Any] = {
    "plug": lambda a: ("connector.plug", {"script": a.script}),
    "car": lambda a: ("connector.car", {"script": a.script}),
    "stop": lambda a: ("connector.stop", {"reason": a.reason}),
    "disable": lambda a: ("connector.availability", {"available": False, "reason": a.reason}),
    "enable": lambda a: ("connector.availability", {"available": True}),
    "fault": lambda a: ("connector.fault", {"fault": a.fault, "active": not a.clear}),
    "lease": lambda a: (
        "connector.lease",
        {**({"amps": a.amps} if a.amps is not None else {"watts": a.watts}), "valid_for_s": a.valid_for},
    ),
    "rfid": lambda a: ("rfid.present", {"token": a.token}),
    "need": lambda a: (
        "energy.session",
        {} if a.clear else {"energy_kwh": a.kwh, "departure": a.depart},
    ),
    "cap": lambda a: (
        "energy.cap",
        {
            "node": a.node,
            "amps": a.amps,
            "kw": a.kw,
            "valid_until": None if a.valid_for is None else time.time() + a.valid_for,
        },
    ),
}


def _shortcut(args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    """The JSON-RPC call behind a convenience subcommand."""
    method, params = _SHORTCUTS.get(args.command, lambda a: (f"connector.{a.command}", {}))(args)
    if getattr(args, "connector", None) is not None:
        params["connector"] = args.connector
    return method, params


def next_clock_time(hh_mm: str, now: float | None = None) -> float:
    """The next moment (Unix seconds) the local clock shows `hh_mm`: today, or tomorrow once past."""
    try:
        hours, minutes = (int(part) for part in hh_mm.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a time HH:MM: {hh_mm!r}") from None
    if not (0 <= hours < 24 and 0 <= minutes < 60):
        raise argparse.ArgumentTypeError(f"not a time HH:MM: {hh_mm!r}")
    now = time.time() if now is None else now
    local = time.localtime(now)
    at = time.mktime((local.tm_year, local.tm_mon, local.tm_mday, hours, minutes, 0, 0, 0, -1))
    return (
        at if at > now else time.mktime((local.tm_year, local.tm_mon, local.tm_mday + 1, hours, minutes, 0, 0, 0, -1))
    )


if __name__ == "__main__":
    sys.exit(main())
