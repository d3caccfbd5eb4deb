"""What the backend link's Smart Charging keeps across restarts: the installed charging profiles, the
TxProfiles that RemoteStartTransaction brought for transactions that have not started yet, and the
lease fence (DESIGN §6; OCPP 1.6 §3.13: profiles survive a reboot).

One `charger.journal.Journal` per link (``<link>-profiles.db``): a value has committed when `save_*`
returns, so a profile the CSMS heard Accepted for survives a SIGKILL. Values are small documents (at
most MaxChargingProfilesInstalled profiles), one record each.
"""

from __future__ import annotations

from pathlib import Path

from charger.journal import Journal
from charger.protocols.ocpp_smart_charging import (
    ChargingProfile,
    ProfileFormatError,
    ProfileStore,
    parse_charging_profile,
)

__all__ = ["ProfileFile"]


class ProfileFile:
    """Not thread-safe: open and use it on the actor's thread."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._journal = Journal(self.path)

    def close(self) -> None:
        self._journal.close()

    def load_profiles(self) -> ProfileStore:
        """The installed profiles; raises `ProfileFormatError` if the file holds something else."""
        data = self._journal.get("profiles")
        return ProfileStore() if data is None else ProfileStore.from_json(data)

    def save_profiles(self, store: ProfileStore) -> None:
        self._journal.put("profiles", store.to_json())

    def load_pending(self) -> dict[int, ChargingProfile]:
        """Connector -> the TxProfile a RemoteStartTransaction brought, waiting for its transaction."""
        data = self._journal.get("pending") or {}
        if not isinstance(data, dict):
            raise ProfileFormatError("pending profiles: expected an object")
        try:
            return {int(connector): parse_charging_profile(body) for connector, body in data.items()}
        except ValueError as exc:
            raise ProfileFormatError(f"pending profiles: {exc}") from None

    def save_pending(self, pending: dict[int, ChargingProfile]) -> None:
        self._journal.put("pending", {str(c): profile.to_ocpp() for c, profile in sorted(pending.items())})

    def next_fence(self) -> int:
        """Raise the lease fence by one and return it: each incarnation of the link grants with a higher
        fence than every earlier one, so a connector refuses leases from a superseded instance."""
        fence = int(self._journal.get("fence") or 0) + 1
        self._journal.put("fence", fence)
        return fence
