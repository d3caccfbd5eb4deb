"""OCPP 1.6 reservations as pure rules: ReserveNow answers, which connectors honour which reservations
(connector 0 keeps one free), who may use one (idTag or parent), what a start ends, and cancellation."""

from __future__ import annotations

import pytest
from charger.protocols.ocpp_reservation import (
    CancelStatus,
    ConnectorFacts,
    Reservation,
    ReserveStatus,
    admits,
    consumed_by,
    guards,
    plan_cancel,
    plan_reserve,
    terminated,
)
from charger.protocols.ocpp_status import ChargePointStatus
from hypothesis import given
from hypothesis import strategies as st

S = ChargePointStatus
NOW = 1_000_000.0
FREE = ConnectorFacts(S.AVAILABLE)
WAITING = ConnectorFacts(S.PREPARING)  # a car plugged in, no token yet
BUSY = ConnectorFacts(S.CHARGING, in_session=True)


def res(
    rid: int, connector: int, tag: str = "TAG1", parent: str | None = None, until: float = NOW + 600
) -> Reservation:
    return Reservation(rid, connector, tag, until, parent)


def reserve(
    request: Reservation,
    held: list[Reservation] | None = None,
    connectors: dict[int, ConnectorFacts] | None = None,
    *,
    operative: bool = True,
    zero: bool = True,
) -> ReserveStatus:
    plan = plan_reserve(
        request,
        held or [],
        connectors if connectors is not None else {1: FREE, 2: FREE},
        station_operative=operative,
        connector_zero_supported=zero,
        now=NOW,
    )
    return plan.status


def test_from_wire_reads_the_expiry_date_and_the_parent() -> None:
    payload = {
        "connectorId": 2,
        "expiryDate": "2026-01-01T10:00:00Z",
        "idTag": "ABC",
        "parentIdTag": "GROUP",
        "reservationId": 7,
    }
    r = Reservation.from_wire(payload)
    assert (r.reservation_id, r.connector_id, r.id_tag, r.parent_id_tag) == (7, 2, "ABC", "GROUP")
    assert r.expires_at == 1767261600.0
    assert Reservation.from_record(r.to_record()) == r
    with pytest.raises(ValueError):
        Reservation.from_wire({**payload, "expiryDate": "tomorrow"})


@pytest.mark.parametrize(
    ("facts", "status"),
    [
        (FREE, ReserveStatus.ACCEPTED),
        (WAITING, ReserveStatus.OCCUPIED),
        (BUSY, ReserveStatus.OCCUPIED),
        (ConnectorFacts(S.FINISHING), ReserveStatus.OCCUPIED),
        (ConnectorFacts(S.FAULTED), ReserveStatus.FAULTED),
        (ConnectorFacts(S.UNAVAILABLE), ReserveStatus.UNAVAILABLE),
    ],
)
def test_a_connector_must_be_available(facts: ConnectorFacts, status: ReserveStatus) -> None:
    assert reserve(res(1, 1), connectors={1: facts, 2: FREE}) is status


def test_reserved_already_is_occupied_even_for_the_same_id_tag() -> None:
    assert reserve(res(2, 1), [res(1, 1)]) is ReserveStatus.OCCUPIED
    assert reserve(res(2, 1, "OTHER"), [res(1, 1)]) is ReserveStatus.OCCUPIED
    assert reserve(res(2, 2), [res(1, 1)]) is ReserveStatus.ACCEPTED


def test_the_same_reservation_id_replaces_the_reservation() -> None:
    plan = plan_reserve(
        res(1, 1, "NEW"), [res(1, 1)], {1: FREE}, station_operative=True, connector_zero_supported=True, now=NOW
    )
    assert plan.status is ReserveStatus.ACCEPTED and plan.replaces == res(1, 1)
    moved = plan_reserve(
        res(1, 2), [res(1, 1)], {1: FREE, 2: FREE}, station_operative=True, connector_zero_supported=True, now=NOW
    )
    assert moved.status is ReserveStatus.ACCEPTED and moved.replaces == res(1, 1)
    assert reserve(res(1, 2), [res(1, 1), res(2, 2)]) is ReserveStatus.OCCUPIED  # moving onto another's


def test_rejected_and_unavailable() -> None:
    assert reserve(res(1, 3)) is ReserveStatus.REJECTED  # no such connector
    assert reserve(res(1, 1, until=NOW - 1)) is ReserveStatus.REJECTED
    assert reserve(res(1, 1, tag="X" * 21)) is ReserveStatus.REJECTED
    assert reserve(res(1, 0), zero=False) is ReserveStatus.REJECTED
    assert reserve(res(1, 1), operative=False) is ReserveStatus.UNAVAILABLE


def test_connector_zero() -> None:
    assert reserve(res(1, 0)) is ReserveStatus.ACCEPTED
    assert reserve(res(1, 0), connectors={1: BUSY, 2: FREE}) is ReserveStatus.ACCEPTED
    assert reserve(res(1, 0), connectors={1: BUSY, 2: BUSY}) is ReserveStatus.OCCUPIED
    faulted, unavailable = ConnectorFacts(S.FAULTED), ConnectorFacts(S.UNAVAILABLE)
    assert reserve(res(1, 0), connectors={1: faulted, 2: faulted}) is ReserveStatus.FAULTED
    assert reserve(res(1, 0), connectors={1: unavailable, 2: unavailable}) is ReserveStatus.UNAVAILABLE
    # two connectors: one reservation on 0 and one on connector 1 fit; a second on 0 does not
    assert reserve(res(2, 1), [res(1, 0)]) is ReserveStatus.ACCEPTED
    assert reserve(res(3, 0), [res(1, 0), res(2, 1)]) is ReserveStatus.OCCUPIED
    assert reserve(res(2, 0), [res(1, 0)]) is ReserveStatus.ACCEPTED
    assert reserve(res(3, 1), [res(1, 0), res(2, 0)]) is ReserveStatus.OCCUPIED  # both kept for them


def test_guards_hold_a_connector_back_only_when_needed() -> None:
    r1, z = res(1, 1), res(2, 0, "ZERO")
    assert guards([r1], {1: FREE, 2: FREE}, NOW) == {1: (r1,)}
    assert guards([z], {1: FREE, 2: FREE}, NOW) == {}  # two free for one reservation: nothing held yet
    assert guards([z], {1: BUSY, 2: FREE}, NOW) == {2: (z,)}  # the last free one is kept
    assert guards([z], {1: BUSY, 2: WAITING}, NOW) == {2: (z,)}  # a car waiting there does not take it
    assert guards([r1, z], {1: FREE, 2: FREE}, NOW) == {1: (r1,), 2: (z,)}
    assert guards([res(1, 1, until=NOW)], {1: FREE}, NOW) == {}  # expired
    assert guards([r1], {2: FREE}, NOW) == {1: (r1,)}  # held even while its connector is not seen


@pytest.mark.parametrize(
    ("tag", "parent", "ok"),
    [
        ("TAG1", None, True),
        ("tag1", None, True),  # IdTokens compare case-insensitively
        ("OTHER", None, False),
        ("OTHER", "GROUP", True),
        ("OTHER", "group", True),
        ("GROUP", None, True),  # the group's own idTag
        ("OTHER", "ELSE", False),
    ],
)
def test_who_may_use_a_reservation(tag: str, parent: str | None, ok: bool) -> None:
    assert admits(res(1, 1, parent="GROUP"), tag, parent) is ok
    assert admits(res(1, 1), "OTHER", "TAG1") is True  # the reserved idTag is the incoming one's parent


def test_a_start_ends_the_connectors_reservation_or_one_on_connector_zero() -> None:
    r1, z = res(1, 1, "A", parent="G"), res(2, 0, "B")
    assert consumed_by([r1, z], 1, "A", None, NOW) == r1
    assert consumed_by([r1, z], 1, "X", "G", NOW) == r1
    assert consumed_by([r1, z], 2, "B", None, NOW) == z
    assert consumed_by([r1, z], 2, "A", None, NOW) is None  # a reservation of connector 1 is not used on 2
    assert consumed_by([res(1, 1, until=NOW - 1)], 1, "TAG1", None, NOW) is None


def test_cancel_and_termination() -> None:
    assert plan_cancel(1, [res(1, 1)]) is CancelStatus.ACCEPTED
    assert plan_cancel(9, [res(1, 1)]) is CancelStatus.REJECTED
    unavailable, faulted = ConnectorFacts(S.UNAVAILABLE), ConnectorFacts(S.FAULTED)
    held = [res(1, 1), res(2, 2), res(3, 0)]
    assert terminated(held, {1: unavailable, 2: faulted}, station_operative=True) == [res(1, 1)]
    assert terminated(held, {1: unavailable, 2: unavailable}, station_operative=True) == held
    assert terminated(held, {1: FREE, 2: FREE}, station_operative=False) == held


_FACTS = st.sampled_from([FREE, WAITING, BUSY, ConnectorFacts(S.FAULTED), ConnectorFacts(S.UNAVAILABLE)])


@given(
    connectors=st.dictionaries(st.integers(1, 4), _FACTS, min_size=1, max_size=4),
    requests=st.lists(st.tuples(st.integers(1, 6), st.integers(0, 4)), max_size=8),
)
def test_accepted_reservations_can_always_be_honoured(
    connectors: dict[int, ConnectorFacts], requests: list[tuple[int, int]]
) -> None:
    """Whatever the CSMS asks, the accepted reservations never need more free connectors than there
    are: each connector-0 reservation has a free connector of its own, and no connector is held for
    two reservations of specific connectors."""
    held: dict[int, Reservation] = {}
    for rid, connector in requests:
        request = res(rid, connector, f"T{rid}")
        plan = plan_reserve(
            request, held.values(), connectors, station_operative=True, connector_zero_supported=True, now=NOW
        )
        if plan.status is ReserveStatus.ACCEPTED:
            held[rid] = request
    specific = [r.connector_id for r in held.values() if r.connector_id != 0]
    anywhere = [r for r in held.values() if r.connector_id == 0]
    assert len(specific) == len(set(specific))
    free = [c for c, f in connectors.items() if f.free and c not in specific]
    assert len(anywhere) <= len(free)
    kept = guards(held.values(), connectors, NOW)
    for connector in specific:
        assert kept[connector] == (held[next(r for r in held if held[r].connector_id == connector)],)
