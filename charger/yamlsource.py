"""A YAML file read as plain data that remembers where each value was written, for located error messages.

PyYAML's loaders keep the last of two duplicate keys without a word and forget where values were
written, so `YamlSource` composes the file into YAML nodes and walks them itself; only scalars go
through PyYAML's safe constructors (so ``1.0`` is a float and ``yes`` a boolean, as in YAML 1.1).
Every way a file can fail to be read (missing, not UTF-8, bad YAML, an alias loop, a date where text
was meant ...) becomes a `Problem` at a line and column; nothing else is raised.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

__all__ = ["Path", "Pos", "Problem", "YamlSource", "describe", "dotted", "prefix", "short"]

Path = tuple[str | int, ...]
"""Keys and list indices from the document's top to a value."""
Pos = tuple[int, int]
"""1-based line and column."""

_MAX_VALUES = 100_000
"""A few nested aliases can expand to billions of values; stop walking well before that."""
_COLLECTION_TAGS = ("tag:yaml.org,2002:map", "tag:yaml.org,2002:seq")
_BAD = object()
"""What an unreadable scalar becomes once it is reported, so that it is not reported again as a key."""


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a file; `line` and `col` are 1-based."""

    file: str
    line: int
    col: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}: {self.message}"


class YamlSource:
    """The file as plain data, with where each value and each mapping key was written."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.problems: list[Problem] = []
        self._values: dict[Path, Pos] = {}
        self._keys: dict[Path, Pos] = {}
        self._budget = _MAX_VALUES
        self._open: set[int] = set()
        self._unreadable: set[Pos] = set()
        self._scalars = yaml.SafeLoader("")

    def error(self, pos: Pos, message: str, *, unreadable: bool = False) -> None:
        """Report a problem, unless it is a check of a value already reported as unreadable."""
        if unreadable:
            self._unreadable.add(pos)
        elif pos in self._unreadable:
            return
        # Editors and CI read one problem per line.
        self.problems.append(Problem(self.file, pos[0], pos[1], " ".join(message.splitlines())))

    def value_pos(self, path: Path) -> Pos | None:
        return self._values.get(path)

    def at(self, path: Path) -> Pos:
        """Where the value at `path` is written or, if it is not, its nearest written ancestor."""
        while path and path not in self._values:
            path = path[:-1]
        return self._values.get(path, (1, 1))

    def key_at(self, path: Path) -> Pos:
        return self._keys.get(path) or self.at(path)

    def parse(self) -> yaml.Node | None:
        text = self._read()
        if text is None:
            return None
        try:
            node = yaml.compose(text, Loader=yaml.SafeLoader)
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            self.error((mark.line + 1, mark.column + 1) if mark else (1, 1), f"invalid YAML: {_yaml_reason(exc)}")
            return None
        except yaml.reader.ReaderError as exc:
            char = f"#x{exc.character:04x}" if isinstance(exc.character, int) else repr(exc.character)
            self.error(_text_pos(text[: exc.position]), f"invalid YAML: character {char} is not allowed")
            return None
        except RecursionError:
            self.error((1, 1), "invalid YAML: nested too deeply")
            return None
        if node is None:
            self.error((1, 1), "the file is empty")
        return node

    def _read(self) -> str | None:
        try:
            with open(self.file, "rb") as f:
                data = f.read()
        except (OSError, ValueError) as exc:  # ValueError: a path with a NUL byte
            self.error((1, 1), f"cannot read the file: {getattr(exc, 'strerror', None) or exc}")
            return None
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as exc:
            where = _text_pos(data[: exc.start].decode("utf-8"))
            self.error(where, f"the file is not UTF-8 text (byte {data[exc.start]:#04x})")
            return None

    def convert(self, node: yaml.Node, path: Path) -> Any:
        """The node as dicts, lists and scalars, recording positions; bad scalars and keys become None."""
        self._values[path] = _mark(node)
        self._budget -= 1
        if self._budget == 0:
            self.error(_mark(node), f"too many values after expanding aliases (more than {_MAX_VALUES})")
        if self._budget <= 0:
            return None
        if isinstance(node, yaml.ScalarNode):
            value = self._scalar(node)
            return None if value is _BAD else value
        if id(node) in self._open:
            self.error(_mark(node), "this alias refers to a value that contains it", unreadable=True)
            return None
        if node.tag not in _COLLECTION_TAGS:
            self.error(_mark(node), f"unsupported YAML tag {node.tag}", unreadable=True)
            return None
        self._open.add(id(node))
        try:
            if isinstance(node, yaml.MappingNode):
                return self._mapping(node, path)
            return [self.convert(item, (*path, i)) for i, item in enumerate(node.value)]
        finally:
            self._open.discard(id(node))

    def _mapping(self, node: yaml.MappingNode, path: Path) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            pos = _mark(key_node)
            key = self._scalar(key_node) if isinstance(key_node, yaml.ScalarNode) else key_node
            if key is _BAD:
                continue
            if not isinstance(key, str):
                self.error(pos, f"{prefix(path)}a key must be text, got {describe(key)} (quote it)")
                continue
            if key in out:
                self.error(pos, f"{prefix(path)}duplicate key {key!r} (first at line {self._keys[(*path, key)][0]})")
                continue
            self._keys[(*path, key)] = pos
            out[key] = self.convert(value_node, (*path, key))
        return out

    def _scalar(self, node: yaml.ScalarNode) -> Any:
        if node.tag == "tag:yaml.org,2002:merge":
            self.error(_mark(node), "merge keys (<<) are not supported", unreadable=True)
            return _BAD
        try:
            value = self._scalars.construct_object(node)
        except Exception as exc:  # noqa: BLE001 - PyYAML's constructors raise ValueError, AttributeError ...
            self.error(_mark(node), f"cannot read {short(node.value)}: {_yaml_reason(exc)}", unreadable=True)
            return _BAD
        if value is None or isinstance(value, str | int | float):
            return value
        # Dates and binary would not survive msgpack or JSON schema checks the way a user expects.
        message = f"YAML reads {short(node.value)} as {type(value).__name__}; quote it if it is text"
        self.error(_mark(node), message, unreadable=True)
        return _BAD


def _mark(node: yaml.Node) -> Pos:
    return node.start_mark.line + 1, node.start_mark.column + 1


def _text_pos(before: str) -> Pos:
    """Line and column just after `before`, the text preceding some offset."""
    return before.count("\n") + 1, len(before) - (before.rfind("\n") + 1) + 1


def _yaml_reason(exc: Exception) -> str:
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem:
        context = f" ({exc.context})" if exc.context else ""
        return f"{exc.problem}{context}"
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def dotted(path: Path) -> str:
    """A path as users read it: ``actors.ticker.config``, ``supervision.children[1]``."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else part
    return text or "the top level"


def prefix(path: Path) -> str:
    return f"{dotted(path)}: " if path else ""


def describe(value: Any) -> str:
    """What kind of value this is, in words for a message ('a list', 'nothing')."""
    kinds = {dict: "a mapping", list: "a list", str: "text", bool: "a boolean", int: "an integer", float: "a number"}
    return "nothing" if value is None else kinds.get(type(value), type(value).__name__)


def short(value: Any) -> str:
    """The repr of a value, cut so that a huge one cannot flood a message."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
