"""A pseudo-terminal that a simulated device owns: the device speaks on the master, drivers open the slave.

The slave is put in raw mode here, before any driver opens it, so that no byte the simulator writes is
echoed back or translated (CR/LF) by the line discipline. The simulator keeps its own slave descriptor
open for the pty's whole life: the port then survives a driver closing and reopening it (as a
restarted actor does), and the termios settings stay raw.
"""

from __future__ import annotations

import contextlib
import errno
import os
import threading
import tty
from pathlib import Path

__all__ = ["PtyPort"]


class PtyPort:
    """Master/slave pair with an optional symlink to the slave (e.g. ``/tmp/charger/board0``)."""

    def __init__(self, link: str | os.PathLike[str] | None = None) -> None:
        self._master, self._slave = os.openpty()
        try:
            tty.setraw(self._slave)
            os.set_blocking(self._master, False)  # a device never blocks on a host that does not read
            self.path = os.ttyname(self._slave)
            """The slave device, e.g. ``/dev/pts/3``."""
            self.link = Path(link) if link is not None else None
            if self.link is not None:
                self.link.unlink(missing_ok=True)
                self.link.symlink_to(self.path)
        except BaseException:
            self._close_fds()
            raise
        self._write_lock = threading.Lock()  # keeps frames from two threads from interleaving on the wire
        self._closed = False

    @property
    def fd(self) -> int:
        """The master descriptor, for reading with `select.poll`."""
        return self._master

    @property
    def port(self) -> str:
        """What a driver opens: the symlink if one was asked for, else the slave path."""
        return str(self.link) if self.link is not None else self.path

    def read(self) -> bytes:
        """Whatever the host has written, without blocking (empty if nothing)."""
        try:
            return os.read(self._master, 4096)
        except BlockingIOError:
            return b""
        except OSError as exc:
            if exc.errno == errno.EIO:  # no slave open: cannot happen while we hold ours, but harmless
                return b""
            raise

    def write(self, data: bytes) -> bool:
        """Send bytes to the host. False if the host's input buffer is full: the bytes are lost, as on a UART."""
        with self._write_lock:
            view = memoryview(data)
            while view:
                try:
                    view = view[os.write(self._master, view) :]
                except BlockingIOError:
                    return False
        return True

    def drain(self) -> None:
        """Discard what the host wrote while nobody listened (a board that was off never received it)."""
        for _ in range(256):  # bounded: a host that never stops writing must not stall a start
            if not self.read():
                return

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self.link is not None:
            with contextlib.suppress(OSError):
                if os.readlink(self.link) == self.path:  # never remove a link someone else re-pointed
                    self.link.unlink()
        self._close_fds()

    def _close_fds(self) -> None:
        for fd in (self._master, self._slave):
            with contextlib.suppress(OSError):
                os.close(fd)
