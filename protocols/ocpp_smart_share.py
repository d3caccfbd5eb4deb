"""How the ChargePointMaxProfile is split over the connectors at an instant (OCPP 1.6 §3.13.2: it limits
"the entire Charge Point", and the split is left to the charge point). No I/O.

The connectors with a running transaction get an even share, each capped by what it could take on its
own (its TxProfile or TxDefaultProfile, and its rating); what one cannot use goes to the others
(water-filling, smallest first). The connectors without a transaction split what the running ones leave,
evenly, so a transaction that starts before the link re-shares cannot push the sum over the maximum.
With no transaction anywhere nothing flows, and each connector may be offered the whole maximum.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

__all__ = ["share_station_max"]


def share_station_max(budget: float, caps: Mapping[int, float], running: Collection[int]) -> dict[int, float]:
    """Each connector's share of `budget` (the ChargePointMaxProfile: A per phase, or W), given what each
    could take on its own (`caps`, same unit) and which connectors run a transaction."""
    live = sorted((c for c in caps if c in running), key=lambda c: (caps[c], c))
    if not live:
        return dict.fromkeys(caps, budget)
    shares: dict[int, float] = {}
    left = budget
    for index, connector in enumerate(live):  # smallest first: what it leaves goes to the larger ones
        shares[connector] = max(0.0, min(caps[connector], left / (len(live) - index)))
        left -= shares[connector]
    idle = [c for c in caps if c not in shares]
    for connector in idle:
        shares[connector] = max(0.0, left) / len(idle)
    return shares
