"""``python -m charger.ctl``: talk to a running charger through its control API (JSON-RPC 2.0 over a websocket).

    python -m charger.ctl status               # actors, restarts, recent events
    python -m charger.ctl events               # stream events until Ctrl-C
    python -m charger.ctl call METHOD [JSON]   # any method, params as a JSON object

Exit codes: 0 ok, 1 the API answered with an error or could not be reached, 2 usage error.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from collections.abc import Sequence
from typing import Any

from websockets.exceptions import WebSocketException
from websockets.sync.client import ClientConnection, connect

__all__ = ["main"]

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
    sub.add_parser("events", help="stream events until interrupted")
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
        status = request(ws, "system.status", {})
        print("halted: " + status["reason"] if status["halted"] else "running")
        for name, pid in sorted(status["actors"].items()):
            restarts = status["restarts"].get(name, 0)
            print(f"  {name:<24} pid {pid:<8} restarts {restarts}")
        for line in status["events"]:
            print(f"  | {line}")
    elif args.command == "events":
        request(ws, "events.subscribe", {})
        for frame in ws:
            message = json.loads(frame)
            if message.get("method") == "event":
                print(message["params"]["text"], flush=True)
    else:
        print(json.dumps(request(ws, args.method, params), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
