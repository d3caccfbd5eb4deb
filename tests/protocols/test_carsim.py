"""The car simulator: EVerest's command language, IEC 61851 pilot behaviour and energy, in simulated time."""

from __future__ import annotations

import dataclasses
import math

import pytest
from charger.protocols.battery import Battery, Taper
from charger.protocols.carsim import (
    TICK_S,
    CarOutputs,
    CarSimulator,
    CpState,
    DiodeFail,
    DrawPowerFixed,
    DrawPowerRegulated,
    ErrorE,
    IecWaitPwrReady,
    Pause,
    RcdCurrent,
    ScriptError,
    SetSoc,
    SimCommand,
    Sleep,
    Unplug,
    WaitForRealPlugin,
    parse,
    pwm_allows_charging,
    pwm_current_limit_a,
)
from hypothesis import given, settings
from hypothesis import strategies as st

A, B, C, E = CpState.A, CpState.B, CpState.C, CpState.E
AC_BASIC = "sleep 1;iec_wait_pwr_ready;sleep 1;draw_power_regulated 16,3;sleep 30;unplug"  # 20 EVerest configs
DUTY_16A = 26.7  # 16.02 A by Table A.7; a charger offering 16 A rounds 16 / 0.6 up like this
Trace = list[tuple[float, CarOutputs]]


def fake_charger(seen: CarOutputs, duty: float | None = DUTY_16A) -> tuple[float | None, bool]:
    """A charger that needs no authorization: PWM once the car is in B or C, relays once it is in C."""
    pwm = duty if seen.pilot in (B, C) else None
    return pwm, seen.pilot is C and pwm is not None


def drive(car: CarSimulator, until: float, dt: float = TICK_S, duty: float | None = DUTY_16A) -> Trace:
    """Run the car against `fake_charger`, which reacts to what the car showed after the previous step."""
    trace: Trace = []
    seen = car.outputs
    while car.now < until - 1e-9:
        start = car.now
        seen = car.step(dt, *fake_charger(seen, duty))
        trace.append((start, seen))
    return trace


def transitions(trace: Trace) -> list[tuple[float, CpState]]:
    changes: list[tuple[float, CpState]] = []
    for t, out in trace:
        if not changes or changes[-1][1] is not out.pilot:
            changes.append((round(t, 6), out.pilot))
    return changes


# --- the AC basic session from EVerest's configs ----------------------------------------------------


def test_ac_basic_script_runs_a_b_c_a_with_everest_timings() -> None:
    car = CarSimulator(AC_BASIC, battery=Battery(soc_percent=30))
    trace = drive(car, 40)
    # sleep 1 = 4 ticks in A; B until the PWM is seen (next tick) plus sleep 1; C for 30 s (120 ticks).
    assert transitions(trace) == [(0.0, A), (1.0, B), (2.25, C), (32.25, A)]
    assert car.finished
    charging = [(t, out) for t, out in trace if out.draw_current_a > 0]
    # relays close one step after C; unplug ends the draw at 32.25 s
    assert charging[0][0] == 2.5
    assert charging[-1][0] == 32.0
    assert {out.draw_current_a for _, out in charging} == {16.0}
    assert {out.phases for _, out in charging} == {3}
    assert car.battery.energy_drawn_wh == pytest.approx(16 * 230 * 3 * 29.75 / 3600)


@pytest.mark.parametrize("dt", [0.05, 0.1, 0.125])
def test_ac_basic_timings_do_not_depend_on_the_step_size(dt: float) -> None:
    trace = drive(CarSimulator(AC_BASIC), 40, dt=dt)
    got = transitions(trace)
    assert [pilot for _, pilot in got] == [A, B, C, A]
    for (t, _), want in zip(got, [0.0, 1.0, 2.25, 32.25], strict=True):
        assert want - dt - 1e-9 < t <= want + 1e-9  # the tick at `want` falls inside the step starting at t


def test_sleep_counts_ticks_like_everest() -> None:
    for seconds, ticks in [(0, 0), (0.1, 0), (0.25, 1), (0.3, 1), (1, 4), (2.3, 9)]:
        car = CarSimulator(f"sleep {seconds};pause")
        pilots = [car.step(TICK_S, None, False).pilot for _ in range(12)]
        assert pilots.index(B) == ticks, seconds


def test_step_zero_runs_nothing_and_ticks_fall_on_quarter_seconds() -> None:
    car = CarSimulator("pause")
    assert car.step(0, None, False).pilot is A
    assert car.step(0.01, None, False).pilot is B  # the tick at t = 0
    car = CarSimulator("sleep 0.25;error_e")
    assert car.step(0.2, None, False).pilot is A
    assert car.step(0.1, None, False).pilot is E  # the tick at t = 0.25 falls inside [0.2, 0.3)
    assert car.now == pytest.approx(0.3)


# --- PWM following (IEC 61851-1 Table A.7) --------------------------------------------------------


@pytest.mark.parametrize(
    ("duty", "amps"),
    [
        (None, 0),
        (0, 0),
        (5, 0),
        (7.5, 0),
        (8, 6),
        (9.9, 6),
        (10, 6),
        (25, 15),
        (50, 30),
        (85, 51),
        (86, 55),
        (90, 65),
        (96, 80),
        (96.5, 80),
        (97, 80),
        (97.5, 0),
        (100, 0),
    ],
)
def test_pwm_current_limit_follows_table_a7(duty: float | None, amps: float) -> None:
    assert pwm_current_limit_a(duty) == pytest.approx(amps)


@pytest.mark.parametrize(
    ("duty", "ok"), [(None, False), (7, False), (7.1, True), (50, True), (96.9, True), (97, False)]
)
def test_car_charges_only_while_7_percent_below_duty_below_97(duty: float | None, ok: bool) -> None:
    assert pwm_allows_charging(duty) is ok


def test_regulated_current_follows_duty_and_pauses_outside_7_to_97() -> None:
    car = CarSimulator("draw_power_regulated 32,3", battery=Battery(soc_percent=10))
    expected = [
        (50, C, 30.0),
        (10, C, 6.0),
        (9, C, 6.0),
        (25, C, 15.0),
        (85, C, 32.0),  # 51 A offered, the car wants 32
        (5, B, 0.0),  # 5 % asks for ISO 15118: a basic car waits in B
        (None, B, 0.0),  # PWM stopped: EVSE pause
        (97.5, B, 0.0),
        (40, C, 24.0),  # PWM back: the car returns to C on its own
    ]
    for duty, pilot, amps in expected:
        out = car.step(TICK_S, duty, True)
        assert out.pilot is pilot, duty
        assert out.draw_current_a == pytest.approx(amps), duty


def test_no_current_without_closed_relays() -> None:
    car = CarSimulator("draw_power_regulated 16,1")
    out = car.step(TICK_S, 50, False)
    assert (out.pilot, out.draw_current_a) == (C, 0.0)
    assert car.step(TICK_S, 50, True).draw_current_a == 16.0
    assert car.battery.energy_drawn_wh == pytest.approx(16 * 230 * 0.25 / 3600)


def test_draw_power_fixed_stays_in_c_and_ignores_the_pwm() -> None:
    car = CarSimulator("draw_power_fixed 20,1")
    for duty in (None, 5, 10, 100):
        out = car.step(TICK_S, duty, True)
        assert (out.pilot, out.draw_current_a, out.phases) == (C, 20.0, 1)


def test_the_car_keeps_its_mode_after_the_last_command_and_still_obeys_pwm() -> None:
    car = CarSimulator("iec_wait_pwr_ready;draw_power_regulated 16,3")
    car.step(TICK_S, 50, False)
    assert car.finished
    assert car.step(TICK_S, 50, True).pilot is C
    assert car.step(TICK_S, None, True).pilot is B
    assert car.step(100, 50, True).pilot is C


# --- pause, resume, faults ------------------------------------------------------------------------


def test_pause_and_resume() -> None:
    script = "iec_wait_pwr_ready;draw_power_regulated 16,3;sleep 2;pause;sleep 2;draw_power_regulated 10,1"
    trace = drive(CarSimulator(script), 8, duty=50)
    assert transitions(trace) == [(0.0, B), (0.25, C), (2.25, B), (4.25, C)]
    assert [out.draw_current_a for t, out in trace if t in (2.0, 3.0, 6.0)] == [16.0, 0.0, 10.0]
    assert trace[-1][1].phases == 1


def test_error_e_diode_fail_and_rcd_current_outputs() -> None:
    script = "draw_power_fixed 16,3;sleep 1;rcd_current 30;sleep 1;diode_fail;sleep 1;error_e;sleep 1;unplug"
    car = CarSimulator(script)
    at = {round(t, 2): out for t, out in drive(car, 5, duty=50)}
    assert at[0.5] == CarOutputs(pilot=C, draw_current_a=16.0, phases=3, rcd_milliamps=0.0, diode_fault=False)
    assert at[1.5] == CarOutputs(pilot=C, draw_current_a=16.0, phases=3, rcd_milliamps=30.0, diode_fault=False)
    # a failed diode: the car stops drawing, the pilot level stays as it was
    assert at[2.5] == CarOutputs(pilot=C, draw_current_a=0.0, phases=3, rcd_milliamps=30.0, diode_fault=True)
    assert at[3.5] == CarOutputs(pilot=E, draw_current_a=0.0, phases=3, rcd_milliamps=30.0, diode_fault=True)
    # unplugging takes the car, and with it the leak and the diode, away
    assert at[4.5] == CarOutputs(pilot=A, draw_current_a=0.0, phases=3, rcd_milliamps=0.0, diode_fault=False)


def test_wait_for_real_plugin_blocks_until_a_pilot_is_measured() -> None:
    car = CarSimulator("wait_for_real_plugin;draw_power_regulated 16,3")
    assert car.step(1, None, False, pilot_present=False).pilot is A
    assert isinstance(car.pending[0], WaitForRealPlugin)
    assert car.step(TICK_S, 50, False, pilot_present=True).pilot is C


def test_plugin_replaces_the_rest_of_the_script_from_the_next_tick() -> None:
    car = CarSimulator("sleep 0.25;plugin;unplug", plugin_commands="iec_wait_pwr_ready;draw_power_regulated 16,3")
    assert car.step(TICK_S, 50, False).pilot is A
    assert car.step(TICK_S, 50, False).pilot is A  # plugin swaps the queue during this tick
    assert car.pending == (IecWaitPwrReady(), DrawPowerRegulated(16.0, 3))
    assert car.step(TICK_S, 50, False).pilot is C
    assert car.finished


def test_plugin_without_plugin_commands_is_rejected_up_front() -> None:
    with pytest.raises(ScriptError, match=r"command 2 'plugin': needs plugin_commands"):
        CarSimulator("sleep 1;plugin")
    car = CarSimulator()
    with pytest.raises(ScriptError, match=r"command 1 'plugin': needs plugin_commands"):
        car.load("plugin")


def test_plugin_commands_that_call_plugin_repeat_once_per_tick() -> None:
    car = CarSimulator("plugin", plugin_commands="rcd_current 1;plugin")
    for _ in range(5):
        car.step(TICK_S, None, False)
    assert not car.finished
    assert car.outputs.rcd_milliamps == 1.0


def test_load_replaces_the_pending_commands_and_keeps_the_car() -> None:
    car = CarSimulator("draw_power_fixed 16,3;rcd_current 3;sleep 100")
    car.step(1, None, True)
    car.load("pause")
    out = car.step(TICK_S, None, True)
    assert (out.pilot, out.rcd_milliamps, car.finished) == (B, 3.0, True)


# --- battery: taper, EV pause, set_soc, energy ----------------------------------------------------


def test_taper_reduces_current_above_80_percent_and_stops_at_100() -> None:
    battery = Battery(capacity_kwh=1, soc_percent=79, efficiency=1.0, taper=Taper(start_soc=80, end_current_a=6))
    car = CarSimulator("iec_wait_pwr_ready;draw_power_regulated 16,3", battery=battery)
    samples: list[tuple[float, CarOutputs]] = []
    seen = car.outputs
    for _ in range(4 * 600):
        soc = battery.soc_percent
        seen = car.step(TICK_S, *fake_charger(seen, duty=50))
        samples.append((soc, seen))
    charging = [(soc, out.draw_current_a) for soc, out in samples if out.draw_current_a > 0]
    assert all(amps == 16 for soc, amps in charging if soc <= 80)
    above = [amps for soc, amps in charging if soc > 80]
    assert above and all(6 <= a < 16 for a in above)
    assert above == sorted(above, reverse=True)
    assert battery.full
    assert samples[-1][1].pilot is B  # EV pause: plugged in, asking for nothing
    assert samples[-1][1].draw_current_a == 0.0


def test_set_soc_below_full_resumes_an_ev_pause() -> None:
    car = CarSimulator("set_soc 100;draw_power_regulated 16,3;sleep 1;set_soc 50")
    trace = drive(car, 2, duty=50)
    assert transitions(trace) == [(0.0, B), (1.0, C)]
    assert car.battery.soc_percent == pytest.approx(50, abs=0.01)


@pytest.mark.parametrize("dts", [[TICK_S], [0.1, 0.37, 0.05, 1.3], [2.0]])
def test_energy_conservation_soc_change_equals_drawn_energy_times_efficiency(dts: list[float]) -> None:
    battery = Battery(capacity_kwh=40, soc_percent=20, efficiency=0.88)
    car = CarSimulator("draw_power_regulated 32,3", battery=battery)
    i = 0
    while car.now < 900:
        car.step(dts[i % len(dts)], 50, True)
        i += 1
    assert battery.energy_drawn_wh > 0
    expected = 20 + battery.energy_drawn_wh * 0.88 / 40_000 * 100
    assert battery.soc_percent == pytest.approx(expected, rel=1e-9)


def test_metered_energy_equals_the_integral_of_the_reported_current() -> None:
    car = CarSimulator(AC_BASIC)
    trace = drive(car, 40)  # aligned steps: each step's current is what the car reported for it
    integral_wh = sum(out.draw_current_a * 230 * out.phases * TICK_S / 3600 for _, out in trace)
    assert car.battery.energy_drawn_wh == pytest.approx(integral_wh)


# --- inputs ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("dt", [-0.1, math.nan, math.inf])
def test_bad_dt_is_rejected(dt: float) -> None:
    with pytest.raises(ValueError, match="dt must be"):
        CarSimulator().step(dt, None, False)


@pytest.mark.parametrize("duty", [-1, 100.5, math.nan])
def test_bad_duty_is_rejected(duty: float) -> None:
    with pytest.raises(ValueError, match="pwm_duty_percent"):
        CarSimulator().step(0.25, duty, False)


def test_advance_to_uses_absolute_time_and_never_goes_back() -> None:
    car = CarSimulator("sleep 1;pause")
    assert car.advance_to(1.0, None, False).pilot is A
    assert car.advance_to(1.01, None, False).pilot is B
    with pytest.raises(ValueError, match="cannot go back"):
        car.advance_to(0.5, None, False)


# --- parser ---------------------------------------------------------------------------------------


def test_ac_basic_parses_to_typed_commands() -> None:
    assert parse(AC_BASIC) == (
        Sleep(1.0),
        IecWaitPwrReady(),
        Sleep(1.0),
        DrawPowerRegulated(16.0, 3),
        Sleep(30.0),
        Unplug(),
    )


def test_case_newlines_commas_blanks_and_empty_commands() -> None:
    want = parse(AC_BASIC)
    assert parse(AC_BASIC.upper()) == want
    assert parse(AC_BASIC.replace(";", "\n")) == want
    assert parse(AC_BASIC.replace(";", "\r\n")) == want
    assert parse(AC_BASIC.replace("16,3", "16 3")) == want
    assert parse(AC_BASIC.replace("16,3", "16, 3")) == want
    assert parse(";;" + AC_BASIC.replace(";", " ;\n ; ") + ";\n") == want
    assert parse("") == ()
    assert parse(" ; \n ;") == ()


def test_every_basic_command_parses() -> None:
    text = (
        "sleep 0.5;iec_wait_pwr_ready;draw_power_regulated 6,1;draw_power_fixed 32.5,2;pause;unplug;"
        "wait_for_real_plugin;error_e;diode_fail;rcd_current 6;set_soc 80;set_soc 0"
    )
    assert parse(text) == (
        Sleep(0.5),
        IecWaitPwrReady(),
        DrawPowerRegulated(6.0, 1),
        DrawPowerFixed(32.5, 2),
        Pause(),
        Unplug(),
        WaitForRealPlugin(),
        ErrorE(),
        DiodeFail(),
        RcdCurrent(6.0),
        SetSoc(80.0),
        SetSoc(0.0),
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "sleep 1;iec_wait_pwr_ready;draw_power_regulated 16",
            "command 3 'draw_power_regulated 16': expects 2 arguments (A, phases)",
        ),
        ("draw_power_fixed 16,3,1", "command 1 'draw_power_fixed 16,3,1': expects 2 arguments (A, phases)"),
        ("sleep", "command 1 'sleep': expects 1 argument (s)"),
        ("sleep 1 2", "command 1 'sleep 1 2': expects 1 argument (s)"),
        ("pause now", "command 1 'pause now': expects no arguments"),
        (";;unplug;;Fly 1", "command 2 'Fly 1': unknown command 'fly'"),
        ("sleep abc", "command 1 'sleep abc': s: 'abc' is not a number"),
        ("sleep 1x", "command 1 'sleep 1x': s: '1x' is not a number"),
        ("sleep nan", "command 1 'sleep nan': s: 'nan' is not a number"),
        ("sleep inf", "command 1 'sleep inf': s: 'inf' is not a number"),
        ("sleep 0x10", "command 1 'sleep 0x10': s: '0x10' is not a number"),
        ("sleep 1e999", "command 1 'sleep 1e999': s: 1e999 is too large"),
        ("sleep 2e9", "command 1 'sleep 2e9': s: 2e9 is above 1e+09"),
        ("sleep -1", "command 1 'sleep -1': s: -1 is negative"),
        ("draw_power_fixed -16,3", "command 1 'draw_power_fixed -16,3': A: -16 is negative"),
        ("rcd_current -0.5", "command 1 'rcd_current -0.5': mA: -0.5 is negative"),
        ("set_soc 101", "command 1 'set_soc 101': pct: 101 is above 100"),
        ("draw_power_regulated 16,4", "command 1 'draw_power_regulated 16,4': phases: '4' is not 1, 2 or 3"),
        ("draw_power_regulated 16,3.0", "command 1 'draw_power_regulated 16,3.0': phases: '3.0' is not 1, 2 or 3"),
    ],
)
def test_script_errors_name_the_command_and_the_reason(text: str, message: str) -> None:
    with pytest.raises(ScriptError) as info:
        parse(text)
    assert str(info.value) == message


def test_script_error_carries_index_command_and_reason() -> None:
    with pytest.raises(ScriptError) as info:
        parse("sleep 1\nSLEEP -2")
    assert (info.value.index, info.value.command, info.value.reason) == (2, "SLEEP -2", "s: -2 is negative")
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    "command",
    [
        "iso_wait_pwm_is_running",
        "iso_wait_slac_matched",
        "iso_start_v2g_session ac",
        "iso_start_v2g_session dc,contract,3600,20000",
        "iso_wait_pwr_ready",
        "iso_dc_power_on",
        "iso_draw_power_regulated 16,3",
        "iso_stop_charging",
        "iso_pause_charging",
        "iso_wait_for_stop 15",
        "iso_wait_v2g_session_stopped",
        "iso_wait_for_resume",
        "iso_start_bcb_toggle 3",
    ],
)
def test_iso_commands_are_recognised_and_rejected(command: str) -> None:
    with pytest.raises(ScriptError, match="needs ISO 15118 support, which this simulator does not have yet"):
        parse(f"sleep 1;{command.upper()}")


def test_everest_dc_iso_config_fails_on_its_first_iso_command() -> None:
    dc_iso = (
        "sleep 3;iso_wait_slac_matched;iso_start_v2g_session DC;iso_wait_pwr_ready;iso_dc_power_on;"
        "iso_wait_for_stop 15;iso_wait_v2g_session_stopped;unplug;"
    )
    with pytest.raises(ScriptError) as info:
        parse(dc_iso)
    assert (info.value.index, info.value.command) == (2, "iso_wait_slac_matched")


@given(st.text())
def test_arbitrary_text_parses_or_raises_script_error(text: str) -> None:
    try:
        parse(text)
    except ScriptError:
        pass


_ALPHABET = "sleepunplugdrawpowerregulatedfixedcsoiec_ 0123456789.,;\n-+eE\r\t"


@given(st.text(alphabet=_ALPHABET, max_size=80))
def test_command_like_text_parses_or_raises_script_error(text: str) -> None:
    try:
        commands = parse(text)
    except ScriptError as exc:
        assert exc.index >= 1
    else:
        assert all(dataclasses.is_dataclass(c) for c in commands)


# --- property: any valid script and any inputs keep the car's invariants ---------------------------

_NAMES: dict[type, str] = {
    Sleep: "sleep",
    IecWaitPwrReady: "iec_wait_pwr_ready",
    DrawPowerRegulated: "draw_power_regulated",
    DrawPowerFixed: "draw_power_fixed",
    Pause: "pause",
    Unplug: "unplug",
    WaitForRealPlugin: "wait_for_real_plugin",
    ErrorE: "error_e",
    DiodeFail: "diode_fail",
    RcdCurrent: "rcd_current",
    SetSoc: "set_soc",
}
_amps = st.floats(0, 80)
_phases = st.sampled_from([1, 2, 3])
_commands = st.one_of(
    st.builds(Sleep, st.floats(0, 3)),
    st.builds(DrawPowerRegulated, _amps, _phases),
    st.builds(DrawPowerFixed, _amps, _phases),
    st.builds(RcdCurrent, st.floats(0, 50)),
    st.builds(SetSoc, st.floats(0, 100)),
    st.sampled_from([IecWaitPwrReady(), Pause(), Unplug(), WaitForRealPlugin(), ErrorE(), DiodeFail()]),
)


def _text(command: SimCommand) -> str:
    args = ",".join(repr(v) for v in dataclasses.astuple(command))
    return f"{_NAMES[type(command)]} {args}".strip()


@given(st.lists(_commands, max_size=12))
def test_written_scripts_parse_back_to_the_same_commands(commands: list[SimCommand]) -> None:
    assert parse(";".join(_text(c) for c in commands)) == tuple(commands)


@settings(max_examples=60)
@given(
    commands=st.lists(_commands, max_size=10),
    inputs=st.lists(
        st.tuples(st.floats(0, 2), st.one_of(st.none(), st.floats(0, 100)), st.booleans(), st.booleans()),
        max_size=30,
    ),
)
def test_any_script_and_inputs_keep_the_invariants(
    commands: list[SimCommand], inputs: list[tuple[float, float | None, bool, bool]]
) -> None:
    car = CarSimulator(commands, battery=Battery(capacity_kwh=0.5, soc_percent=90))
    for dt, duty, relays, present in inputs:
        before = car.battery.energy_drawn_wh
        out = car.step(dt, duty, relays, pilot_present=present)
        assert out.pilot in (A, B, C, E)
        assert out.draw_current_a >= 0
        if out.draw_current_a > 0:
            assert relays and out.pilot is C
        if not relays:
            assert car.battery.energy_drawn_wh == before
        assert 0 <= car.battery.soc_percent <= 100
