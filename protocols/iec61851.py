"""IEC 61851-1 Annex A control pilot: states, PWM duty cycle <-> current, timing rules, relay invariant.

Pure functions and data, no I/O and no clock: anything time-dependent takes the time as an argument.
References are to IEC 61851-1:2017 (Ed. 3.0, identical to EN IEC 61851-1:2019), Annex A (normative
for every PWM pilot). "Table A.6 seq N" is a row of the sequence table, numbered as EVerest's
`IECStateMachine.cpp` annotates it (everest.md §4). The duty-cycle tables are Table A.8 (what the
EVSE sends) and Table A.7 (how the EV reads it).

The high-level connector machine that uses all of this is `charger.protocols.evse_session`.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

__all__ = [
    "DEFAULT_TIMING",
    "DUTY_DIGITAL_COMMUNICATION",
    "DUTY_X1",
    "MAX_PWM_CURRENT_A",
    "MIN_PWM_CURRENT_A",
    "DutyReading",
    "IecTiming",
    "Pilot",
    "SafetyViolation",
    "current_for_duty",
    "duty_cycle_for_current",
    "duty_permille",
    "ev_requests_power",
    "read_duty_cycle",
    "relays_may_close",
    "relays_may_stay_closed",
]


class Pilot(enum.Enum):
    """Control-pilot state as measured at the EVSE (Annex A system states A-F).

    The value is the letter a board reports (the wire enum `charger.protocols.board_frames.Pilot`
    converts by value). Whether PWM runs (x2) or not (x1) is the EVSE's own output, not part of the
    measured state, so B1/B2 are both `B` here.
    """

    A = "A"  #: +12 V: no vehicle connected
    B = "B"  #: +9 V: vehicle connected, not ready to take energy
    C = "C"  #: +6 V: vehicle ready, no ventilation required
    D = "D"  #: +3 V: vehicle ready, ventilation of the charging area required
    E = "E"  #: 0 V: pilot shorted to PE, or the EVSE has no supply
    F = "F"  #: -12 V: EVSE not available (the EVSE itself drives the pilot low)
    DISABLED = "Disabled"  #: the board's pilot output is switched off (EVerest RawCPState::Disabled)

    @property
    def volts(self) -> float | None:
        """Nominal positive pilot level in volts (F: the -12 V level); None for `DISABLED`."""
        return _VOLTS[self]


_VOLTS: dict[Pilot, float | None] = {
    Pilot.A: 12.0,
    Pilot.B: 9.0,
    Pilot.C: 6.0,
    Pilot.D: 3.0,
    Pilot.E: 0.0,
    Pilot.F: -12.0,
    Pilot.DISABLED: None,
}


# --- duty cycle <-> current ----------------------------------------------------------------------

MIN_PWM_CURRENT_A = 6.0
"""Smallest current a duty cycle can offer (Table A.8: 10 %). Below it the EVSE cannot signal a limit."""
MAX_PWM_CURRENT_A = 80.0
"""Largest current a duty cycle can offer (Table A.8: 96 %)."""
DUTY_DIGITAL_COMMUNICATION = 5.0
"""Table A.8: 5 % means "digital communication (ISO 15118 / DIN 70121) required", no current offered."""
DUTY_X1 = 100.0
"""Steady positive level, no oscillator (states A1/B1/C1/D1): "EVSE not ready", no current offered."""


def duty_cycle_for_current(amps: float) -> float:
    """Duty cycle in percent that offers `amps` to the EV (Table A.8, EVSE side).

    6 A <= I <= 51 A: D = I / 0.6; 51 A < I <= 80 A: D = I / 2.5 + 64. Table A.8 defines no duty
    cycle for less than 6 A, so such a limit cannot be signalled and this raises ValueError; the
    caller must then stop offering power (PWM off, state x1, Table A.6 seq 9/10), which is what
    `ConnectorMachine` does (ChargingPausedEVSE). 100 % is not a fallback: it is state x1, "EVSE
    not ready", and offers nothing. Above 80 A raises too: clamp to the hardware maximum first.

    The result is exact; a generator with a coarser resolution must round it *down* (`duty_permille`),
    since rounding up lets the EV draw more than the limit.
    """
    if not math.isfinite(amps) or amps < MIN_PWM_CURRENT_A or amps > MAX_PWM_CURRENT_A:
        raise ValueError(
            f"{amps!r} A cannot be signalled by PWM (Table A.8 covers {MIN_PWM_CURRENT_A:g}..{MAX_PWM_CURRENT_A:g} A)"
        )
    if amps <= 51.0:
        return amps * 5.0 / 3.0  # = I / 0.6, written so that 6 A gives exactly 10.0 and 51 A exactly 85.0
    return amps / 2.5 + 64.0


def duty_permille(duty_percent: float) -> int:
    """A duty in percent as the per-mille integer a board takes, rounded down (never offers more)."""
    if not math.isfinite(duty_percent) or not 0.0 <= duty_percent <= 100.0:
        raise ValueError(f"duty {duty_percent!r} % outside 0..100")
    return math.floor(duty_percent * 10.0 + 1e-9)  # the epsilon keeps 85.0 % at 850, not 849


@dataclass(frozen=True, slots=True)
class DutyReading:
    """What an EV makes of a measured duty cycle (Table A.7)."""

    current_a: float | None
    """Maximum current the EV may draw; None when the duty cycle allows no charging by PWM."""
    digital_communication: bool
    """3 % <= D <= 7 %: the EVSE asks for digital communication (nominal 5 %); no current by PWM."""


def read_duty_cycle(duty: float) -> DutyReading:
    """Interpret a measured duty cycle (percent) as the EV does, Table A.7.

    The bands, with their exact boundaries as implemented (the table's own guard bands are the
    tolerance; nothing is added on top):

    ==================  ==============================================
    D < 3 %             no charging
    3 % <= D <= 7 %     digital communication required, no PWM current
    7 % < D < 8 %       no charging (guard band)
    8 % <= D < 10 %     6 A
    10 % <= D <= 85 %   D x 0.6 A
    85 % < D <= 96 %    (D - 64) x 2.5 A
    96 % < D <= 97 %    80 A
    D > 97 %            no charging (100 % is state x1)
    ==================  ==============================================

    A value outside 0..100 (or NaN) is not a duty cycle: ValueError.
    """
    if not math.isfinite(duty) or not 0.0 <= duty <= 100.0:
        raise ValueError(f"duty {duty!r} % outside 0..100")
    if 3.0 <= duty <= 7.0:
        return DutyReading(None, digital_communication=True)
    if duty < 8.0 or duty > 97.0:
        return DutyReading(None, digital_communication=False)
    if duty < 10.0:
        return DutyReading(6.0, digital_communication=False)
    if duty <= 85.0:
        return DutyReading(duty * 3.0 / 5.0, digital_communication=False)  # D x 0.6, exact for 85 % -> 51 A
    if duty <= 96.0:
        return DutyReading((duty - 64.0) * 2.5, digital_communication=False)
    return DutyReading(80.0, digital_communication=False)


def current_for_duty(duty: float) -> float | None:
    """Maximum current (A) an EV may draw at this duty cycle, or None (Table A.7; see `read_duty_cycle`)."""
    return read_duty_cycle(duty).current_a


# --- timing ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class IecTiming:
    """The Annex A timing rules the connector machine obeys, as data (seconds)."""

    ev_stop_power_off_s: float = 0.1
    """Table A.6 seq 8.1/8.2: the EV opens S2 (C/D -> B, or A on unplug, seq 2.2): the EVSE switches
    the supply off within 100 ms. The machine emits OpenRelays in the same step as the pilot change;
    this is the budget for the actor and the board together."""
    power_on_s: float = 3.0
    """Table A.6 seq 4: the EV requests power (B2 -> C2) and the EVSE switches on within 3 s. The
    machine emits CloseRelays in the same step; this is the budget for lock and contactor."""
    c1_power_off_s: float = 6.0
    """Table A.6 seq 9.1/10.1/10.2: after the EVSE stops PWM (x2 -> x1) to pause or stop, the EV is
    expected to reduce its current and open S2 (go to B, then the 100 ms rule applies). If it stays
    in C/D, the EVSE opens under load once this long has passed since PWM stopped. 6 s is EVerest's
    `power_off_under_load_in_c1_timeout`; its BSP bring-up guide reads seq 10.2 as "relay should
    open after a minimum of 6 seconds". 0 opens together with the PWM stop (strict DESIGN §7)."""

    def __post_init__(self) -> None:
        for name in ("ev_stop_power_off_s", "power_on_s", "c1_power_off_s"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")


DEFAULT_TIMING = IecTiming()


# --- the relay invariant (DESIGN §7) ---------------------------------------------------------------


class SafetyViolation(RuntimeError):
    """The machine's own state breaks the relay invariant: a bug. Let the actor crash; the board's
    watchdog opens the relays when host heartbeats stop (DESIGN §7)."""


def ev_requests_power(pilot: Pilot, *, has_ventilation: bool) -> bool:
    """C, or D when the EVSE provides ventilation. In D without ventilation the EVSE must not
    energise (Annex A, state D: "ventilation required"), so D counts as no request then."""
    return pilot is Pilot.C or (pilot is Pilot.D and has_ventilation)


def relays_may_close(
    *, pilot: Pilot, pwm_running: bool, authorized: bool, blocking_fault: bool, has_ventilation: bool
) -> bool:
    """DESIGN §7: relays close only with the pilot in C (or D with ventilation), PWM running (x2:
    the EV has been told its current, Table A.6 seq 4), the session authorized and no blocking fault."""
    return (
        ev_requests_power(pilot, has_ventilation=has_ventilation) and pwm_running and authorized and not blocking_fault
    )


def relays_may_stay_closed(
    *,
    pilot: Pilot,
    pwm_running: bool,
    authorized: bool,
    blocking_fault: bool,
    has_ventilation: bool,
    pwm_off_for_s: float | None,
    timing: IecTiming = DEFAULT_TIMING,
) -> bool:
    """Whether closed relays may stay closed: `relays_may_close`, with one exception from the standard.

    When the EVSE itself stopped PWM to pause or stop (`pwm_off_for_s` = seconds since then; None
    when PWM was not stopped for a graceful EVSE-initiated pause or stop), Table A.6 seq 10.1/10.2
    give the EV `timing.c1_power_off_s` to ramp down and go to B before the EVSE opens under load.
    Every other condition still holds without delay: pilot C/D, authorized, no blocking fault.
    """
    if relays_may_close(
        pilot=pilot,
        pwm_running=pwm_running,
        authorized=authorized,
        blocking_fault=blocking_fault,
        has_ventilation=has_ventilation,
    ):
        return True
    in_grace = pwm_off_for_s is not None and not pwm_running and pwm_off_for_s < timing.c1_power_off_s
    return in_grace and ev_requests_power(pilot, has_ventilation=has_ventilation) and authorized and not blocking_fault
