"""A real HTTP(S) file server on 127.0.0.1 for transfer tests (stdlib ``http.server`` on a thread).

GET serves `files`, PUT stores into `uploads`; any other path is 404. `fail_next(path, times)` answers
the next requests for a path with HTTP 500, `delay_next(path, seconds)` holds the next GET of a path that
long before answering (a slow download to cut off); `requests` records (method, path, headers) in order. With
`tls=(cert, key)` it serves HTTPS. Use it as a context manager: the thread and the socket are gone
when it exits.
"""

from __future__ import annotations

import contextlib
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any

__all__ = ["FileServer"]


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _planned_failure(self) -> bool:
        owner = self.server.owner
        with owner.lock:
            owner.requests.append((self.command, self.path, dict(self.headers)))
            owner.arrivals.append((self.command, self.path, time.time()))
            left = owner.failures.get(self.path, 0)
            if left > 0:
                owner.failures[self.path] = left - 1
                return True
        return False

    def _answer(self, status: int, body: bytes = b"") -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body:
            self.wfile.write(body)

    def do_GET(self) -> None:
        if self._planned_failure():
            self._answer(500)
            return
        owner = self.server.owner
        with owner.lock:
            delay = owner.delays.pop(self.path, 0.0)
        if delay:
            time.sleep(delay)
        body = owner.files.get(self.path)
        with contextlib.suppress(ConnectionError):  # the client may be gone (killed) after a delay
            if body is None:
                self._answer(404)
            else:
                self._answer(200, body)

    def do_PUT(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        if self._planned_failure():
            self._answer(500)
            return
        owner = self.server.owner
        if owner.refuse_uploads:
            self._answer(403)
            return
        with owner.lock:
            owner.uploads[self.path] = body
        self._answer(201)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    owner: FileServer


class FileServer:
    def __init__(self, tls: tuple[Path, Path] | None = None) -> None:
        self.files: dict[str, bytes] = {}
        self.uploads: dict[str, bytes] = {}
        self.failures: dict[str, int] = {}
        self.delays: dict[str, float] = {}
        self.arrivals: list[tuple[str, str, float]] = []
        """(method, path, wall-clock time) of every request."""
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.refuse_uploads = False
        self.lock = threading.Lock()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.owner = self
        if tls is not None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(tls[0], tls[1])
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self.scheme = "https" if tls else "http"
        self._thread = threading.Thread(target=self._server.serve_forever, name="file-server", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def url(self, path: str) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}{path}"

    def fail_next(self, path: str, times: int = 1) -> None:
        with self.lock:
            self.failures[path] = times

    def delay_next(self, path: str, seconds: float) -> None:
        with self.lock:
            self.delays[path] = seconds

    def hits(self, method: str, path: str) -> int:
        with self.lock:
            return sum(1 for m, p, _ in self.requests if m == method and p == path)

    def __enter__(self) -> FileServer:
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
