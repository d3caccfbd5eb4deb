"""OCPP 1.6 local authorization: the Local Authorization List, the Authorization Cache, and the decision
whether an idTag may start charging now, must be sent to the CSMS, or is refused (pure).

OCPP 1.6 §3.5: the list is managed by the CSMS (SendLocalList Full or Differential, with a version);
the cache remembers every idTagInfo the CSMS returned (Authorize, StartTransaction, StopTransaction).
The list has priority over the cache, and an idTag on the list is never cached. An entry past its
expiryDate counts as Expired (the cache's "changed to expired" is computed when it is read). IdToken
is CiString20, so idTags match case-insensitively.

Both stores work as plan-then-apply: `LocalAuthList.plan` and `AuthorizationCache.plan_remember`
decide the outcome and return the change without touching anything; the backend link persists the
change (charger.ocpp_store), then applies it, then answers. So an Accepted SendLocalList is on disk.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from charger.protocols.ocpp_config import OcppConfiguration

__all__ = [
    "ID_TAG_MAX_LENGTH",
    "AuthDecision",
    "AuthEntry",
    "AuthSettings",
    "AuthSource",
    "AuthorizationCache",
    "AuthorizationStatus",
    "CacheChange",
    "DecisionReason",
    "IdTagInfo",
    "ListLimits",
    "ListUpdate",
    "LocalAuthList",
    "UpdateStatus",
    "UpdateType",
    "Verdict",
    "decide",
    "id_key",
    "parse_datetime",
    "remember_answer",
]

ID_TAG_MAX_LENGTH = 20  # IdToken is CiString20Type


class AuthorizationStatus(enum.StrEnum):
    ACCEPTED = "Accepted"
    BLOCKED = "Blocked"
    EXPIRED = "Expired"
    INVALID = "Invalid"
    CONCURRENT_TX = "ConcurrentTx"


class UpdateType(enum.StrEnum):
    DIFFERENTIAL = "Differential"
    FULL = "Full"


class UpdateStatus(enum.StrEnum):
    """SendLocalList.conf status."""

    ACCEPTED = "Accepted"
    FAILED = "Failed"
    NOT_SUPPORTED = "NotSupported"
    VERSION_MISMATCH = "VersionMismatch"


def id_key(id_tag: str) -> str:
    """The form idTags are compared in (CiString: case-insensitive)."""
    return id_tag.casefold()


def parse_datetime(text: str) -> datetime:
    """An OCPP dateTime (ISO 8601, e.g. ``2024-05-01T12:00:00.000Z``) as an aware datetime; naive means UTC."""
    parsed = datetime.fromisoformat(text)
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _field(data: Mapping[str, Any], camel: str, snake: str) -> Any:
    # The ocpp library hands nested objects over as snake_case dicts; the wire has camelCase.
    return data[camel] if camel in data else data.get(snake)


@dataclass(frozen=True, slots=True, kw_only=True)
class IdTagInfo:
    status: AuthorizationStatus
    expiry_date: datetime | None = None
    parent_id_tag: str | None = None

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> IdTagInfo:
        """From an idTagInfo object (camelCase or snake_case keys); ValueError if it is malformed."""
        expiry, parent = _field(data, "expiryDate", "expiry_date"), _field(data, "parentIdTag", "parent_id_tag")
        if expiry is not None and not isinstance(expiry, str):
            raise ValueError("expiryDate is not a string")
        if parent is not None and not (isinstance(parent, str) and len(parent) <= ID_TAG_MAX_LENGTH):
            raise ValueError("parentIdTag is not an IdToken")
        return cls(
            status=AuthorizationStatus(data["status"]),
            expiry_date=None if expiry is None else parse_datetime(expiry),
            parent_id_tag=parent,
        )

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {"status": self.status.value}
        if self.expiry_date is not None:
            out["expiryDate"] = self.expiry_date.isoformat().replace("+00:00", "Z")
        if self.parent_id_tag is not None:
            out["parentIdTag"] = self.parent_id_tag
        return out

    def status_at(self, now: datetime) -> AuthorizationStatus:
        """The status in effect at `now`: an Accepted entry past its expiry date is Expired."""
        if self.status is AuthorizationStatus.ACCEPTED and self.expiry_date is not None and self.expiry_date <= now:
            return AuthorizationStatus.EXPIRED
        return self.status

    def valid_at(self, now: datetime) -> bool:
        return self.status_at(now) is AuthorizationStatus.ACCEPTED


@dataclass(frozen=True, slots=True)
class AuthEntry:
    """An idTag and what is known about it. In the cache `stored_at` orders eviction; in the list it is unused."""

    id_tag: str
    info: IdTagInfo
    stored_at: datetime | None = None


# --- the Local Authorization List (§3.5.2, §5.15) --------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class ListLimits:
    supported: bool = True
    """False when the station lacks the LocalAuthListManagement profile: every update is NotSupported."""
    max_length: int = 1000  # LocalAuthListMaxLength
    send_max_length: int = 100  # SendLocalListMaxLength


@dataclass(frozen=True, slots=True, kw_only=True)
class ListUpdate:
    """The outcome of a SendLocalList.req; when Accepted, the change to persist and apply."""

    status: UpdateStatus
    version: int = 0
    replace_all: bool = False
    upserts: tuple[AuthEntry, ...] = ()
    deletes: tuple[str, ...] = ()
    """idTags (any case) to remove."""
    reason: str = ""


class _EntriesByTag:
    """Entries keyed by idTag, compared the way OCPP compares idTags (`id_key`)."""

    def __init__(self, entries: Iterable[AuthEntry]) -> None:
        self._entries = {id_key(e.id_tag): e for e in entries}

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, id_tag: str) -> AuthEntry | None:
        return self._entries.get(id_key(id_tag))

    def entries(self) -> list[AuthEntry]:
        return list(self._entries.values())


class LocalAuthList(_EntriesByTag):
    """The list and its version; version 0 means no list was ever received (§5.9)."""

    def __init__(self, version: int = 0, entries: Iterable[AuthEntry] = ()) -> None:
        super().__init__(entries)
        self.version = version

    def plan(
        self,
        list_version: int,
        update_type: str,
        authorization_list: Sequence[Mapping[str, Any]] | None,
        limits: ListLimits,
    ) -> ListUpdate:
        """Answer SendLocalList.req without changing the list. `authorization_list` as received
        (AuthorizationData objects, camelCase or snake_case)."""
        try:
            return self._plan(list_version, update_type, list(authorization_list or ()), limits)
        except _Refused as refused:
            return ListUpdate(status=refused.status, reason=str(refused))

    def _plan(
        self, list_version: int, update_type: str, items: list[Mapping[str, Any]], limits: ListLimits
    ) -> ListUpdate:
        if not limits.supported:
            raise _Refused(UpdateStatus.NOT_SUPPORTED, "local list management not supported")
        if len(items) > limits.send_max_length:
            raise _Refused(
                UpdateStatus.FAILED, f"{len(items)} entries, SendLocalListMaxLength is {limits.send_max_length}"
            )
        try:
            kind = UpdateType(update_type)
            parsed = _parse_authorization_list(items)
        except (ValueError, KeyError, TypeError) as exc:
            raise _Refused(UpdateStatus.FAILED, f"malformed update: {exc}") from exc
        upserts = tuple(AuthEntry(tag, info) for tag, info in parsed if info is not None)
        deletes = tuple(tag for tag, info in parsed if info is None)
        if kind is UpdateType.FULL:
            if deletes:
                raise _Refused(UpdateStatus.FAILED, "a full update needs an idTagInfo for every entry")
            if list_version < 0 or (list_version == 0 and upserts):
                raise _Refused(UpdateStatus.FAILED, "version 0 means an empty list, -1 means no list support")
            size = len(upserts)
        else:
            if list_version <= self.version:
                reason = f"differential update to version {list_version} on version {self.version}"
                raise _Refused(UpdateStatus.VERSION_MISMATCH, reason)
            gone = {id_key(t) for t in deletes}
            size = len(({*self._entries} - gone) | {id_key(e.id_tag) for e in upserts})
        if size > limits.max_length:
            raise _Refused(UpdateStatus.FAILED, f"{size} entries, LocalAuthListMaxLength is {limits.max_length}")
        return ListUpdate(
            status=UpdateStatus.ACCEPTED,
            version=list_version,
            replace_all=kind is UpdateType.FULL,
            upserts=upserts,
            deletes=deletes,
        )

    def apply(self, update: ListUpdate) -> None:
        if update.status is not UpdateStatus.ACCEPTED:
            return
        if update.replace_all:
            self._entries.clear()
        for tag in update.deletes:
            self._entries.pop(id_key(tag), None)
        for entry in update.upserts:
            self._entries[id_key(entry.id_tag)] = entry
        self.version = update.version


class _Refused(Exception):
    def __init__(self, status: UpdateStatus, reason: str) -> None:
        super().__init__(reason)
        self.status = status


def _parse_authorization_list(items: Sequence[Mapping[str, Any]]) -> list[tuple[str, IdTagInfo | None]]:
    parsed: list[tuple[str, IdTagInfo | None]] = []
    seen: set[str] = set()
    for item in items:
        tag = _field(item, "idTag", "id_tag")
        if not isinstance(tag, str) or not 0 < len(tag) <= ID_TAG_MAX_LENGTH:
            raise ValueError("idTag is not an IdToken")
        if id_key(tag) in seen:
            raise ValueError(f"idTag {tag} appears twice")
        seen.add(id_key(tag))
        info = _field(item, "idTagInfo", "id_tag_info")
        parsed.append((tag, None if info is None else IdTagInfo.from_wire(info)))
    return parsed


# --- the Authorization Cache (§3.5.1) --------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class CacheChange:
    put: AuthEntry | None = None
    evict: tuple[str, ...] = ()
    """idTags to remove to make room."""
    clear: bool = False


class AuthorizationCache(_EntriesByTag):
    """Every idTagInfo the CSMS returned, bounded by `capacity` entries."""

    def __init__(self, capacity: int, entries: Iterable[AuthEntry] = ()) -> None:
        if capacity < 1:
            raise ValueError("the cache holds at least one entry")
        super().__init__(entries)
        self.capacity = capacity

    def plan_remember(self, id_tag: str, info: IdTagInfo, now: datetime) -> CacheChange:
        """Store `info` for `id_tag`. When full, every entry that is not valid goes first, then the
        oldest valid ones (§3.5.1)."""
        entry = AuthEntry(id_tag, info, now)
        if id_key(id_tag) in self._entries or len(self._entries) < self.capacity:
            return CacheChange(put=entry)
        invalid = [e for e in self._entries.values() if not e.info.valid_at(now)]
        evict = [e.id_tag for e in invalid]
        if not evict:
            oldest = min(self._entries.values(), key=lambda e: e.stored_at or datetime.min.replace(tzinfo=UTC))
            evict = [oldest.id_tag]
        return CacheChange(put=entry, evict=tuple(evict))

    def plan_clear(self) -> CacheChange:
        return CacheChange(clear=True)

    def apply(self, change: CacheChange) -> None:
        if change.clear:
            self._entries.clear()
        for tag in change.evict:
            self._entries.pop(id_key(tag), None)
        if change.put is not None:
            self._entries[id_key(change.put.id_tag)] = change.put


# --- the decision (§3.5, §9.1: LocalPreAuthorize, LocalAuthorizeOffline, AllowOfflineTxForUnknownId) ---


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthSettings:
    local_pre_authorize: bool = False
    local_authorize_offline: bool = True
    allow_offline_tx_for_unknown_id: bool = False
    authorization_cache_enabled: bool = True
    local_auth_list_enabled: bool = True

    @classmethod
    def from_config(cls, config: OcppConfiguration) -> AuthSettings:
        """From the configuration keys; a key the station lacks counts as false."""
        return cls(
            local_pre_authorize=config.flag("LocalPreAuthorize"),
            local_authorize_offline=config.flag("LocalAuthorizeOffline"),
            allow_offline_tx_for_unknown_id=config.flag("AllowOfflineTxForUnknownId"),
            authorization_cache_enabled=config.flag("AuthorizationCacheEnabled"),
            local_auth_list_enabled=config.flag("LocalAuthListEnabled"),
        )


class Verdict(enum.StrEnum):
    ACCEPT = "accept"  #: start now, without asking the CSMS
    ASK_CSMS = "ask_csms"  #: send Authorize.req and follow its answer
    REJECT = "reject"


class AuthSource(enum.StrEnum):
    LOCAL_LIST = "local_list"
    CACHE = "cache"
    NONE = "none"


class DecisionReason(enum.StrEnum):
    BAD_ID_TAG = "bad_id_tag"  #: empty or longer than an IdToken
    PRE_AUTHORIZED = "pre_authorized"  #: online, LocalPreAuthorize and a valid local entry
    ONLINE = "online"  #: online: the CSMS decides
    OFFLINE_LOCAL_ENTRY = "offline_local_entry"  #: offline, LocalAuthorizeOffline and a valid local entry
    OFFLINE_NOT_VALID = "offline_not_valid"  #: offline, the local entry is blocked, invalid, expired...
    OFFLINE_UNKNOWN_ALLOWED = "offline_unknown_allowed"  #: offline, AllowOfflineTxForUnknownId
    OFFLINE_UNKNOWN = "offline_unknown"  #: offline and nothing allows it


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthDecision:
    verdict: Verdict
    reason: DecisionReason
    source: AuthSource = AuthSource.NONE
    info: IdTagInfo | None = None
    """The local entry's idTagInfo, with the status in effect now (parentIdTag for stopping by group)."""


def decide(
    id_tag: str,
    *,
    online: bool,
    settings: AuthSettings,
    local_list: LocalAuthList,
    cache: AuthorizationCache | None,
    now: datetime,
) -> AuthDecision:
    """What to do with an idTag presented at the station."""
    if not 0 < len(id_tag) <= ID_TAG_MAX_LENGTH:
        return AuthDecision(verdict=Verdict.REJECT, reason=DecisionReason.BAD_ID_TAG)
    entry, source = _local_entry(id_tag, settings, local_list, cache)
    info = None if entry is None else replace(entry.info, status=entry.info.status_at(now))
    valid = info is not None and info.status is AuthorizationStatus.ACCEPTED
    if online:
        pre_authorized = valid and settings.local_pre_authorize
        verdict, reason = (Verdict.ACCEPT, DecisionReason.PRE_AUTHORIZED) if pre_authorized else _ASK
    else:
        verdict, reason = _offline(known=info is not None, valid=valid, settings=settings)
    return AuthDecision(verdict=verdict, reason=reason, source=source, info=info)


_ASK = (Verdict.ASK_CSMS, DecisionReason.ONLINE)


def _offline(*, known: bool, valid: bool, settings: AuthSettings) -> tuple[Verdict, DecisionReason]:
    if known and not valid:
        # Known and not valid is refused even when unknown idTags are allowed offline (§3.5.4).
        return Verdict.REJECT, DecisionReason.OFFLINE_NOT_VALID
    if valid and settings.local_authorize_offline:
        return Verdict.ACCEPT, DecisionReason.OFFLINE_LOCAL_ENTRY
    if settings.allow_offline_tx_for_unknown_id:
        # A valid entry with LocalAuthorizeOffline off is treated like an unknown idTag.
        return Verdict.ACCEPT, DecisionReason.OFFLINE_UNKNOWN_ALLOWED
    return Verdict.REJECT, DecisionReason.OFFLINE_UNKNOWN


def _local_entry(
    id_tag: str, settings: AuthSettings, local_list: LocalAuthList, cache: AuthorizationCache | None
) -> tuple[AuthEntry | None, AuthSource]:
    if settings.local_auth_list_enabled:
        listed = local_list.get(id_tag)
        if listed is not None:
            return listed, AuthSource.LOCAL_LIST
    if settings.authorization_cache_enabled and cache is not None:
        cached = cache.get(id_tag)
        if cached is not None:
            return cached, AuthSource.CACHE
    return None, AuthSource.NONE


def remember_answer(
    id_tag: str,
    info: IdTagInfo,
    *,
    settings: AuthSettings,
    local_list: LocalAuthList,
    cache: AuthorizationCache | None,
    now: datetime,
) -> CacheChange | None:
    """The cache change for an idTagInfo from Authorize/StartTransaction/StopTransaction.conf, or None
    when nothing is cached (cache absent or disabled, or the idTag is on the local list)."""
    if cache is None or not settings.authorization_cache_enabled or local_list.get(id_tag) is not None:
        return None
    return cache.plan_remember(id_tag, info, now)
