"""Make Thespian's listening sockets bind to the configured interface instead of 0.0.0.0.

Thespian 4.0.1 gives every externally reachable address (the admin, the logger, every actor, the
starter's own endpoint) the bind name ``('', port)``, i.e. all interfaces, even when
``THESPIAN_BASE_IPADDR`` says which address the system is reached at (`IPActorAddress` in
``thespian/system/transport/IPBase.py``). `install` replaces the ``bindArgs`` property that every
bind goes through, so a socket binds to the address it advertises: the configured interface.

Installed in the starting process before the actor system starts; every actor process is forked
from it and inherits the patch.
"""

from __future__ import annotations

from typing import Any

from thespian.system.transport import IPBase

__all__ = ["ALL_INTERFACES", "install", "installed", "uninstall"]

ALL_INTERFACES = frozenset({"", "0.0.0.0", "::", "0:0:0:0:0:0:0:0"})
"""Bind addresses that mean "every interface"; never a charger system's bind address."""

_stock_bind_args = IPBase.IPActorAddress.bindArgs


def _bind_to_advertised(address: Any) -> tuple[tuple[Any, ...]]:
    """``bindArgs`` with the advertised IPv4 address in place of the wildcard."""
    name = address.bindname
    if len(name) == 2 and name[0] in ALL_INTERFACES and address.sockname[0] not in ALL_INTERFACES:
        return ((address.sockname[0], name[1]),)
    return (name,)


def install() -> None:
    """Patch the bind address of every Thespian IP endpoint created from now on in this process tree."""
    IPBase.IPActorAddress.bindArgs = property(_bind_to_advertised)


def installed() -> bool:
    return IPBase.IPActorAddress.bindArgs is not _stock_bind_args


def uninstall() -> None:
    """Restore Thespian's own bind (all interfaces). For tests and measurements only."""
    IPBase.IPActorAddress.bindArgs = _stock_bind_args
