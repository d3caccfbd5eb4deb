"""OCPP 1.6 local authorization: SendLocalList Full/Differential with versions against a model, the
authorization cache's expiry and eviction, and the accept / ask / reject decision of §3.5."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jsonschema
import ocpp.v16
import ocpp.v16.enums as lib_enums
import pytest
from charger.protocols.ocpp_config import OcppConfiguration, StationFacts, standard_keys
from charger.protocols.ocpp_local_auth import (
    AuthEntry,
    AuthorizationCache,
    AuthorizationStatus,
    AuthSettings,
    AuthSource,
    DecisionReason,
    IdTagInfo,
    ListLimits,
    LocalAuthList,
    UpdateStatus,
    Verdict,
    decide,
    remember_answer,
)
from hypothesis import given
from hypothesis import strategies as st

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
ACCEPTED = IdTagInfo(status=AuthorizationStatus.ACCEPTED)
BLOCKED = IdTagInfo(status=AuthorizationStatus.BLOCKED)
EXPIRED_YESTERDAY = IdTagInfo(status=AuthorizationStatus.ACCEPTED, expiry_date=NOW - timedelta(days=1))
LIMITS = ListLimits(max_length=5, send_max_length=4)


def data(tag: str, status: str | None = "Accepted", **extra: Any) -> dict[str, Any]:
    return {"idTag": tag} if status is None else {"idTag": tag, "idTagInfo": {"status": status, **extra}}


def accepted_update(lst: LocalAuthList, version: int, kind: str, items: list[dict[str, Any]]) -> None:
    update = lst.plan(version, kind, items, LIMITS)
    assert update.status is UpdateStatus.ACCEPTED, update.reason
    lst.apply(update)


# --- idTagInfo -----------------------------------------------------------------------------------------


def test_id_tag_info_reads_both_spellings_and_writes_the_wire_form() -> None:
    camel = IdTagInfo.from_wire({"status": "Accepted", "expiryDate": "2025-03-02T00:00:00Z", "parentIdTag": "FLEET"})
    snake = IdTagInfo.from_wire(
        {"status": "Accepted", "expiry_date": "2025-03-02T00:00:00+00:00", "parent_id_tag": "FLEET"}
    )
    assert camel == snake and camel.parent_id_tag == "FLEET"
    assert camel.to_wire() == {"status": "Accepted", "expiryDate": "2025-03-02T00:00:00Z", "parentIdTag": "FLEET"}
    schema = json.loads((Path(ocpp.v16.__file__).parent / "schemas" / "AuthorizeResponse.json").read_text())
    jsonschema.validate({"idTagInfo": camel.to_wire()}, schema)
    assert {s.value for s in AuthorizationStatus} == {s.value for s in lib_enums.AuthorizationStatus}
    assert {s.value for s in UpdateStatus} == {s.value for s in lib_enums.UpdateStatus}


def test_an_accepted_entry_past_its_expiry_date_is_expired() -> None:
    assert EXPIRED_YESTERDAY.status_at(NOW) is AuthorizationStatus.EXPIRED
    assert EXPIRED_YESTERDAY.status_at(NOW - timedelta(days=2)) is AuthorizationStatus.ACCEPTED
    assert IdTagInfo(status=AuthorizationStatus.BLOCKED, expiry_date=NOW).status_at(NOW) is AuthorizationStatus.BLOCKED


# --- SendLocalList ---------------------------------------------------------------------------------------


def test_full_update_replaces_the_list_and_sets_the_version() -> None:
    lst = LocalAuthList()
    assert lst.version == 0
    accepted_update(lst, 3, "Full", [data("A"), data("b", "Blocked")])
    accepted_update(lst, 2, "Full", [data("C", expiryDate="2030-01-01T00:00:00Z", parentIdTag="P")])  # any version
    assert lst.version == 2 and [e.id_tag for e in lst.entries()] == ["C"]
    entry = lst.get("c")  # IdToken is case-insensitive
    assert entry is not None and entry.info.parent_id_tag == "P"
    accepted_update(lst, 0, "Full", [])  # version 0: the empty list
    assert len(lst) == 0 and lst.version == 0


def test_differential_update_adds_replaces_deletes_and_needs_a_newer_version() -> None:
    lst = LocalAuthList()
    accepted_update(lst, 1, "Full", [data("A"), data("B")])
    accepted_update(lst, 5, "Differential", [data("a", "Blocked"), data("B", None), data("C")])
    assert lst.version == 5 and {e.id_tag for e in lst.entries()} == {"a", "C"}
    for stale in (5, 4):
        update = lst.plan(stale, "Differential", [data("D")], LIMITS)
        assert update.status is UpdateStatus.VERSION_MISMATCH
    accepted_update(lst, 6, "Differential", [])
    assert lst.version == 6 and len(lst) == 2


@pytest.mark.parametrize(
    "version, kind, items, limits",
    [
        (2, "Full", [data("A"), data("B", None)], LIMITS),  # a full list needs idTagInfo everywhere
        (2, "Full", [data("A"), data("a")], LIMITS),  # the same idTag twice
        (2, "Full", [data(f"T{i}") for i in range(5)], LIMITS),  # more than SendLocalListMaxLength
        (2, "Full", [data(f"T{i}") for i in range(4)], ListLimits(max_length=3, send_max_length=4)),
        (2, "Differential", [data("C"), data("D"), data("E"), data("F")], LIMITS),  # 2 + 4 > LocalAuthListMaxLength
        (2, "Full", [data("X" * 21)], LIMITS),
        (2, "Full", [data("A", "Maybe")], LIMITS),
        (2, "Full", [data("A", expiryDate="tomorrow")], LIMITS),
        (2, "Sideways", [], LIMITS),
        (-1, "Full", [], LIMITS),
        (0, "Full", [data("A")], LIMITS),
    ],
)
def test_bad_updates_fail_and_change_nothing(
    version: int, kind: str, items: list[dict[str, Any]], limits: ListLimits
) -> None:
    lst = LocalAuthList()
    accepted_update(lst, 1, "Full", [data("A"), data("B")])
    update = lst.plan(version, kind, items, limits)
    assert update.status is UpdateStatus.FAILED and update.reason
    lst.apply(update)
    assert lst.version == 1 and {e.id_tag for e in lst.entries()} == {"A", "B"}


def test_without_the_profile_every_update_is_not_supported() -> None:
    update = LocalAuthList().plan(1, "Full", [data("A")], ListLimits(supported=False))
    assert update.status is UpdateStatus.NOT_SUPPORTED


def test_snake_case_authorization_data_from_the_ocpp_library() -> None:
    lst = LocalAuthList()
    items = [{"id_tag": "A", "id_tag_info": {"status": "Accepted", "parent_id_tag": "P"}}]
    accepted_update(lst, 1, "Full", items)
    entry = lst.get("A")
    assert entry is not None and entry.info.parent_id_tag == "P"


tags = st.sampled_from(["A", "a", "B", "C", "c", "D", "E", "F"])
statuses = st.sampled_from([None, "Accepted", "Blocked", "Expired", "Invalid", "ConcurrentTx"])
updates = st.tuples(
    st.integers(-1, 12),
    st.sampled_from(["Full", "Differential"]),
    st.lists(st.tuples(tags, statuses), max_size=5),
)


@given(st.lists(updates, max_size=15))
def test_updates_follow_a_model_of_the_list(sequence: list[tuple[int, str, list[tuple[str, str | None]]]]) -> None:
    lst = LocalAuthList()
    model: dict[str, str] = {}
    model_version = 0
    for version, kind, pairs in sequence:
        items = [data(tag, status) for tag, status in pairs]
        folded = [tag.casefold() for tag, _ in pairs]
        deletes = {t.casefold() for t, s in pairs if s is None}
        upserts = {t.casefold(): s for t, s in pairs if s is not None}
        if len(pairs) > LIMITS.send_max_length or len(set(folded)) < len(folded):
            expected, new = UpdateStatus.FAILED, None
        elif kind == "Full":
            bad = deletes or version < 0 or (version == 0 and upserts)
            expected, new = (UpdateStatus.FAILED, None) if bad else (UpdateStatus.ACCEPTED, dict(upserts))
        elif version <= model_version:
            expected, new = UpdateStatus.VERSION_MISMATCH, None
        else:
            expected, new = UpdateStatus.ACCEPTED, {k: v for k, v in model.items() if k not in deletes} | upserts
        if new is not None and len(new) > LIMITS.max_length:
            expected, new = UpdateStatus.FAILED, None
        update = lst.plan(version, kind, items, LIMITS)
        assert update.status is expected
        lst.apply(update)
        if new is not None:
            model, model_version = new, version
        assert lst.version == model_version
        assert {e.id_tag.casefold(): e.info.status.value for e in lst.entries()} == model


# --- the authorization cache -----------------------------------------------------------------------------


def test_cache_updates_in_place_and_evicts_invalid_entries_first_then_the_oldest() -> None:
    cache = AuthorizationCache(3)
    for i, (tag, info) in enumerate([("A", ACCEPTED), ("B", BLOCKED), ("C", EXPIRED_YESTERDAY)]):
        cache.apply(cache.plan_remember(tag, info, NOW + timedelta(seconds=i)))
    update = cache.plan_remember("b", ACCEPTED, NOW)
    assert update.evict == ()  # already there: replaced, nothing evicted
    change = cache.plan_remember("D", ACCEPTED, NOW + timedelta(seconds=5))
    assert set(change.evict) == {"B", "C"}  # blocked and expired go, all of them
    cache.apply(change)
    assert {e.id_tag for e in cache.entries()} == {"A", "D"}
    cache.apply(cache.plan_remember("E", ACCEPTED, NOW + timedelta(seconds=6)))
    change = cache.plan_remember("F", ACCEPTED, NOW + timedelta(seconds=7))
    assert change.evict == ("A",)  # all valid: the oldest goes
    cache.apply(change)
    assert {e.id_tag for e in cache.entries()} == {"D", "E", "F"}
    cache.apply(cache.plan_clear())
    assert len(cache) == 0


@given(st.lists(st.tuples(tags, st.sampled_from(list(AuthorizationStatus)), st.integers(-3, 3)), max_size=30))
def test_cache_never_exceeds_its_capacity_and_keeps_the_latest_answer(
    answers: list[tuple[str, AuthorizationStatus, int]],
) -> None:
    cache = AuthorizationCache(3)
    for step, (tag, status, expiry_days) in enumerate(answers):
        now = NOW + timedelta(minutes=step)
        info = IdTagInfo(status=status, expiry_date=now + timedelta(days=expiry_days) if expiry_days else None)
        cache.apply(cache.plan_remember(tag, info, now))
        assert len(cache) <= 3
        entry = cache.get(tag)
        assert entry is not None and entry.info == info


def test_answers_are_cached_only_when_enabled_and_not_on_the_local_list() -> None:
    lst = LocalAuthList(1, [AuthEntry("LISTED", ACCEPTED)])
    cache = AuthorizationCache(10)
    on = AuthSettings(authorization_cache_enabled=True)
    assert remember_answer("listed", BLOCKED, settings=on, local_list=lst, cache=cache, now=NOW) is None
    off = AuthSettings(authorization_cache_enabled=False)
    assert remember_answer("X", ACCEPTED, settings=off, local_list=lst, cache=cache, now=NOW) is None
    assert remember_answer("X", ACCEPTED, settings=on, local_list=lst, cache=None, now=NOW) is None
    change = remember_answer("X", ACCEPTED, settings=on, local_list=lst, cache=cache, now=NOW)
    assert change is not None and change.put == AuthEntry("X", ACCEPTED, NOW)


# --- the decision ------------------------------------------------------------------------------------------


def settings(**flags: bool) -> AuthSettings:
    defaults = {
        "local_pre_authorize": False,
        "local_authorize_offline": False,
        "allow_offline_tx_for_unknown_id": False,
        "authorization_cache_enabled": True,
        "local_auth_list_enabled": True,
    }
    return AuthSettings(**(defaults | flags))


LISTED = LocalAuthList(1, [AuthEntry("GOOD", ACCEPTED), AuthEntry("BAD", BLOCKED), AuthEntry("OLD", EXPIRED_YESTERDAY)])
CACHE = AuthorizationCache(10, [AuthEntry("CACHED", ACCEPTED, NOW), AuthEntry("BAD", ACCEPTED, NOW)])
PRE = {"local_pre_authorize": True}
OFFLINE_OK = {"local_authorize_offline": True}
UNKNOWN_OK = {"allow_offline_tx_for_unknown_id": True}


@pytest.mark.parametrize(
    "tag, online, flags, verdict, reason",
    [
        ("GOOD", True, {}, Verdict.ASK_CSMS, DecisionReason.ONLINE),
        ("GOOD", True, PRE, Verdict.ACCEPT, DecisionReason.PRE_AUTHORIZED),
        ("CACHED", True, PRE, Verdict.ACCEPT, DecisionReason.PRE_AUTHORIZED),
        ("BAD", True, PRE, Verdict.ASK_CSMS, DecisionReason.ONLINE),
        ("OLD", True, PRE, Verdict.ASK_CSMS, DecisionReason.ONLINE),
        ("NEW", True, PRE, Verdict.ASK_CSMS, DecisionReason.ONLINE),
        ("GOOD", False, OFFLINE_OK, Verdict.ACCEPT, DecisionReason.OFFLINE_LOCAL_ENTRY),
        ("CACHED", False, OFFLINE_OK, Verdict.ACCEPT, DecisionReason.OFFLINE_LOCAL_ENTRY),
        ("GOOD", False, {}, Verdict.REJECT, DecisionReason.OFFLINE_UNKNOWN),
        ("GOOD", False, UNKNOWN_OK, Verdict.ACCEPT, DecisionReason.OFFLINE_UNKNOWN_ALLOWED),
        ("NEW", False, OFFLINE_OK, Verdict.REJECT, DecisionReason.OFFLINE_UNKNOWN),
        ("NEW", False, UNKNOWN_OK, Verdict.ACCEPT, DecisionReason.OFFLINE_UNKNOWN_ALLOWED),
        # Known but not valid is refused offline, even with unknown idTags allowed (§3.5.4).
        ("BAD", False, UNKNOWN_OK | OFFLINE_OK, Verdict.REJECT, DecisionReason.OFFLINE_NOT_VALID),
        ("OLD", False, UNKNOWN_OK, Verdict.REJECT, DecisionReason.OFFLINE_NOT_VALID),
        # The list disabled: BAD is known only to the cache, where it is valid.
        (
            "BAD",
            False,
            {"local_auth_list_enabled": False} | OFFLINE_OK,
            Verdict.ACCEPT,
            DecisionReason.OFFLINE_LOCAL_ENTRY,
        ),
        (
            "CACHED",
            False,
            {"authorization_cache_enabled": False} | OFFLINE_OK,
            Verdict.REJECT,
            DecisionReason.OFFLINE_UNKNOWN,
        ),
        ("", True, {}, Verdict.REJECT, DecisionReason.BAD_ID_TAG),
        ("X" * 21, False, UNKNOWN_OK, Verdict.REJECT, DecisionReason.BAD_ID_TAG),
    ],
)
def test_decision(tag: str, online: bool, flags: dict[str, bool], verdict: Verdict, reason: DecisionReason) -> None:
    decision = decide(tag.lower(), online=online, settings=settings(**flags), local_list=LISTED, cache=CACHE, now=NOW)
    assert (decision.verdict, decision.reason) == (verdict, reason)


def test_the_decision_names_its_source_and_the_status_in_effect() -> None:
    offline = settings(local_authorize_offline=True, allow_offline_tx_for_unknown_id=True)
    old = decide("OLD", online=False, settings=offline, local_list=LISTED, cache=CACHE, now=NOW)
    assert old.source is AuthSource.LOCAL_LIST and old.info is not None
    assert old.info.status is AuthorizationStatus.EXPIRED
    bad = decide("BAD", online=False, settings=offline, local_list=LISTED, cache=CACHE, now=NOW)
    assert bad.source is AuthSource.LOCAL_LIST  # the list wins over the cache's Accepted
    new = decide("NEW", online=False, settings=offline, local_list=LISTED, cache=None, now=NOW)
    assert new.source is AuthSource.NONE and new.info is None


def test_settings_come_from_the_configuration_keys() -> None:
    cfg = OcppConfiguration(standard_keys(StationFacts(number_of_connectors=1, authorization_cache=False)))
    cfg.apply(cfg.plan_change("LocalPreAuthorize", "true"))
    cfg.apply(cfg.plan_change("AllowOfflineTxForUnknownId", "true"))
    assert AuthSettings.from_config(cfg) == AuthSettings(
        local_pre_authorize=True,
        local_authorize_offline=True,
        allow_offline_tx_for_unknown_id=True,
        authorization_cache_enabled=False,  # the station has no cache: the key does not exist
        local_auth_list_enabled=True,
    )
