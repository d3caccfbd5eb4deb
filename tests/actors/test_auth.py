"""Auth in a real actor system, with fake EVSE managers (real actor processes) standing in for the
connectors: plug-in first, token first and its timeout, the allow list, free charging, the
longest-waiting connector, "present the same card to stop", refusals, a restart, and cards from a
real reader on a pty.

A fake's var and the test's next call reach auth by different routes, in either order. So a plug-in
counts as done once auth has logged that the connector waits: the log is auth's only outward sign.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest
from charger.actors.charging import (
    ConnectorReservation,
    PresentCard,
    PresentToken,
    ReserveConnector,
    TokenVerdict,
)

from charger.testing import RunningSystem
from tests.conftest import group, worker
from tests.support.fake_evse import FakeEvseLog, FakePlugIn, FakeRefuseAuth, FakeUnplug, GetFakeEvseLog

TOKEN_1, TOKEN_2, STRANGER = "04A1B2C3D4", "04F5E6D7C8", "0499999999"
FAKE = "tests.support.fake_evse:FakeEvse"


def eventually(check: Callable[[], Any], what: str, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (result := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout} s")
        time.sleep(0.02)
    return result


class Station:
    """Two fake connectors and auth in a running system, plus auth's log."""

    def __init__(self, system: RunningSystem, log: Path) -> None:
        self.system, self.log = system, log

    def logged(self, text: str) -> int:
        return self.log.read_text().count(text) if self.log.exists() else 0

    def plug(self, evse: str) -> None:
        """Plug in, and return once auth knows the connector waits (or has already served it)."""
        line = f"charger.auth: {evse} waits for authorization"
        before = self.logged(line)
        self.system.client.call(evse, FakePlugIn())
        eventually(lambda: self.logged(line) > before, f"auth seeing {evse} wait")

    def present(self, token: str, connector: str | None = None) -> TokenVerdict:
        verdict = self.system.client.call("auth", PresentToken(token_id=token, connector=connector))
        assert isinstance(verdict, TokenVerdict)
        return verdict

    def fake(self, evse: str) -> FakeEvseLog:
        log = self.system.client.call(evse, GetFakeEvseLog())
        assert isinstance(log, FakeEvseLog)
        return log

    def authorized(self, evse: str) -> list[list[str]]:
        return [e for e in self.fake(evse).entries if e[0] == "authorize"]


@pytest.fixture
def start(start_tree: Any, tmp_path: Path) -> Callable[..., AbstractContextManager[Station]]:
    """``with start(**auth_config) as s:`` runs a `Station`; `extra` children start before the fakes."""

    @contextlib.contextmanager
    def run(*extra: Any, readers: tuple[str, ...] = (), **auth_config: Any) -> Iterator[Station]:
        config = {"allow": [TOKEN_1, TOKEN_2], **auth_config}
        tree = group(
            "root",
            *extra,
            worker("evse-1", actor=FAKE, config={"connector_id": 1}),
            worker("evse-2", actor=FAKE, config={"connector_id": 2}),
            worker("auth", actor="Auth", config=config, requires={"evse": ("evse-1", "evse-2"), "reader": readers}),
            intensity=20,
        )
        with start_tree(tree) as system:
            yield Station(system, tmp_path / "system.log")

    return run


def test_plug_in_first_then_a_valid_token(start: Any) -> None:
    with start() as s:
        s.plug("evse-1")
        verdict = s.present(TOKEN_1.lower())  # ids compare case-insensitively
        assert (verdict.status, verdict.connector) == ("Accepted", "evse-1")
        assert s.fake("evse-1") == FakeEvseLog(entries=[["authorize", TOKEN_1.lower()]], state="Charging")
        assert s.fake("evse-2").entries == []


def test_an_invalid_token_authorizes_nothing(start: Any) -> None:
    with start() as s:
        s.plug("evse-1")
        verdict = s.present(STRANGER)
        assert (verdict.status, verdict.connector) == ("Invalid", None)
        assert STRANGER in verdict.detail
        assert s.present(STRANGER, connector="evse-1").status == "Invalid"
        assert s.fake("evse-1").entries == []
        assert s.present(TOKEN_2).connector == "evse-1"  # still waiting for a valid one


def test_token_first_goes_to_the_next_plug_in(start: Any) -> None:
    with start() as s:
        verdict = s.present(TOKEN_1)
        assert (verdict.status, verdict.connector) == ("Accepted", None)
        assert "plug-in" in verdict.detail
        assert s.fake("evse-2").entries == []
        s.plug("evse-2")
        eventually(lambda: s.authorized("evse-2"), "the held token reaching evse-2")
        assert s.authorized("evse-2") == [["authorize", TOKEN_1]]
        s.plug("evse-1")  # the token was used once: the next plug-in waits for its own
        assert s.present(TOKEN_2).connector == "evse-1"
        assert s.authorized("evse-1") == [["authorize", TOKEN_2]]


def test_token_first_for_a_named_connector_waits_for_that_one(start: Any) -> None:
    with start() as s:
        verdict = s.present(TOKEN_2, connector="evse-2")
        assert (verdict.status, verdict.connector) == ("Accepted", "evse-2")
        s.plug("evse-1")
        s.plug("evse-2")
        eventually(lambda: s.authorized("evse-2"), "the held token reaching evse-2")
        assert s.authorized("evse-1") == []  # it plugged in first, but the token was not for it


def test_a_held_token_is_dropped_after_the_connection_timeout(start: Any) -> None:
    with start(connection_timeout_s=0.3) as s:
        assert s.present(TOKEN_1).status == "Accepted"
        eventually(lambda: s.logged("dropped: no plug-in within 0.3 s"), "the token being dropped")
        s.plug("evse-1")
        # Had TOKEN_1 still been held, evse-1 would have taken it and TOKEN_2 would now be held instead.
        assert s.present(TOKEN_2).connector == "evse-1"
        assert s.authorized("evse-1") == [["authorize", TOKEN_2]]


def test_the_connector_that_waited_longest_gets_the_token(start: Any) -> None:
    with start() as s:
        s.plug("evse-2")
        s.plug("evse-1")
        assert s.present(TOKEN_1).connector == "evse-2"
        assert s.present(TOKEN_2).connector == "evse-1"
        assert s.authorized("evse-2") == [["authorize", TOKEN_1]]
        assert s.authorized("evse-1") == [["authorize", TOKEN_2]]


def test_a_named_connector_gets_the_token_even_if_another_waited_longer(start: Any) -> None:
    with start() as s:
        s.plug("evse-2")
        s.plug("evse-1")
        assert s.present(TOKEN_1, connector="evse-1").connector == "evse-1"
        assert s.authorized("evse-2") == []
        unknown = s.present(TOKEN_2, connector="evse-9")
        assert (unknown.status, unknown.connector) == ("NoConnector", "evse-9")


def test_the_same_token_again_stops_its_session(start: Any) -> None:
    with start() as s:
        s.plug("evse-1")
        assert s.present(TOKEN_1).connector == "evse-1"
        stop = s.present(TOKEN_1.lower())
        assert (stop.status, stop.connector) == ("Accepted", "evse-1") and "stopped" in stop.detail
        assert s.fake("evse-1") == FakeEvseLog(entries=[["authorize", TOKEN_1], ["stop", "Local"]], state="Finished")
        s.system.client.call("evse-1", FakeUnplug())
        # The session is over: the same card now starts over (held, as nothing waits).
        eventually(lambda: s.present(TOKEN_1).connector is None, "the token no longer counting as in use")
        assert s.fake("evse-1").entries[-1] == ["stop", "Local"]


def test_free_charging_authorizes_every_plug_in(start: Any) -> None:
    with start(allow=[], free_charging=True, free_token="HOUSE") as s:
        s.plug("evse-2")
        eventually(lambda: s.authorized("evse-2"), "the free authorization")
        assert s.authorized("evse-2") == [["authorize", "HOUSE"]]
        assert s.fake("evse-2").state == "Charging"
        assert s.present(TOKEN_1).status == "Invalid"  # the allow list still decides for cards


def test_a_refused_authorization_is_a_verdict_not_a_crash(start: Any) -> None:
    with start() as s:
        s.system.client.call("evse-1", FakeRefuseAuth(refuse=True))
        s.plug("evse-1")
        verdict = s.present(TOKEN_1)
        assert (verdict.status, verdict.connector) == ("NoConnector", "evse-1")
        assert "refused" in verdict.detail
        s.system.client.call("evse-1", FakeRefuseAuth(refuse=False))
        assert s.present(TOKEN_1).connector == "evse-1"  # the connector still waits
        assert "auth" not in s.system.status().restarts


def test_a_restarted_auth_learns_which_connectors_wait(start: Any) -> None:
    with start() as s:
        s.plug("evse-1")
        pid = s.system.pid_of("auth")
        os.kill(pid, signal.SIGKILL)
        eventually(lambda: s.system.pid_of("auth") != pid, "auth being restarted")
        assert s.present(TOKEN_1).connector == "evse-1"


def test_cards_at_the_reader_take_the_same_path(start: Any) -> None:
    reader_side = (
        worker("sim", actor="CardReaderSim", config={"link": "rfid.pty"}),
        worker("reader", actor="CardReader", config={"port": "rfid.pty", "hold_s": 0.2}),
    )
    with start(*reader_side, readers=("reader",)) as s:
        s.plug("evse-2")
        s.system.client.call("sim", PresentCard(uid=STRANGER))
        s.system.client.call("sim", PresentCard(uid=TOKEN_2))
        eventually(lambda: s.authorized("evse-2"), "the card reaching evse-2")
        assert s.authorized("evse-2") == [["authorize", TOKEN_2]]  # the stranger's card went nowhere
        time.sleep(0.4)  # the card is taken away (longer than hold_s) and held to the reader again
        s.system.client.call("sim", PresentCard(uid=TOKEN_2))
        eventually(lambda: s.fake("evse-2").state == "Finished", "the same card stopping the session")
        assert s.fake("evse-2").entries == [["authorize", TOKEN_2], ["stop", "Local"]]


def test_a_reserved_connector_gets_only_its_reservations_tokens(start: Any) -> None:
    with start(free_charging=True) as s:
        held = ConnectorReservation(reservation_id=3, id_tag=TOKEN_1, expires_at=time.time() + 300)
        s.system.client.call("evse-1", ReserveConnector(reservations=(held,)))
        assert s.present(TOKEN_2).connector is None  # held: no connector waits
        s.plug("evse-1")  # reserved: neither the held token nor the free token goes there
        verdict = s.present(TOKEN_2, connector="evse-1")
        assert verdict.status == "NoConnector" and "reserved" in verdict.detail
        s.plug("evse-2")
        eventually(lambda: s.authorized("evse-2"), "the held token reaching evse-2")
        assert s.authorized("evse-2") == [["authorize", TOKEN_2]]
        assert s.authorized("evse-1") == []
        assert s.present(TOKEN_1).connector == "evse-1"
        assert s.authorized("evse-1") == [["authorize", TOKEN_1]]
