"""ProfileFile: the backend link's charging profiles, RemoteStartTransaction's waiting TxProfiles and the
lease fence, kept across a reopen (as after a SIGKILL); a damaged file is a clear error."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from charger.protocols.ocpp_smart_charging import ProfileFormatError, ProfileStore, parse_charging_profile

from charger.journal import Journal
from charger.ocpp_profiles import ProfileFile

DEFAULT = {
    "chargingProfileId": 1,
    "stackLevel": 0,
    "chargingProfilePurpose": "TxDefaultProfile",
    "chargingProfileKind": "Absolute",
    "chargingSchedule": {
        "startSchedule": "2026-01-01T00:00:00Z",
        "chargingRateUnit": "A",
        "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 10.0}, {"startPeriod": 60, "limit": 7.5}],
    },
}
TX = {
    "chargingProfileId": 2,
    "stackLevel": 1,
    "chargingProfilePurpose": "TxProfile",
    "chargingProfileKind": "Relative",
    "chargingSchedule": {"chargingRateUnit": "W", "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 7000.0}]},
}


def test_profiles_pending_and_fence_survive_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "backend-profiles.db"
    first = ProfileFile(path)
    assert first.load_profiles() == ProfileStore() and first.load_pending() == {}
    store = ProfileStore().install(0, parse_charging_profile(DEFAULT))
    first.save_profiles(store)
    first.save_pending({2: parse_charging_profile(TX)})
    assert [first.next_fence(), first.next_fence()] == [1, 2]
    first.close()

    again = ProfileFile(path)
    loaded = again.load_profiles()
    assert loaded == store
    assert loaded.installed[0].profile.charging_schedule.start_schedule == datetime(2026, 1, 1, tzinfo=UTC)
    assert again.load_pending() == {2: parse_charging_profile(TX)}
    assert again.next_fence() == 3  # never backwards
    again.save_pending({})
    assert again.load_pending() == {}
    again.close()


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("profiles", '{"version": 99, "profiles": []}'),
        ("profiles", '{"version": 1, "profiles": [{"connectorId": -1, "profile": {}}]}'),
        ("pending", '{"x": {}}'),
        ("pending", "[1, 2]"),
    ],
)
def test_a_damaged_file_is_a_clear_error(tmp_path: Path, key: str, value: str) -> None:
    path = tmp_path / "backend-profiles.db"
    ProfileFile(path).close()
    journal = Journal(path)
    journal.put(key, json.loads(value))
    journal.close()
    damaged = ProfileFile(path)
    with pytest.raises(ProfileFormatError):
        damaged.load_profiles() if key == "profiles" else damaged.load_pending()
    damaged.close()
