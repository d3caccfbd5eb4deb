"""File transfers over HTTP(S) for firmware downloads and diagnostics uploads (blocking: run them with
`Behaviour.run_io`).

- `download(url, destination)`: GET, streamed to ``destination`` through a temporary ``.part`` file
  (renamed once complete, so a half download is never taken for an image), at most `max_bytes`.
- `upload(url, source)`: PUT of the file's bytes.

HTTPS verifies the server against `ca_file` (PEM), or the system's CAs when it is None. User name and
password in the URL become an HTTP Basic header and never appear in an error. Any failure raises
`TransferError` with a one-line reason (HTTP status, connection refused, timeout, TLS, size).
"""

from __future__ import annotations

import base64
import contextlib
import os
import ssl
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

__all__ = ["TransferError", "download", "upload"]

_CHUNK = 64 * 1024


class TransferError(Exception):
    """A transfer failed; the message says why without credentials."""


def _request(url: str, method: str, data: bytes | None = None) -> urllib.request.Request:
    parts = urlsplit(url)
    netloc = parts.hostname or ""
    if ":" in netloc:  # IPv6 literal
        netloc = f"[{netloc}]"
    if parts.port:
        netloc = f"{netloc}:{parts.port}"
    clean = urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))
    request = urllib.request.Request(clean, data=data, method=method)
    if parts.username is not None:
        pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
        request.add_header("Authorization", "Basic " + base64.b64encode(pair).decode("ascii"))
    return request


def _context(url: str, ca_file: str | None) -> ssl.SSLContext | None:
    if urlsplit(url).scheme.lower() != "https":
        return None
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca_file)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def _reason(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        inner = exc.reason
        if isinstance(inner, ssl.SSLError):
            return f"TLS: {inner.reason or inner}"
        return str(inner.strerror if isinstance(inner, OSError) and inner.strerror else inner)
    if isinstance(exc, TimeoutError):
        return "timed out"
    return f"{type(exc).__name__}: {exc}"


def download(
    url: str,
    destination: Path,
    *,
    timeout_s: float = 30.0,
    max_bytes: int = 512 * 1024 * 1024,
    ca_file: str | None = None,
) -> int:
    """Fetch `url` into `destination`; returns the size in bytes."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    partial = destination.with_name(destination.name + ".part")
    size = 0
    try:
        opened = urllib.request.urlopen(_request(url, "GET"), timeout=timeout_s, context=_context(url, ca_file))
        with opened as response, partial.open("wb") as sink:
            declared = response.headers.get("Content-Length")
            if declared is not None and declared.isdigit() and int(declared) > max_bytes:
                raise TransferError(f"the file is too large ({declared} bytes, at most {max_bytes})")
            while chunk := response.read(_CHUNK):
                size += len(chunk)
                if size > max_bytes:
                    raise TransferError(f"the file is too large (more than {max_bytes} bytes)")
                sink.write(chunk)
            sink.flush()
            os.fsync(sink.fileno())
            if declared is not None and declared.isdigit() and int(declared) != size:
                raise TransferError(f"the download ended after {size} of {declared} bytes")
    except TransferError:
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()
        raise
    except (OSError, ValueError) as exc:  # URLError and HTTPError are OSErrors
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()
        raise TransferError(_reason(exc)) from None
    partial.replace(destination)
    return size


def upload(url: str, source: Path, *, timeout_s: float = 30.0, ca_file: str | None = None) -> int:
    """PUT the file at `source` to `url`; returns the HTTP status (2xx)."""
    data = source.read_bytes()
    request = _request(url, "PUT", data)
    request.add_header("Content-Type", "application/octet-stream")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s, context=_context(url, ca_file)) as response:
            response.read()
            return int(response.status)
    except (OSError, ValueError) as exc:
        raise TransferError(_reason(exc)) from None
