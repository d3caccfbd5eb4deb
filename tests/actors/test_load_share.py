"""The fuse split: never over the fuse, never a current PWM cannot signal, first come keeps power."""

from __future__ import annotations

from charger.actors.load_share import share_fuse
from hypothesis import given
from hypothesis import strategies as st


def test_examples() -> None:
    assert share_fuse(32, ["a", "b"], []) == {"a": 6.0, "b": 6.0}
    assert share_fuse(32, ["a", "b"], ["a"]) == {"a": 26.0, "b": 6.0}
    assert share_fuse(32, ["a", "b"], ["b", "a"]) == {"a": 16.0, "b": 16.0}
    assert share_fuse(10, ["a", "b"], ["b", "a"]) == {"a": 0.0, "b": 10.0}  # b came first


@given(
    fuse=st.floats(0, 500),
    n=st.integers(1, 20),
    data=st.data(),
)
def test_never_over_the_fuse(fuse: float, n: int, data: st.DataObject) -> None:
    names = [f"c{i}" for i in range(n)]
    active = data.draw(st.permutations(names).map(lambda p: p[: data.draw(st.integers(0, n))]))
    grants = share_fuse(fuse, names, list(active))
    assert set(grants) == set(names)
    assert sum(grants.values()) <= fuse + 1e-9
    assert all(g == 0 or g >= 6 for g in grants.values())
