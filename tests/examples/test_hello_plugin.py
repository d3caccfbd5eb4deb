"""The hello plugin (examples/hello_plugin): an actor type added without editing charger.

Found through its ``charger.actors`` entry point, run by catalog name in a real actor system, killed
and restarted with its journal intact, and refusing bad input without crashing.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from charger.supervisors.spec import ChildKind, ChildSpec, Strategy, SupFlags
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from charger.catalog import actor_types, load_actor_type
from charger.errors import Rejected
from charger.testing import RunningSystem, running_system
from tests.conftest import free_port
from tests.supervisors.test_strategies import wait_for

EXAMPLE = Path(__file__).parents[2] / "examples" / "hello_plugin"
INSTALL = "pip install -e examples/hello_plugin"

try:
    from charger_hello.greeter import GetGreeterStats, Greet, Greeter, GreeterStats, Greeting
except ImportError as exc:  # the tests below still run, and fail saying what to do
    _MISSING: ImportError | None = exc
else:
    _MISSING = None


def _require_plugin() -> None:
    if _MISSING is not None or "Greeter" not in actor_types():
        pytest.fail(f"the hello plugin is not installed ({_MISSING or 'no Greeter entry point'}): run `{INSTALL}`")


def test_the_entry_point_is_discovered() -> None:
    _require_plugin()
    assert actor_types()["Greeter"] == "charger_hello.greeter:Greeter"
    assert load_actor_type("Greeter") is Greeter


def test_the_example_topology_validates() -> None:
    _require_plugin()
    from charger.topology import load_topology

    topology = load_topology(EXAMPLE / "topology.yaml")
    greeter = topology.actors["greeter"]
    assert greeter.type == "Greeter"
    assert greeter.config == {"greeting": "Hello", "shout": False}  # the schema's default filled in
    assert greeter.connections == {"clock": ("ticker",)}
    assert [child.id for child in topology.root.children] == ["ticker", "greeter"]
    assert topology.root.flags == SupFlags(strategy=Strategy.ONE_FOR_ONE, intensity=3, period=10)


@pytest.mark.parametrize(
    ("actor", "phrase"),
    [
        ("config: {greeting: ''}", "should be non-empty"),
        ("config: {shout: 'yes please'}", "is not of type 'boolean'"),
        ("config: {volume: 11}", "unknown key 'volume'"),
        ("connections: {clock: [ticker, greeter]}", "takes at most 1, got 2"),
        ("connections: {clock: [greeter]}", "does not provide interface 'ticks'"),
    ],
)
def test_the_loader_checks_a_greeter_against_its_manifest(tmp_path: Path, actor: str, phrase: str) -> None:
    _require_plugin()
    from charger.topology import TopologyError, load_topology

    path = tmp_path / "bad.yaml"
    path.write_text(
        "site: bad\n"
        "actors:\n"
        "  ticker: {type: Ticker}\n"
        f"  greeter: {{type: Greeter, {actor}}}\n"
        "supervision: {children: [ticker, greeter]}\n",
        encoding="utf-8",
    )
    with pytest.raises(TopologyError) as info:
        load_topology(path)
    assert any(phrase in problem.message and problem.line == 4 for problem in info.value.problems), str(info.value)


# --- a live system ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("hello")


@pytest.fixture(scope="module")
def site(state: Path) -> Iterator[RunningSystem]:
    _require_plugin()
    root = ChildSpec(
        id="root",
        kind=ChildKind.SUPERVISOR,
        flags=SupFlags(strategy=Strategy.ONE_FOR_ONE, intensity=10, period=10.0),
        children=(
            ChildSpec(id="ticker", actor="Ticker", config={"period_s": 0.05}),
            ChildSpec(
                id="greeter",
                actor="Greeter",  # the catalog name, as a topology writes it
                config={"greeting": "Hello", "shout": False},
                requires={"clock": ("ticker",)},
            ),
            ChildSpec(id="loud", actor="Greeter", config={"greeting": "Hey", "shout": True}),  # no clock
        ),
    )
    with running_system(root, free_port(), str(state), log_file=str(state / "system.log")) as system:
        yield system


def stats(site: RunningSystem, name: str = "greeter") -> GreeterStats:
    reply = site.client.call(name, GetGreeterStats())
    assert isinstance(reply, GreeterStats)
    return reply


def greet(site: RunningSystem, name: str, who: str = "greeter") -> Greeting:
    reply = site.client.call(who, Greet(name=name))
    assert isinstance(reply, Greeting)
    return reply


def test_greet_answers_with_the_configured_greeting_and_counts(site: RunningSystem) -> None:
    first = greet(site, "Ada")
    second = greet(site, "Grace")
    assert first.text == "Hello, Ada!" and second.text == "Hello, Grace!"
    assert second.count == first.count + 1


def test_instances_are_configured_and_journaled_separately(site: RunningSystem) -> None:
    before = stats(site, "loud").greets
    assert greet(site, "Ada", who="loud") == Greeting(text="HEY, ADA!", count=before + 1)
    assert stats(site, "loud").clock == ""  # the optional clock left unwired
    assert stats(site, "greeter").clock == "ticker"


def test_an_empty_name_is_rejected_not_a_crash(site: RunningSystem) -> None:
    pid = site.pid_of("greeter")
    for blank in ("", "   "):
        with pytest.raises(Rejected, match="name must not be empty"):
            site.client.call("greeter", Greet(name=blank))
    assert site.pid_of("greeter") == pid
    assert greet(site, "Ada").text == "Hello, Ada!"


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(st.characters(exclude_categories=["Cs"]), max_size=30))
def test_any_name_is_greeted_or_rejected(site: RunningSystem, name: str) -> None:
    if name.strip():
        assert greet(site, name).text == f"Hello, {name}!"
    else:
        with pytest.raises(Rejected):
            greet(site, name)


def test_the_count_survives_a_kill_and_ticks_resume(site: RunningSystem) -> None:
    greet(site, "Ada")
    count = greet(site, "Grace").count
    wait_for(lambda: stats(site).ticks > 0, what="ticks before the kill")
    pid = site.pid_of("greeter")

    os.kill(pid, signal.SIGKILL)  # no terminate, no goodbye: only the journal remains
    wait_for(lambda: site.status().actors.get("greeter") not in (None, pid), what="greeter restarted")

    assert stats(site).greets == count  # resumed from the journal, before anyone greeted it
    assert greet(site, "Ada").count == count + 1
    wait_for(lambda: stats(site).ticks > 0, what="ticks counted after the restart (subscription renewed)")
    assert site.status().restarts.get("greeter") == 1


def test_the_journal_is_one_wal_file_per_instance(site: RunningSystem, state: Path) -> None:
    for name in ("greeter", "loud"):
        with contextlib.closing(sqlite3.connect(state / f"{name}.greets.sqlite")) as db:
            assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
            (count,) = db.execute("SELECT count FROM greets").fetchone()
        assert count == stats(site, name).greets


# --- the integrator's guide quotes these files; the quotes must stay true ------------------------


def _code_lines(text: str) -> list[str]:
    """Non-blank lines without their indentation: `ruff format` dedents quoted methods and spaces them out."""
    return [line.strip() for line in text.splitlines() if line.strip()]


def test_the_integrators_guide_quotes_real_code() -> None:
    root = Path(__file__).parents[2]
    guide = (root / "docs" / "integrators.md").read_text(encoding="utf-8")
    quotes = re.findall(r"<!-- excerpt: (\S+) -->\n```\w*\n(.*?)\n```", guide, flags=re.DOTALL)
    assert quotes and len(quotes) == guide.count("<!-- excerpt:"), "a quote marker is not followed by a code block"
    for path, text in quotes:
        quoted, source = _code_lines(text), _code_lines((root / path).read_text(encoding="utf-8"))
        found = any(source[i : i + len(quoted)] == quoted for i in range(len(source)))
        assert found, f"docs/integrators.md quotes {path} wrongly:\n{text}"
