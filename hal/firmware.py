"""The seam where a charger maker installs a firmware image: an install hook.

The backend link downloads the image (and, for a signed update, checks its signature), waits until no
transaction runs, then calls the hook named by its config (``firmware.install_hook``, an import path
``package.module:function``) on its I/O thread. The hook gets a `FirmwareImage` and returns an
`InstallOutcome`; raising counts as a failed installation. A real hook writes the image to the
inactive flash bank, checks it, and asks for a reboot (``reboot=True``); it may block for minutes.

`sil_install` is the default: it checks that the image is not empty, copies it under the state
directory (``<state>/firmware/installed/``) and appends what it installed to ``history.jsonl``, so a
test (or a person) can see which image would be running.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["FirmwareImage", "InstallHook", "InstallOutcome", "load_install_hook", "sil_install"]


@dataclass(frozen=True, slots=True, kw_only=True)
class FirmwareImage:
    path: Path
    """The downloaded image (the hook may move or delete it)."""
    location: str
    """Where it came from, without credentials."""
    sha256: str
    signed: bool
    """A SignedUpdateFirmware whose signature was verified."""
    state_dir: Path


@dataclass(frozen=True, slots=True)
class InstallOutcome:
    installed: bool
    detail: str = ""
    """Why it failed, or what was installed (logged, sent as techInfo)."""
    reboot: bool = False
    """The new image runs only after a reboot of the box (a real board; never in SIL)."""


InstallHook = Callable[[FirmwareImage], InstallOutcome]


def load_install_hook(path: str) -> InstallHook:
    """``package.module:function`` -> the function; `ValueError` with the reason when it cannot be used."""
    module_name, _, attribute = path.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"install hook {path!r}: expected 'package.module:function'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"install hook {path!r}: cannot import {module_name}: {exc}") from None
    hook = getattr(module, attribute, None)
    if not callable(hook):
        raise ValueError(f"install hook {path!r}: {module_name} has no function {attribute}")
    found: InstallHook = hook
    return found


def sil_install(image: FirmwareImage) -> InstallOutcome:
    """The software-in-the-loop hook: verify and record (see the module docstring)."""
    data = image.path.read_bytes()
    if not data:
        return InstallOutcome(False, "the image is empty")
    if hashlib.sha256(data).hexdigest() != image.sha256:
        return InstallOutcome(False, "the image changed after it was downloaded")
    directory = image.state_dir / "firmware" / "installed"
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / f"{image.sha256[:16]}.bin"
    shutil.copyfile(image.path, target)
    record = {
        "at": time.time(),
        "location": image.location,
        "sha256": image.sha256,
        "size": len(data),
        "signed": image.signed,
        "file": target.name,
    }
    with (directory / "history.jsonl").open("a", encoding="utf-8") as history:
        history.write(json.dumps(record) + "\n")
        history.flush()
        os.fsync(history.fileno())
    return InstallOutcome(True, f"image {image.sha256[:16]} ({len(data)} bytes) recorded")
