"""Raw asyncio TCP echo server for the messaging baseline, run as its own process.

Frames are a 4-byte big-endian length followed by the bytes, echoed unchanged (no decode).
Usage: ``python -m bench._asyncio_echo PORT_FILE``: binds an ephemeral port on 127.0.0.1 and
writes it to PORT_FILE (atomically) once it listens. It dies with its parent (PR_SET_PDEATHSIG),
so a crashed benchmark cannot leave it behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys

from charger.runtime import die_with_parent

__all__ = ["HEADER", "main", "serve"]

HEADER = 4
"""Bytes of the big-endian length prefix."""


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            header = await reader.readexactly(HEADER)
            body = await reader.readexactly(int.from_bytes(header, "big"))
            writer.write(header + body)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass  # the client closed the connection
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def serve(port_file: str) -> None:
    server = await asyncio.start_server(_echo, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    tmp = port_file + ".tmp"
    with open(tmp, "w", encoding="ascii") as f:
        f.write(str(port))
    os.replace(tmp, port_file)  # the reader never sees a half-written port
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        raise SystemExit("usage: python -m bench._asyncio_echo PORT_FILE")
    die_with_parent()
    asyncio.run(serve(args[0]))


if __name__ == "__main__":
    main()
