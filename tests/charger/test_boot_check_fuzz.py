"""Fuzzed topology files through `python -m charger.boot FILE --check`'s entry point: exit 0 with "ok",
or exit 2 with nothing but ``file:line:col: message`` lines on stderr (never a traceback), and a good
file still checks clean afterwards."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from charger.boot import main
from tests.support.fuzz import live
from tests.test_topology import SITE, mutated_site, small_topologies

_LOCATED = re.compile(r"^(?P<file>.+):(?P<line>[1-9]\d*):(?P<col>[1-9]\d*): (?P<message>\S.*)$")


def check(path: Path) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(path), "--check"])
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("check") / "topology.yaml"


@live(150)
@given(data=small_topologies() | mutated_site() | st.binary(max_size=200))
def test_check_answers_ok_or_located_problems_only(scratch: Path, data: bytes) -> None:
    scratch.write_bytes(data)
    code, out, err = check(scratch)
    assert code in (0, 2), (code, out, err)
    if code == 0:
        assert out.startswith(f"{scratch}: ok: site ") and not err
        return
    assert not out and err.endswith("\n")
    for line in err.splitlines():
        located = _LOCATED.match(line)
        assert located is not None, f"not a file:line:col: message line: {line!r}"
        assert located["file"] == str(scratch)


def test_a_good_file_still_checks_clean_after_the_fuzzing(scratch: Path) -> None:
    scratch.write_bytes(SITE.read_bytes())
    code, out, err = check(scratch)
    assert (code, err) == (0, "") and "ok: site 'demo', 3 actors" in out
