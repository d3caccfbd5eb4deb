"""IEC 61851-1 Annex A: duty cycle <-> current at every band boundary (Tables A.7/A.8), the timing
data and the relay invariant as truth tables."""

from __future__ import annotations

import itertools
import math

import pytest
from charger.protocols.iec61851 import (
    DEFAULT_TIMING,
    DUTY_DIGITAL_COMMUNICATION,
    DUTY_X1,
    DutyReading,
    IecTiming,
    Pilot,
    current_for_duty,
    duty_cycle_for_current,
    duty_permille,
    read_duty_cycle,
    relays_may_close,
    relays_may_stay_closed,
)
from hypothesis import given, settings
from hypothesis import strategies as st

# --- Table A.8: what the EVSE sends ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("amps", "duty"),
    [
        (6.0, 10.0),  # lowest signallable current
        (10.0, 16.0 + 2 / 3),
        (13.0, 21.0 + 2 / 3),
        (16.0, 26.0 + 2 / 3),
        (20.0, 33.0 + 1 / 3),
        (32.0, 53.0 + 1 / 3),
        (51.0, 85.0),  # top of the D = I / 0.6 band
        (51.5, 84.6),  # first value of the D = I / 2.5 + 64 band (lower than 85 %: the table's seam)
        (52.5, 85.0),
        (63.0, 89.2),
        (70.0, 92.0),
        (80.0, 96.0),  # highest signallable current
    ],
)
def test_duty_cycle_for_current_follows_table_a8(amps: float, duty: float) -> None:
    assert duty_cycle_for_current(amps) == pytest.approx(duty, abs=1e-12)


def test_band_ends_are_exact() -> None:
    assert duty_cycle_for_current(6.0) == 10.0
    assert duty_cycle_for_current(51.0) == 85.0
    assert duty_cycle_for_current(80.0) == 96.0


@pytest.mark.parametrize("amps", [5.999, 0.0, -1.0, 80.001, 100.0, math.nan, math.inf, -math.inf])
def test_currents_pwm_cannot_signal_are_refused(amps: float) -> None:
    with pytest.raises(ValueError, match="cannot be signalled"):
        duty_cycle_for_current(amps)


def test_constants() -> None:
    assert DUTY_DIGITAL_COMMUNICATION == 5.0 and read_duty_cycle(DUTY_DIGITAL_COMMUNICATION).digital_communication
    assert DUTY_X1 == 100.0 and current_for_duty(DUTY_X1) is None


@pytest.mark.parametrize(
    ("duty", "permille"), [(10.0, 100), (26.0 + 2 / 3, 266), (85.0, 850), (96.0, 960), (0.0, 0), (100.0, 1000)]
)
def test_per_mille_rounds_down(duty: float, permille: int) -> None:
    assert duty_permille(duty) == permille
    reading = current_for_duty(permille / 10)
    if 10.0 <= duty <= 96.0:
        assert reading is not None and reading <= (current_for_duty(duty) or 0.0)  # never offers more


@pytest.mark.parametrize("duty", [-0.1, 100.1, math.nan])
def test_per_mille_refuses_non_duties(duty: float) -> None:
    with pytest.raises(ValueError):
        duty_permille(duty)


# --- Table A.7: how the EV reads it ----------------------------------------------------------------

NONE = DutyReading(None, digital_communication=False)
DIGITAL = DutyReading(None, digital_communication=True)


@pytest.mark.parametrize(
    ("duty", "reading"),
    [
        (0.0, NONE),
        (2.999, NONE),
        (3.0, DIGITAL),  # digital communication band starts inclusive
        (5.0, DIGITAL),
        (7.0, DIGITAL),  # ... and ends inclusive
        (7.001, NONE),  # guard band between 5 % and 6 A
        (7.999, NONE),
        (8.0, DutyReading(6.0, digital_communication=False)),
        (9.999, DutyReading(6.0, digital_communication=False)),
        (10.0, DutyReading(6.0, digital_communication=False)),
        (25.0, DutyReading(15.0, digital_communication=False)),
        (85.0, DutyReading(51.0, digital_communication=False)),  # inclusive: x 0.6
        (85.2, DutyReading(53.0, digital_communication=False)),  # above 85 %: (D - 64) x 2.5
        (96.0, DutyReading(80.0, digital_communication=False)),
        (96.5, DutyReading(80.0, digital_communication=False)),
        (97.0, DutyReading(80.0, digital_communication=False)),
        (97.001, NONE),
        (100.0, NONE),  # x1: EVSE not ready
    ],
)
def test_read_duty_cycle_follows_table_a7(duty: float, reading: DutyReading) -> None:
    got = read_duty_cycle(duty)
    assert got.digital_communication == reading.digital_communication
    if reading.current_a is None:
        assert got.current_a is None
    else:
        assert got.current_a == pytest.approx(reading.current_a, abs=1e-9)
    assert current_for_duty(duty) == got.current_a


@pytest.mark.parametrize("duty", [-0.001, 100.001, math.nan, math.inf])
def test_read_duty_cycle_refuses_non_duties(duty: float) -> None:
    with pytest.raises(ValueError, match=r"outside 0\.\.100"):
        read_duty_cycle(duty)


@settings(max_examples=500, deadline=None)
@given(st.floats(min_value=6.0, max_value=80.0))
def test_the_ev_never_reads_more_than_the_evse_offers(amps: float) -> None:
    """EVSE -> EV round trip: exact, except in the seam 51 A < I < 52.5 A, where Table A.8's upper
    band gives duties below 85 % that Table A.7 reads with x 0.6, i.e. conservatively low."""
    reading = current_for_duty(duty_cycle_for_current(amps))
    assert reading is not None
    if 51.0 < amps < 52.5:
        assert 50.64 - 1e-9 <= reading <= amps
    else:
        assert reading == pytest.approx(amps, abs=1e-9)


# --- pilot and timing ------------------------------------------------------------------------------


def test_pilot_levels_and_wire_letters() -> None:
    assert [p.volts for p in Pilot] == [12.0, 9.0, 6.0, 3.0, 0.0, -12.0, None]
    assert [p.value for p in Pilot][:6] == list("ABCDEF")


def test_timing_defaults_are_the_standard_figures() -> None:
    assert (DEFAULT_TIMING.ev_stop_power_off_s, DEFAULT_TIMING.power_on_s, DEFAULT_TIMING.c1_power_off_s) == (
        0.1,
        3.0,
        6.0,
    )
    with pytest.raises(ValueError, match="c1_power_off_s"):
        IecTiming(c1_power_off_s=-1.0)
    with pytest.raises(ValueError, match="power_on_s"):
        IecTiming(power_on_s=math.nan)


# --- the relay invariant (DESIGN §7) ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("pilot", "pwm", "auth", "fault", "vent"),
    list(itertools.product(list(Pilot), [False, True], [False, True], [False, True], [False, True])),
)
def test_relays_may_close_truth_table(pilot: Pilot, pwm: bool, auth: bool, fault: bool, vent: bool) -> None:
    expected = (pilot is Pilot.C or (pilot is Pilot.D and vent)) and pwm and auth and not fault
    got = relays_may_close(pilot=pilot, pwm_running=pwm, authorized=auth, blocking_fault=fault, has_ventilation=vent)
    assert got is expected
    # without a graceful PWM stop, staying closed needs exactly what closing needs
    stays = relays_may_stay_closed(
        pilot=pilot, pwm_running=pwm, authorized=auth, blocking_fault=fault, has_ventilation=vent, pwm_off_for_s=None
    )
    assert stays is expected


def stays_closed(
    pilot: Pilot = Pilot.C,
    *,
    off_for: float = 1.0,
    auth: bool = True,
    fault: bool = False,
    timing: IecTiming = DEFAULT_TIMING,
) -> bool:
    """`relays_may_stay_closed` after the EVSE stopped PWM `off_for` seconds ago."""
    return relays_may_stay_closed(
        pilot=pilot,
        pwm_running=False,
        authorized=auth,
        blocking_fault=fault,
        has_ventilation=False,
        pwm_off_for_s=off_for,
        timing=timing,
    )


def test_graceful_pwm_stop_keeps_relays_closed_for_c1_power_off_s() -> None:
    assert stays_closed(off_for=0.0)  # PWM just stopped: the EV gets time to ramp down
    assert stays_closed(off_for=5.999)
    assert not stays_closed(off_for=6.0)  # seq 10.2: now open under load
    assert not stays_closed(Pilot.D)  # no ventilation: D never keeps power
    assert not stays_closed(Pilot.B)  # EV went to B: the 100 ms rule, no grace
    assert not stays_closed(auth=False)  # deauthorized: no grace
    assert not stays_closed(fault=True)  # blocking fault: no grace
    assert not stays_closed(off_for=0.0, timing=IecTiming(c1_power_off_s=0.0))  # strict DESIGN §7
    assert stays_closed(off_for=2.9, timing=IecTiming(c1_power_off_s=3.0))
    assert not relays_may_stay_closed(
        pilot=Pilot.C,
        pwm_running=False,
        authorized=True,
        blocking_fault=False,
        has_ventilation=False,
        pwm_off_for_s=None,  # PWM not stopped for a graceful pause or stop
    )
