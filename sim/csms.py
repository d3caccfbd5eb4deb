"""The simulated OCPP 1.6J CSMS: the public names, and the command line that runs it as a process.

In-process (pytest, SIL): ``async with CsmsSimulator(port=0) as csms: ...``, or `CsmsThread` from
synchronous code. As a process::

    python -m charger.sim.csms --port 9400 [--host 127.0.0.1] [--record frames.jsonl]
        [--basic-auth CP1:KEY ...] [--tls-cert server.pem --tls-key server.key [--ca ca.pem
        [--client-organization CPO]]] [--boot-status Accepted|Pending|Rejected] [--boot-interval 300]
        [--id-tag TAG=STATUS ...] [--first-transaction-id 1]

It prints one JSON line ``{"event": "listening", "url": ...}`` on stdout once it accepts connections,
writes every frame and link event as JSON lines to ``--record`` (see `charger.sim.csms_record`), and
stops cleanly on SIGINT or SIGTERM. An AuthorizationKey given on the command line is never printed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from charger.sim.csms_behaviour import CP_INITIATED_ACTIONS, CsmsBehaviour, Fault, FaultKind, FaultPlan
from charger.sim.csms_record import (
    CALL,
    CALLERROR,
    CALLRESULT,
    CallAnswer,
    Direction,
    EventKind,
    Frame,
    FrameLog,
    LinkEvent,
    frame_matcher,
)
from charger.sim.csms_security import CsmsSecurity
from charger.sim.csms_server import CsmsSimulator, NotConnected, OutageMode, answer_matcher
from charger.sim.csms_thread import CsmsThread

__all__ = [
    "CALL",
    "CALLERROR",
    "CALLRESULT",
    "CP_INITIATED_ACTIONS",
    "CallAnswer",
    "CsmsBehaviour",
    "CsmsSecurity",
    "CsmsSimulator",
    "CsmsThread",
    "Direction",
    "EventKind",
    "Fault",
    "FaultKind",
    "FaultPlan",
    "Frame",
    "FrameLog",
    "LinkEvent",
    "NotConnected",
    "OutageMode",
    "answer_matcher",
    "frame_matcher",
    "main",
]


def _key_value(text: str, separator: str, what: str) -> tuple[str, str]:
    key, found, value = text.partition(separator)
    if not found or not key:
        raise argparse.ArgumentTypeError(f"expected {what}")
    return key, value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m charger.sim.csms", description="Simulated OCPP 1.6J CSMS.")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: loopback)")
    parser.add_argument("--port", type=int, required=True, help="port to listen on (0: any free port)")
    parser.add_argument("--record", type=Path, help="append every frame and link event to this JSON-lines file")
    parser.add_argument(
        "--basic-auth",
        action="append",
        default=[],
        metavar="ID:KEY",
        type=lambda t: _key_value(t, ":", "ID:KEY"),
        help="require HTTP Basic auth; repeat for each charge point (profiles 1 and 2)",
    )
    parser.add_argument("--tls-cert", type=Path, help="PEM server certificate: serve wss:// (profiles 2 and 3)")
    parser.add_argument("--tls-key", type=Path, help="PEM private key of --tls-cert")
    parser.add_argument("--ca", type=Path, help="require client certificates signed by this CA (profile 3)")
    parser.add_argument("--client-organization", help="profile 3: required O of the client certificate")
    parser.add_argument("--boot-status", default="Accepted", choices=("Accepted", "Pending", "Rejected"))
    parser.add_argument("--boot-interval", type=int, default=300, help="seconds (heartbeat or boot retry)")
    parser.add_argument(
        "--id-tag",
        action="append",
        default=[],
        metavar="TAG=STATUS",
        type=lambda t: _key_value(t, "=", "TAG=STATUS"),
        help="AuthorizationStatus of one idTag (others are Accepted)",
    )
    parser.add_argument("--first-transaction-id", type=int, default=1)
    return parser


async def _serve(args: argparse.Namespace, record: TextIO | None) -> None:
    simulator = CsmsSimulator(
        host=args.host,
        port=args.port,
        security=CsmsSecurity(
            basic_auth=dict(args.basic_auth),
            tls_cert=args.tls_cert,
            tls_key=args.tls_key,
            client_ca=args.ca,
            client_organization=args.client_organization,
        ),
        behaviour=CsmsBehaviour(
            boot_status=args.boot_status, boot_interval=args.boot_interval, id_tags=dict(args.id_tag)
        ),
        first_transaction_id=args.first_transaction_id,
        record=record,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with simulator:
        print(json.dumps({"event": "listening", "url": simulator.url}), flush=True)
        await stop.wait()


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        with contextlib.ExitStack() as stack:
            record = stack.enter_context(args.record.open("a", encoding="utf-8")) if args.record else None
            asyncio.run(_serve(args, record))
    except (ValueError, OSError) as exc:  # bad option combination, unreadable certificate, port in use
        print(f"csms: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
