"""Starting and stopping a Thespian actor system the way charger needs it (thespian.md guard-rails)."""

from __future__ import annotations

import logging
import os
from typing import Any

from thespian.actors import ActorSystem

from charger.bind_guard import ALL_INTERFACES
from charger.site_secret import SiteSecret, SiteSecretSource, resolve_secret

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
    site_secret: SiteSecretSource = None,
) -> Any:
    """Start (never attach to) an actor system on `admin_port`.

    Raises `RuntimeError` when something already answers on that port: attaching would silently
    ignore our capabilities and run whatever code that stale admin imported.

    On multiprocTCPBase every transport frame is authenticated with `site_secret` and unpickled
    through an allowlist, and every socket binds to `bind_address` (charger.frame_auth,
    charger.bind_guard). `site_secret` is a `SiteSecret`, its key bytes, or the path of a file
    only its owner can read (`SecretFileError` otherwise). Without one, the process generates a
    random secret once and uses it for every system it starts: right for a single box, whose
    processes are all forked from this one, and it shuts every other process out. A site of
    several boxes must give each the same secret file.
    """
    if bind_address in ALL_INTERFACES:
        raise ValueError(f"refusing to bind to all interfaces ({bind_address!r}); give the site's interface address")
    if base == "multiprocUDPBase":
        raise ValueError("multiprocUDPBase frames cannot be authenticated; use multiprocTCPBase")
    if (capabilities or {}).get("Process Startup Method", "fork") != "fork":
        raise ValueError("actors must be forked from the starter, which holds the transport patches")
    if base == DEFAULT_BASE:  # the other bases (simple, queue) never listen on the network
        _secure_transport(resolve_secret(site_secret))
    _prepare_process_titles()
    os.environ["THESPIAN_BASE_IPADDR"] = bind_address  # the caller's (topology's) choice beats an inherited one
    if base != "simpleSystemBase" and _port_in_use(bind_address, admin_port):
        raise RuntimeError(f"admin port {admin_port} is already in use; is another charger system running?")
    caps = {"Admin Port": admin_port, **(capabilities or {})}
    from charger.runtime import on_fresh_stack_chunk, share_heap_with_children

    share_heap_with_children()  # the admin daemon is forked here, and every actor below it
    return on_fresh_stack_chunk(lambda: ActorSystem(base, capabilities=caps, logDefs=log_config, transientUnique=True))


def _secure_transport(secret: SiteSecret) -> None:
    """Authenticated, allowlisted frames and a bound interface, for this process and all it forks."""
    from charger import bind_guard, frame_auth

    frame_auth.install(secret)
    bind_guard.install()
    logging.getLogger("charger.system").debug("transport frames authenticated (site secret: %s)", secret.origin)


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
