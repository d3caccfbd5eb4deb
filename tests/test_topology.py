"""The topology loader: good files become the right supervision tree, bad files give every problem, located."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from charger.supervisors.spec import ChildKind, ChildSpec, Restart, Strategy
from hypothesis import example, given, settings
from hypothesis import strategies as st

from charger.topology import Problem, Topology, TopologyError, load_topology
from tests.support.fuzz import PURE

CASES = Path(__file__).parent / "topology_cases"
SITE = Path(__file__).parents[1] / "topology" / "demo.yaml"
CHARGER = Path(__file__).parents[1] / "topology" / "site.yaml"


def problems_of(path: Path | str) -> list[Problem]:
    with pytest.raises(TopologyError) as info:
        load_topology(path)
    return info.value.problems


def assert_problems(path: Path | str, expected: list[tuple[int, int, str]]) -> None:
    """Exactly these problems, in this order: each (line, col, phrase the message contains)."""
    problems = problems_of(path)
    listing = "\n".join(map(str, problems))
    assert len(problems) == len(expected), listing
    for problem, (line, col, phrase) in zip(problems, expected, strict=True):
        assert str(problem).startswith(f"{path}:{line}:{col}: "), listing
        assert phrase in problem.message, listing


def by_id(root: ChildSpec) -> dict[str, ChildSpec]:
    return {spec.id: spec for spec in root.walk()}


# --- good files -----------------------------------------------------------------------------------


def test_the_shipped_charger_is_two_connectors_under_one_fuse() -> None:
    topology = load_topology(CHARGER)

    types = {name: actor.type for name, actor in topology.actors.items()}
    assert [n for n, t in types.items() if t == "EvseManager"] == ["evse-1", "evse-2"]
    for n in (1, 2):
        evse = topology.actors[f"evse-{n}"]
        assert evse.connections == {"board": (f"board-{n}",), "meter": (f"meter-{n}",)}
        assert evse.config["hardware_max_current_a"] == 32
        rig, meter = topology.actors[f"rig-{n}"].config, topology.actors[f"meter-{n}"].config
        assert rig["modbus_port"] == meter["port"] and rig["board_link"] == topology.actors[f"board-{n}"].config["port"]
    assert topology.actors["fuse"].config["fuse_a"] == 32
    order = [spec.id for spec in topology.root.walk()]
    assert order.index("rig-1") < order.index("board-1") < order.index("evse-1")  # the world before its drivers


def test_demo_site_loads_into_the_documented_tree() -> None:
    topology = load_topology(SITE)

    assert (topology.site, topology.admin_port, topology.bind, topology.state_dir) == ("demo", 1900, "127.0.0.1", None)
    assert list(topology.actors) == ["ticker", "fast-ticker", "counter"]
    assert topology.actors["counter"].connections == {"source": ("ticker", "fast-ticker")}
    root = topology.root
    assert (root.id, root.kind, root.flags.strategy, root.flags.intensity, root.flags.period) == (
        "root",
        ChildKind.SUPERVISOR,
        Strategy.ONE_FOR_ONE,
        3,
        10,
    )
    assert [spec.id for spec in root.walk()] == ["root", "ticker", "counting", "fast-ticker", "counter"]
    specs = by_id(root)
    assert specs["counting"].flags.strategy is Strategy.REST_FOR_ONE
    assert specs["counting"].shutdown == math.inf
    assert specs["ticker"].config == {"period_s": 1.0}
    assert specs["ticker"].shutdown == 5.0
    assert specs["counter"].actor == "Counter"
    assert specs["counter"].requires == {"source": ("ticker", "fast-ticker")}
    assert specs["counter"].shutdown == 2.0


def test_every_key_and_default_reaches_the_specs() -> None:
    topology = load_topology(CASES / "good.yaml")

    assert isinstance(topology, Topology)
    assert (topology.site, topology.admin_port, topology.bind, topology.state_dir) == (
        "lab",
        2345,
        "localhost",
        "/tmp/lab-state",
    )
    specs = by_id(topology.root)
    assert [spec.id for spec in topology.root.walk()] == ["top", "tick", "tuning", "tuned", "loose"]
    top = specs["top"]
    assert (top.flags.strategy, top.flags.intensity, top.flags.period) == (Strategy.ONE_FOR_ALL, 0, 2.5)
    assert (specs["tick"].restart, specs["tick"].shutdown, specs["tick"].config) == (
        Restart.TRANSIENT,
        0,
        {"period_s": 1.0},
    )
    tuning = specs["tuning"]
    assert (tuning.kind, tuning.restart, tuning.shutdown) == (ChildKind.SUPERVISOR, Restart.TEMPORARY, 30)
    assert (tuning.flags.strategy, tuning.flags.intensity, tuning.flags.period) == (Strategy.REST_FOR_ONE, 1, 5.0)
    assert (top.own_process, tuning.own_process) == (True, False)
    # Nested defaults are filled in under what was written, and under defaults that were themselves filled in.
    assert specs["tuned"].config == {"label": "tuned", "limits": {"max_a": 32, "phases": 3}}
    assert specs["loose"].config == {"label": "tuned", "limits": {"max_a": 16, "phases": 3}}
    assert specs["tuned"].actor == "tests.support.actors:Tuned"
    assert specs["tuned"].requires == {"ticks": ("tick",)}
    assert specs["loose"].requires == {"ticks": ()}  # an optional requirement left unwired is still listed
    assert (specs["loose"].restart, specs["loose"].shutdown) == (Restart.TEMPORARY, 5.0)
    assert topology.actors["tuned"].config is specs["tuned"].config


# --- one bad file per check -----------------------------------------------------------------------

BAD_FILES: dict[str, list[tuple[int, int, str]]] = {
    "unknown_type.yaml": [(4, 11, "unknown actor type 'Tickr' (known: ")],
    "missing_connection.yaml": [(6, 5, "missing required connection 'source' (interface ticks)")],
    "wrong_interface.yaml": [(8, 24, "connection source -> other: Counter does not provide interface 'ticks'")],
    "bad_config_value.yaml": [(6, 17, "actors.ticker.config.period_s: -1 is less than or equal to the minimum of 0")],
    "bad_config_key.yaml": [(6, 7, "actors.ticker.config: unknown key 'perid_s'")],
    "bad_nested_config.yaml": [
        (6, 23, "actors.tuned.config.limits.max_a: 2 is less than the minimum of 6"),
        (6, 34, "actors.tuned.config.limits.phases: 2 is not one of [1, 3]"),
    ],
    "duplicate_name.yaml": [(5, 3, "actors: duplicate key 'ticker' (first at line 3)")],
    "duplicate_group_name.yaml": [(11, 19, "duplicate supervisor name 'group' (first at line 9)")],
    "group_named_like_actor.yaml": [(7, 19, "supervisor name 'ticker' is also the name of an actor")],
    "cycle.yaml": [(3, 3, "connection cycle: ping -> pong -> ping")],
    "cycle_of_three.yaml": [(7, 3, "connection cycle: a -> b -> c -> a")],
    "yaml_syntax.yaml": [(5, 12, "invalid YAML: mapping values are not allowed here")],
    "unknown_key.yaml": [
        (5, 5, "actors.ticker: unknown key 'confg' (expected: type, config, connections)"),
        (8, 3, "supervision: unknown key 'colour'"),
    ],
    "not_supervised.yaml": [(5, 3, "actor 'spare' is not in the supervision tree")],
    "supervised_twice.yaml": [(10, 18, "actor 'ticker' is placed twice in the supervision tree (first at line 7)")],
    "unknown_child.yaml": [(6, 30, "supervision.children[1]: there is no actor named 'tickr'")],
    "bad_strategy.yaml": [
        (6, 13, "supervision.strategy: 'one_for_none' is not one of one_for_one, one_for_all, rest_for_one")
    ],
    "bad_flags.yaml": [
        (8, 18, "supervision.children[0].intensity: -1 is not an integer >= 0"),
        (9, 15, "supervision.children[0].period: 0 is not a number of seconds > 0"),
        (10, 16, "supervision.children[0].restart: 'sometimes' is not one of permanent, transient, temporary"),
        (11, 17, "supervision.children[0].shutdown: -1 is not a number of seconds >= 0"),
        (12, 20, "supervision.children[0].own_process: 'maybe' is not true or false"),
        (15, 21, "supervision.children[0].children[0].shutdown: nan is not a number of seconds >= 0"),
    ],
    "bad_connections.yaml": [
        (6, 7, "Ticker has no requirement 'source'"),
        (10, 24, "connection source -> ghost: there is no actor named 'ghost'"),
        (10, 31, "connection source -> ticker: listed twice"),
    ],
    "too_many_connections.yaml": [(6, 13, "connection 'next' (interface relay) takes at most 1, got 2")],
    "missing_keys.yaml": [
        (1, 1, "missing required key 'site'"),
        (1, 1, "missing required key 'supervision'"),
        (2, 15, "system.admin_port: 80 is not an integer from 1024 to 65535"),
        (3, 9, "actors must be a mapping, got a list"),
    ],
    "several_problems.yaml": [
        (3, 15, "system.admin_port: 80 is not an integer"),
        (7, 24, "actors.ticker.config.period_s: 'fast' is not of type 'number'"),
        (9, 11, "unknown actor type 'Mystery'"),
        (11, 5, "missing required connection 'source'"),
        (12, 3, "actor 'spare' is not in the supervision tree"),
        (15, 13, "supervision.strategy: 'one_for_none' is not one of"),
        (16, 14, "supervision.intensity: -1 is not an integer >= 0"),
        (17, 40, "supervision.children[3]: there is no actor named 'nobody'"),
    ],
}


@pytest.mark.parametrize(("name", "expected"), BAD_FILES.items(), ids=list(BAD_FILES))
def test_bad_file_reports_exactly_its_problems(name: str, expected: list[tuple[int, int, str]]) -> None:
    assert_problems(CASES / name, expected)


def test_an_unknown_type_lists_the_known_ones() -> None:
    [problem] = problems_of(CASES / "unknown_type.yaml")
    known = problem.message.partition("(known: ")[2].rstrip(")").split(", ")
    assert {"Counter", "Ticker"} <= set(known)  # plus whatever plugins are installed


def test_every_case_file_is_checked() -> None:
    assert {p.name for p in CASES.glob("*.yaml")} == {*BAD_FILES, "good.yaml"}


def test_all_problems_come_in_line_order_and_the_error_lists_them_one_per_line() -> None:
    path = CASES / "several_problems.yaml"
    with pytest.raises(TopologyError) as info:
        load_topology(path)
    problems = info.value.problems
    assert [(p.line, p.col) for p in problems] == sorted((p.line, p.col) for p in problems)
    assert len({p.line for p in problems}) == len(problems) == 8
    assert str(info.value) == "\n".join(f"{path}:{p.line}:{p.col}: {p.message}" for p in problems)


# --- bad input that is not a topology at all ------------------------------------------------------


def test_a_missing_file_is_a_problem_not_a_traceback(tmp_path: Path) -> None:
    assert_problems(tmp_path / "nope.yaml", [(1, 1, "cannot read the file: No such file or directory")])


def test_a_directory_is_a_problem_not_a_traceback(tmp_path: Path) -> None:
    assert_problems(tmp_path, [(1, 1, "cannot read the file: Is a directory")])


REST = b"actors: {}\nsupervision: {children: []}\n"
"""The rest of a valid topology, for cases that break only the first line."""

INLINE: dict[str, tuple[bytes, list[tuple[int, int, str]]]] = {
    "empty": (b"", [(1, 1, "the file is empty")]),
    "only comments": (b"# nothing here\n\n", [(1, 1, "the file is empty")]),
    "a list": (b"- site: demo\n", [(1, 1, "the top level must be a mapping, got a list")]),
    "a word": (b"hello\n", [(1, 1, "the top level must be a mapping, got text")]),
    "null": (b"~\n", [(1, 1, "the top level must be a mapping, got nothing")]),
    "not UTF-8": (b"site: d\xe9mo\n", [(1, 8, "not UTF-8 text (byte 0xe9)")]),
    "NUL character": (b"site: demo\nactors: {}\x00\n", [(2, 11, "invalid YAML: character #x0000 is not allowed")]),
    "two documents": (b"site: a\n---\nsite: b\n", [(2, 1, "invalid YAML: but found another document")]),
    "bad actor name": (
        b"site: s\nactors:\n  9lives: {type: Ticker}\nsupervision: {children: []}\n",
        [(3, 3, "invalid actor name '9lives'"), (3, 3, "actor '9lives' is not in the supervision tree")],
    ),
    # A value YAML cannot read is reported once; the checks that would fail on it stay quiet.
    "non-text key": (b"site: s\n1: x\n" + REST, [(2, 1, "a key must be text, got an integer")]),
    "merge key": (b"site: s\n<<: {a: 1}\n" + REST, [(2, 1, "merge keys (<<) are not supported")]),
    "alias loop": (b"site: &x [*x]\n" + REST, [(1, 7, "this alias refers to a value that contains it")]),
    "unknown tag": (b"site: !shout demo\n" + REST, [(1, 7, "tag '!shout'")]),
    "collection tag": (b"site: !!set {a}\n" + REST, [(1, 7, "unsupported YAML tag tag:yaml.org,2002:set")]),
    "bad int": (b"site: !!int 0x\n" + REST, [(1, 7, "cannot read '0x'")]),
    "date": (b"site: 2024-01-01\n" + REST, [(1, 7, "YAML reads '2024-01-01' as date; quote it")]),
    "empty site": (b"site: ''\n" + REST, [(1, 7, "site: '' is not a non-empty name")]),
    "empty module path": (
        b"site: s\nactors:\n  a: {type: ':Thing'}\nsupervision: {children: [a]}\n",
        [(3, 13, "actor type ':Thing': cannot import :Thing")],
    ),
    "not a behaviour": (
        b"site: s\nactors:\n  a: {type: 'os:getcwd'}\nsupervision: {children: [a]}\n",
        [(3, 13, "is not a charger Behaviour")],
    ),
    "bad child entry": (
        b"site: s\nactors: {}\nsupervision:\n  children: [[a]]\n",
        [(4, 14, "supervision.children[0]: expected an actor name, {actor: NAME}")],
    ),
    "group without children": (
        b"site: s\nactors: {}\nsupervision:\n  children: [{supervisor: g}]\n",
        [(4, 14, "supervision.children[0]: missing required key 'children'")],
    ),
    "connection value": (
        b"site: s\nactors:\n  c: {type: Counter, connections: {source: 3}}\nsupervision: {children: [c]}\n",
        [(3, 44, "actors.c.connections.source: expected an actor name or a list of them, got an integer")],
    ),
}


@pytest.mark.parametrize(("name", "case"), INLINE.items(), ids=list(INLINE))
def test_bad_input_is_a_located_problem(
    tmp_path: Path, name: str, case: tuple[bytes, list[tuple[int, int, str]]]
) -> None:
    text, expected = case
    path = tmp_path / "topology.yaml"
    path.write_bytes(text)
    assert_problems(path, expected)


def test_aliases_cannot_expand_without_bound(tmp_path: Path) -> None:
    lines = ["site: s", "a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [*a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}]" for i in range(1, 12)]
    path = tmp_path / "laughs.yaml"
    path.write_text("\n".join(lines) + "\n")
    assert any("too many values after expanding aliases" in p.message for p in problems_of(path))


# --- nothing but TopologyError, whatever the file holds -------------------------------------------

SITE_LINES = SITE.read_text(encoding="utf-8").splitlines(keepends=True)


@st.composite
def mutated_site(draw: st.DrawFn) -> bytes:
    """The demo site with a few lines deleted, repeated, swapped or with random characters put in."""
    lines = list(SITE_LINES)
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(lines) - 1))
        op = draw(st.sampled_from(["delete", "repeat", "swap", "insert"]))
        if op == "delete" and len(lines) > 1:
            del lines[i]
        elif op == "repeat":
            lines.insert(i, lines[i])
        elif op == "swap":
            j = draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
        else:
            at = draw(st.integers(0, len(lines[i])))
            lines[i] = lines[i][:at] + draw(st.text(max_size=8)) + lines[i][at:]
    return "".join(lines).encode("utf-8")


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz") / "topology.yaml"


def load_never_crashes(path: Path, data: bytes) -> None:
    path.write_bytes(data)
    try:
        load_topology(path)
    except TopologyError as exc:
        assert exc.problems
        for problem in exc.problems:
            assert problem.file == str(path)
            assert problem.line >= 1
            assert problem.col >= 1
            assert problem.message
            assert "\n" not in problem.message


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=400) | st.text(max_size=400).map(lambda t: t.encode("utf-8")))
def test_random_bytes_only_ever_raise_topology_error(scratch: Path, data: bytes) -> None:
    load_never_crashes(scratch, data)


@settings(max_examples=300, deadline=None)
@given(data=mutated_site())
def test_mutated_site_only_ever_raises_topology_error(scratch: Path, data: bytes) -> None:
    load_never_crashes(scratch, data)


# --- structure-aware: small topologies with every part possibly wrong (docs/robustness.md) ---------

# JSON is YAML: writing the drafts with json.dumps keeps each case small and fast to load, so the
# loader's checks (not the YAML scanner) get the thousands of cases.
_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=6)
_values = _scalars | st.lists(_scalars, max_size=2) | st.dictionaries(st.text(max_size=4), _scalars, max_size=2)
_NAMES = ["ticker", "counter", "t-2", "9lives", "", "root"]
_names = st.sampled_from(_NAMES) | st.text(max_size=5)
_refs = st.sampled_from([*_NAMES, "ghost"])
_TYPES = ["Ticker", "Counter", "tests.support.probes:Probe", "NoSuchType", "os:getcwd", ":x", "a.b:C"]
_entry = st.fixed_dictionaries(
    {"type": st.sampled_from(_TYPES) | _values},
    optional={
        "config": st.dictionaries(
            st.sampled_from(["period_s", "port", "init_delay"]) | st.text(max_size=4), _values, max_size=3
        )
        | _values,
        "connections": st.dictionaries(
            st.sampled_from(["source", "peer"]), _refs | st.lists(_refs, max_size=3) | _values, max_size=2
        )
        | _values,
        "extra": _values,
    },
)
_child = _refs | st.fixed_dictionaries({"actor": _refs}, optional={"restart": _scalars, "shutdown": _scalars})
_group = st.fixed_dictionaries(
    {"supervisor": _names, "children": st.lists(_child, max_size=3)},
    optional={"strategy": st.sampled_from(["one_for_one", "rest_for_one", "bogus"]), "intensity": _scalars},
)
_sections = {
    "site": st.sampled_from(["s", ""]) | _scalars,
    "actors": st.dictionaries(_names, _entry | _values, max_size=4),
    "supervision": st.fixed_dictionaries({"children": st.lists(_child | _group | _values, max_size=4)}) | _values,
    "system": st.fixed_dictionaries({}, optional={"admin_port": _scalars, "bind": _scalars, "state_dir": _scalars}),
}


def small_topologies() -> st.SearchStrategy[bytes]:
    """Topologies of a few actors where any part may be wrong: names, types, config, wiring, the tree."""
    required = {k: _sections[k] for k in ("site", "actors", "supervision")}
    return st.fixed_dictionaries(required, optional={"system": _sections["system"], "unknown": _values}).map(
        lambda doc: json.dumps(doc).encode()
    )


@PURE
@given(data=small_topologies())
@example(data=json.dumps({"site": "s", "actors": {"a": {"type": "Ticker", "config": {"period_s": 1e400}}}}).encode())
def test_any_small_topology_loads_or_lists_located_problems(scratch: Path, data: bytes) -> None:
    load_never_crashes(scratch, data)


@settings(max_examples=200, deadline=None)  # the valid space here is small: a few hundred cover it
@given(
    periods=st.lists(st.floats(0.01, 3600), min_size=1, max_size=4),
    strategy=st.sampled_from(["one_for_one", "one_for_all", "rest_for_one"]),
    admin_port=st.integers(1024, 65535),
)
def test_a_valid_topology_loads_as_written(scratch: Path, periods: list[float], strategy: str, admin_port: int) -> None:
    actors = {f"t{i}": {"type": "Ticker", "config": {"period_s": p}} for i, p in enumerate(periods)}
    doc = {
        "site": "fuzz",
        "system": {"admin_port": admin_port},
        "actors": {**actors, "counter": {"type": "Counter", "connections": {"source": sorted(actors)}}},
        "supervision": {"strategy": strategy, "children": [*actors, "counter"]},
    }
    scratch.write_text(json.dumps(doc))
    topology = load_topology(scratch)
    assert (topology.site, topology.admin_port, topology.root.flags.strategy.value) == ("fuzz", admin_port, strategy)
    assert [a.config["period_s"] for a in topology.actors.values() if a.type == "Ticker"] == periods
    assert topology.actors["counter"].connections["source"] == tuple(sorted(actors))
