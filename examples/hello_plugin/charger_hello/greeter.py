"""Greeter: an actor type shipped in its own package, found by charger through an entry point.

It shows every part of an actor type in one small file:

- messages (`Greet` -> `Greeting`, the `Greeted` var) and the `GREETING` interface they form;
- a manifest: what it provides, an optional connection to a ticker, and a config schema;
- a handler that refuses bad input with `Rejected` instead of crashing;
- state that survives a restart: the greet count, journaled with SQLite in WAL mode under the
  state directory, committed on the I/O thread before the reply goes out;
- a subscription to another actor's var (`Tick`), renewed by the runtime after either side restarts.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Generator
from typing import Any, ClassVar

from charger.actors.ticker import TICKS, Tick

from charger.behaviour import Behaviour, Pending, handles
from charger.errors import Rejected
from charger.interfaces import Command, Interface, Requirement
from charger.messages import message

__all__ = ["GREETING", "GetGreeterStats", "Greet", "GreetJournal", "Greeted", "Greeter", "GreeterStats", "Greeting"]


# --- messages and the interface they form ---------------------------------------------------------
@message
class Greet:
    """Ask for a greeting."""

    name: str
    """Who to greet; an empty or blank name is rejected."""


@message
class Greeting:
    """The answer to `Greet`."""

    text: str
    count: int
    """Greetings this instance has given since it was first started, this one included (survives restarts)."""


@message
class Greeted:
    """Published after every greeting (a var: subscribers get it as an event)."""

    name: str
    count: int


@message
class GetGreeterStats:
    """Ask a greeter how it is doing."""


@message
class GreeterStats:
    """The answer to `GetGreeterStats`."""

    greets: int
    """Greetings given since the instance was first started (from the journal)."""
    ticks: int
    """Ticks received from the clock since this process started (not journaled)."""
    clock: str
    """Name of the connected ticker, or "" when none is connected."""


GREETING = Interface(
    name="greeting",
    description="Greets people by name and counts the greetings.",
    commands=(Command(Greet, Greeting), Command(GetGreeterStats, GreeterStats)),
    vars=(Greeted,),
)


# --- the journal ------------------------------------------------------------------------------------
class GreetJournal:
    """The greet count in one SQLite file (WAL mode).

    Blocking: call it through ``run_io``. Each method opens its own connection, so it may run on any
    thread of the I/O pool, and the count is incremented inside the database, so two greetings in
    flight at once never lose one.
    """

    def __init__(self, path: str) -> None:
        self.path = path

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=5.0, isolation_level=None)  # autocommit: transactions are explicit
        db.execute("PRAGMA synchronous=FULL")  # a COMMIT is on disk when it returns
        return db

    def open(self) -> int:
        """Create the file if needed, switch it to WAL, and return the count so far."""
        with contextlib.closing(self._connect()) as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("CREATE TABLE IF NOT EXISTS greets (id INTEGER PRIMARY KEY CHECK (id = 1), count INTEGER)")
            db.execute("INSERT OR IGNORE INTO greets (id, count) VALUES (1, 0)")
            (count,) = db.execute("SELECT count FROM greets WHERE id = 1").fetchone()
        return int(count)

    def bump(self) -> int:
        """Count one more greeting and return the new total, committed."""
        with contextlib.closing(self._connect()) as db:
            db.execute("BEGIN IMMEDIATE")  # take the write lock first: the read below sees our own update
            db.execute("UPDATE greets SET count = count + 1 WHERE id = 1")
            (count,) = db.execute("SELECT count FROM greets WHERE id = 1").fetchone()
            db.execute("COMMIT")
        return int(count)


# --- the actor type ---------------------------------------------------------------------------------
class Greeter(Behaviour):
    """Answers `Greet`; counts greetings (journaled) and the ticks of an optional clock."""

    description = "Greets people by name; the count survives restarts. Optionally counts a ticker's ticks."
    provides = {"greeting": GREETING}
    requires = {
        "clock": Requirement(
            interface=TICKS,
            min_connections=0,  # optional: a greeter works without a clock
            max_connections=1,
            description="A ticker whose Tick vars are counted.",
        ),
    }
    config_schema: ClassVar = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "greeting": {
                "type": "string",
                "minLength": 1,
                "default": "Hello",
                "description": "The word the greeting starts with.",
            },
            "shout": {"type": "boolean", "default": False, "description": "Greet in capitals."},
        },
    }

    journal: GreetJournal
    greets: int
    ticks: int
    clock: str

    def init(self) -> Generator[Pending, Any, None]:
        self.journal = GreetJournal(os.path.join(self.state_dir, f"{self.name}.greets.sqlite"))
        self.greets = yield self.run_io(self.journal.open)  # resume from the journal, not from scratch
        self.ticks = 0
        self.clock = next(iter(self.connections.get("clock", ())), "")
        if self.clock:
            self.subscribe(self.clock, Tick)
        self.log.info("%s ready: %d greetings so far, clock %s", self.name, self.greets, self.clock or "none")

    def terminate(self, reason: str) -> None:
        self.log.info("%s stopping (%s) after %d greetings", self.name, reason, self.greets)

    @handles(Greet)
    def on_greet(self, msg: Greet) -> Generator[Pending, Any, Greeting]:
        if not msg.name.strip():
            raise Rejected("name must not be empty")  # answers the caller with an error; no crash, no restart
        count = yield self.run_io(self.journal.bump)  # durable before we answer
        self.greets = max(self.greets, count)
        text = f"{self.config['greeting']}, {msg.name}!"
        if self.config["shout"]:
            text = text.upper()
        self.publish(Greeted(name=msg.name, count=count))
        return Greeting(text=text, count=count)

    @handles(Tick)
    def on_tick(self, msg: Tick) -> None:
        self.ticks += 1

    @handles(GetGreeterStats)
    def on_get_stats(self, msg: GetGreeterStats) -> GreeterStats:
        return GreeterStats(greets=self.greets, ticks=self.ticks, clock=self.clock)
