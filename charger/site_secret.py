"""The per-site secret that authenticates Thespian's transport frames, and how it is obtained.

One secret per site (one Thespian convention): every box of the site holds the same one, in a
file only its owner can read. A single-box system may instead generate a random secret when it
starts: every actor process is forked from the starter and inherits it, and nothing outside the
starter's process tree can learn it.

The key never appears in a repr, a str, an exception or a log line; only its origin does (the
file path, or "generated").
"""

from __future__ import annotations

import os
import secrets
import stat
from dataclasses import dataclass, field

__all__ = [
    "MIN_SECRET_BYTES",
    "SecretFileError",
    "SiteSecret",
    "SiteSecretSource",
    "generate_secret",
    "process_secret",
    "read_secret_file",
    "resolve_secret",
]

MIN_SECRET_BYTES = 32
"""Shortest accepted secret: 256 bits, the HMAC-SHA256 key size."""


class SecretFileError(ValueError):
    """The secret file cannot be used: missing, not a regular file, too open, or too short."""


@dataclass(frozen=True, slots=True, repr=False)
class SiteSecret:
    key: bytes = field(repr=False)
    origin: str = "given"
    """Where the key came from, safe to log: a file path, "generated" or "given"."""

    def __post_init__(self) -> None:
        if not isinstance(self.key, bytes):
            raise TypeError("a site secret is bytes")
        if len(self.key) < MIN_SECRET_BYTES:
            raise ValueError(f"a site secret needs at least {MIN_SECRET_BYTES} bytes ({self.origin})")

    def __repr__(self) -> str:
        return f"SiteSecret(origin={self.origin!r})"

    __str__ = __repr__


SiteSecretSource = SiteSecret | bytes | str | os.PathLike[str] | None
"""A secret, its key bytes, the path of a secret file, or None for this process's generated secret."""

_process_secret: SiteSecret | None = None


def generate_secret() -> SiteSecret:
    """A fresh random secret for a system whose processes all descend from this one."""
    return SiteSecret(secrets.token_bytes(MIN_SECRET_BYTES), origin="generated")


def process_secret() -> SiteSecret:
    """The secret this process generated for the systems it starts without one (made once, so
    that all of them, and their clients in this process, share it)."""
    global _process_secret
    if _process_secret is None:
        _process_secret = generate_secret()
    return _process_secret


def resolve_secret(source: SiteSecretSource) -> SiteSecret:
    if source is None:
        return process_secret()
    if isinstance(source, SiteSecret):
        return source
    if isinstance(source, bytes):
        return SiteSecret(source)
    return read_secret_file(source)


def read_secret_file(path: str | os.PathLike[str]) -> SiteSecret:
    """Read the site secret from `path`, refusing a file that others could read or replace.

    The file holds the secret as text or bytes (surrounding whitespace is ignored), at least
    `MIN_SECRET_BYTES` long, e.g. ``head -c 48 /dev/urandom | base64 > site.key; chmod 600 site.key``.
    It must be a regular file (not a symlink), owned by this user or root, with no group or
    other permission bits.
    """
    shown = os.fspath(path)
    try:
        fd = os.open(shown, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise SecretFileError(f"site secret file {shown}: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise SecretFileError(f"site secret file {shown} is not a regular file")
        if info.st_uid not in (os.geteuid(), 0):
            raise SecretFileError(f"site secret file {shown} is owned by uid {info.st_uid}, not by this user or root")
        mode = stat.S_IMODE(info.st_mode)
        if mode & 0o077:
            raise SecretFileError(
                f"site secret file {shown} is accessible to group or others (mode {mode:04o}); run: chmod 600 {shown}"
            )
        with os.fdopen(fd, "rb", closefd=False) as f:
            key = f.read(1 << 16).strip()
    finally:
        os.close(fd)
    if len(key) < MIN_SECRET_BYTES:
        raise SecretFileError(
            f"site secret file {shown} holds {len(key)} bytes; at least {MIN_SECRET_BYTES} are needed"
        )
    return SiteSecret(key, origin=shown)
