"""Starting and stopping a Thespian actor system the way charger needs it (thespian.md guard-rails)."""

from __future__ import annotations

import logging
import os
from typing import Any

from thespian.actors import ActorSystem

__all__ = ["DEFAULT_ADMIN_PORT", "DEFAULT_BASE", "start_system"]

DEFAULT_BASE = "multiprocTCPBase"
DEFAULT_ADMIN_PORT = 1900


def start_system(
    admin_port: int = DEFAULT_ADMIN_PORT,
    *,
    base: str = DEFAULT_BASE,
    bind_address: str = "127.0.0.1",
    log_config: dict[str, Any] | None = None,
    capabilities: dict[str, Any] | None = None,
) -> Any:
    """Start (never attach to) an actor system on `admin_port`.

    Raises `RuntimeError` when something already answers on that port: attaching would silently
    ignore our capabilities and run whatever code that stale admin imported.
    """
    _prepare_process_titles()
    os.environ["THESPIAN_BASE_IPADDR"] = bind_address  # the caller's (topology's) choice beats an inherited one
    if base != "simpleSystemBase" and _port_in_use(bind_address, admin_port):
        raise RuntimeError(f"admin port {admin_port} is already in use; is another charger system running?")
    caps = {"Admin Port": admin_port, **(capabilities or {})}
    from charger.runtime import on_fresh_stack_chunk, share_heap_with_children

    share_heap_with_children()  # the admin daemon is forked here, and every actor below it
    return on_fresh_stack_chunk(lambda: ActorSystem(base, capabilities=caps, logDefs=log_config, transientUnique=True))


def _prepare_process_titles() -> None:
    """Let every forked actor process retitle itself ("charger: NAME (TYPE)").

    setproctitle finds the argv memory it rewrites by walking back from the first environment
    string, so it must look before anything replaces that string; the forked children inherit
    what it found. Titles must not overwrite /proc/PID/environ either: the run token there is how
    a system's processes are found again (charger.processes) for the no-leftovers checks.
    """
    if os.environ.get("SPT_NOENV") != "1":
        os.environ["SPT_NOENV"] = "1"
    try:
        import setproctitle
    except ImportError:  # pragma: no cover - a declared dependency; titles are only a nicety
        return
    setproctitle.setproctitle(setproctitle.getproctitle())


def _port_in_use(host: str, port: int) -> bool:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return True
    return False


def logging_config(level: str = "INFO", json_lines: bool = False, filename: str | None = None) -> dict[str, Any]:
    """A ``logging.config`` dict for Thespian's logger process (every actor logs through it)."""
    handler: dict[str, Any] = {"class": "logging.StreamHandler", "formatter": "plain", "level": level}
    if filename is not None:
        handler = {"class": "logging.FileHandler", "filename": filename, "formatter": "plain", "level": level}
    if json_lines:
        handler["formatter"] = "json"
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "plain": {"format": "%(asctime)s %(levelname)-7s %(name)s: %(message)s"},
            "json": {"()": "charger.logs.JsonLines"},
        },
        "handlers": {"main": handler},
        "root": {"handlers": ["main"], "level": level},
        "loggers": {"thespian": {"level": "WARNING"}, "websockets": {"level": "WARNING"}},
    }


logging.getLogger("charger").addHandler(logging.NullHandler())
