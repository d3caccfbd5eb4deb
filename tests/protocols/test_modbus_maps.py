"""Register maps and decoding, against exact register words (no I/O)."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import pytest
from charger.protocols.modbus_maps import (
    MAX_READ_COUNT,
    SDM630,
    SUNS_MARKER,
    DataType,
    MeterReading,
    ModelHeader,
    Point,
    Quantity,
    ReadBlock,
    RegisterDecodeError,
    RegisterMap,
    SunSpecError,
    Table,
    WordOrder,
    decode_points,
    discover_models,
    encode_point,
    find_meter_model,
    plan_reads,
    sunspec_meter_map,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support.fuzz import PURE, ROUND_TRIP

Q = Quantity

# --- SDM630 -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("quantity", "register_number"),
    [
        (Q.VOLTAGE_L1_V, 30001),
        (Q.VOLTAGE_L2_V, 30003),
        (Q.VOLTAGE_L3_V, 30005),
        (Q.CURRENT_L1_A, 30007),
        (Q.CURRENT_L2_A, 30009),
        (Q.CURRENT_L3_A, 30011),
        (Q.POWER_W, 30053),
        (Q.FREQUENCY_HZ, 30071),
        (Q.ENERGY_IMPORT_WH, 30073),
    ],
)
def test_sdm630_points_follow_eastrons_register_numbers(quantity: Quantity, register_number: int) -> None:
    point = SDM630.point(quantity)
    assert point is not None
    assert point.address == register_number - 30001
    assert (point.table, point.data_type, point.word_order) == (Table.INPUT, DataType.FLOAT32, WordOrder.BIG)


def test_sdm630_is_read_in_three_contiguous_blocks() -> None:
    assert plan_reads(SDM630) == (
        ReadBlock(Table.INPUT, 0x00, 12),  # voltages and currents, 30001-30012
        ReadBlock(Table.INPUT, 0x34, 2),  # total system power, 30053
        ReadBlock(Table.INPUT, 0x46, 4),  # frequency and import energy, 30071-30074
    )


SDM630_WORDS = {
    0x00: 0x4366, 0x01: 0x0000,  # L1 230.0 V
    0x02: 0x4367, 0x03: 0x8000,  # L2 231.5 V
    0x04: 0x4366, 0x05: 0x0000,  # L3 230.0 V
    0x06: 0x4180, 0x07: 0x0000,  # L1 16.0 A
    0x08: 0x4180, 0x09: 0x0000,  # L2 16.0 A
    0x0A: 0x3F00, 0x0B: 0x0000,  # L3 0.5 A
    0x34: 0x462C, 0x35: 0x8000,  # 11040.0 W
    0x46: 0x4248, 0x47: 0x0000,  # 50.0 Hz
    0x48: 0x449A, 0x49: 0x5000,  # 1234.5 kWh
}  # fmt: skip


def test_decode_sdm630_from_exact_words() -> None:
    assert decode_points(SDM630, {Table.INPUT: SDM630_WORDS}) == MeterReading(
        energy_import_wh=1234500.0,
        power_w=11040.0,
        currents_a=(16.0, 16.0, 0.5),
        voltages_v=(230.0, 231.5, 230.0),
        frequency_hz=50.0,
    )


def test_sdm630_has_no_sentinels_so_nan_is_passed_on_for_the_driver_to_reject() -> None:
    words = {**SDM630_WORDS, 0x34: 0x7FC0, 0x35: 0x0000}
    reading = decode_points(SDM630, {Table.INPUT: words})
    assert reading.power_w is not None and math.isnan(reading.power_w)


def test_holding_registers_do_not_stand_in_for_input_registers() -> None:
    with pytest.raises(RegisterDecodeError, match="not in the image"):
        decode_points(SDM630, {Table.HOLDING: SDM630_WORDS})


# --- data types, word order, sentinels --------------------------------------------------------------


def _one(
    data_type: DataType, order: WordOrder = WordOrder.BIG, *, sunspec: bool = False, scale: float = 1.0
) -> RegisterMap:
    """A map with one point, POWER_W at holding register 10."""
    point = Point(
        quantity=Q.POWER_W, address=10, table=Table.HOLDING, data_type=data_type, word_order=order, scale=scale
    )
    return RegisterMap(name="one", points=(point,), sunspec_sentinels=sunspec)


def _power(register_map: RegisterMap, words: Sequence[int], extra: Mapping[int, int] | None = None) -> float | None:
    image = {10 + i: w for i, w in enumerate(words)} | dict(extra or {})
    return decode_points(register_map, {Table.HOLDING: image}).power_w


@pytest.mark.parametrize(
    ("data_type", "words", "value"),
    [
        (DataType.INT16, [0xFFFF], -1.0),
        (DataType.INT16, [0x7FFF], 32767.0),
        (DataType.UINT16, [0xFFFF], 65535.0),
        (DataType.INT32, [0xFFFF, 0xFFFE], -2.0),
        (DataType.UINT32, [0x0001, 0x0000], 65536.0),
        (DataType.ACC32, [0x0001, 0x86A0], 100000.0),
        (DataType.FLOAT32, [0xBF80, 0x0000], -1.0),
        (DataType.SUNSSF, [0xFFFE], -2.0),
    ],
)
def test_data_types_decode_big_word_order(data_type: DataType, words: list[int], value: float) -> None:
    assert _power(_one(data_type), words) == value


@pytest.mark.parametrize(
    ("data_type", "words", "value"),
    [
        (DataType.UINT32, [0x0000, 0x0001], 65536.0),
        (DataType.INT32, [0xFFFE, 0xFFFF], -2.0),
        (DataType.FLOAT32, [0x0000, 0x4366], 230.0),
    ],
)
def test_little_word_order_puts_the_low_word_first(data_type: DataType, words: list[int], value: float) -> None:
    assert _power(_one(data_type, WordOrder.LITTLE), words) == value


def test_fixed_scale_multiplies() -> None:
    assert _power(_one(DataType.UINT16, scale=0.1), [2301]) == pytest.approx(230.1)


@pytest.mark.parametrize(
    ("data_type", "words"),
    [
        (DataType.INT16, [0x8000]),
        (DataType.UINT16, [0xFFFF]),
        (DataType.INT32, [0x8000, 0x0000]),
        (DataType.UINT32, [0xFFFF, 0xFFFF]),
        (DataType.ACC32, [0x0000, 0x0000]),  # SunSpec: an accumulator reading 0 is "not implemented"
        (DataType.FLOAT32, [0x7FC0, 0x0000]),
        (DataType.FLOAT32, [0x7FC0, 0x0001]),  # any NaN, not just the canonical one
    ],
)
def test_sunspec_not_implemented_values_read_as_missing(data_type: DataType, words: list[int]) -> None:
    assert _power(_one(data_type, sunspec=True), words) is None


def test_sentinels_are_ordinary_values_without_sunspec_semantics() -> None:
    assert _power(_one(DataType.INT16), [0x8000]) == -32768.0
    assert _power(_one(DataType.ACC32), [0, 0]) == 0.0


def test_acc32_0x80000000_is_a_value_not_a_sentinel() -> None:
    assert _power(_one(DataType.ACC32, sunspec=True), [0x8000, 0x0000]) == 2147483648.0


def test_missing_register_and_bad_words_are_typed_errors() -> None:
    with pytest.raises(RegisterDecodeError, match="register 11"):
        _power(_one(DataType.UINT32), [0x0001])
    for bad in (0x10000, -1, True):
        with pytest.raises(RegisterDecodeError, match="not a 16-bit word"):
            _power(_one(DataType.UINT16), [bad])


# --- SunSpec scale factors ---------------------------------------------------------------------------

M = 40070  # where the model's ID register sits in these images (as in the simulator)
METER_203 = sunspec_meter_map(ModelHeader(203, M, 105))


def sunspec_words(**override: int) -> dict[int, int]:
    """Model 203 points and scale factors by offset from the ID register; override by 'o<offset>'."""
    words = {
        3: 1600, 4: 1600, 5: 50,  # AphA..AphC
        6: 0xFFFE,  # A_SF -2
        8: 2301, 9: 2300, 10: 2299,  # PhVphA..C
        15: 0xFFFF,  # V_SF -1
        16: 5000, 17: 0xFFFE,  # Hz, Hz_SF -2
        18: 1104, 22: 0x0001,  # W, W_SF 1
        46: 0x0001, 47: 0x86A0,  # TotWhImp 100000
        54: 0x0000,  # TotWh_SF 0
    }  # fmt: skip
    words.update({int(k[1:]): v for k, v in override.items()})
    filler = dict.fromkeys(range(M + 2, M + 107), 0x8000)
    return filler | {M + offset: word for offset, word in words.items()}


def test_sunspec_points_sit_at_the_model_offsets() -> None:
    offsets = {p.quantity: (p.address - M, p.scale_factor_address) for p in METER_203.points}
    assert offsets == {
        Q.CURRENT_L1_A: (3, M + 6),
        Q.CURRENT_L2_A: (4, M + 6),
        Q.CURRENT_L3_A: (5, M + 6),
        Q.VOLTAGE_L1_V: (8, M + 15),
        Q.VOLTAGE_L2_V: (9, M + 15),
        Q.VOLTAGE_L3_V: (10, M + 15),
        Q.FREQUENCY_HZ: (16, M + 17),
        Q.POWER_W: (18, M + 22),
        Q.ENERGY_IMPORT_WH: (46, M + 54),
    }
    assert all(p.table is Table.HOLDING for p in METER_203.points)


def test_a_sunspec_model_is_read_in_one_block() -> None:
    assert plan_reads(METER_203) == (ReadBlock(Table.HOLDING, M + 3, 52),)


def test_scale_factors_apply_exactly() -> None:
    assert decode_points(METER_203, {Table.HOLDING: sunspec_words()}) == MeterReading(
        energy_import_wh=100000.0,
        power_w=11040.0,
        currents_a=(16.0, 16.0, 0.5),
        voltages_v=(230.1, 230.0, 229.9),
        frequency_hz=50.0,
    )


def test_positive_energy_scale_factor() -> None:
    reading = decode_points(METER_203, {Table.HOLDING: sunspec_words(o54=3)})
    assert reading.energy_import_wh == 100_000_000.0


def test_not_implemented_scale_factor_makes_its_points_missing() -> None:
    reading = decode_points(METER_203, {Table.HOLDING: sunspec_words(o15=0x8000)})
    assert reading.voltages_v == (None, None, None)
    assert reading.currents_a == (16.0, 16.0, 0.5)


def test_not_implemented_points_read_as_missing() -> None:
    reading = decode_points(METER_203, {Table.HOLDING: sunspec_words(o5=0x8000, o46=0, o47=0)})
    assert reading.currents_a == (16.0, 16.0, None)
    assert reading.energy_import_wh is None


@pytest.mark.parametrize("word", [11, 0xFFF5, 0x7FFF])  # 11, -11, 32767
def test_scale_factor_outside_minus_ten_to_ten_is_a_typed_error(word: int) -> None:
    with pytest.raises(RegisterDecodeError, match="scale factor"):
        decode_points(METER_203, {Table.HOLDING: sunspec_words(o22=word)})


# --- encoding (the simulator's side) -----------------------------------------------------------------


def test_encode_is_the_inverse_of_decode() -> None:
    for point in SDM630.points:
        value = 1234500.0 if point.quantity is Q.ENERGY_IMPORT_WH else 1234.5  # both exact in float32
        words = encode_point(point, value)
        image = {point.address + i: w for i, w in enumerate(words)}
        assert _decode_one(point, image) == value
    energy = METER_203.point(Q.ENERGY_IMPORT_WH)
    assert energy is not None
    assert encode_point(energy, 100000.9) == (0x0001, 0x86A0)  # accumulators floor: never ahead of the truth
    voltage = METER_203.point(Q.VOLTAGE_L1_V)
    assert voltage is not None
    assert encode_point(voltage, 230.1, scale_factor=-1) == (2301,)
    assert encode_point(voltage, None) == (0x8000,)


def test_encode_little_word_order_and_overflow() -> None:
    point = Point(
        quantity=Q.POWER_W, address=0, table=Table.INPUT, data_type=DataType.UINT32, word_order=WordOrder.LITTLE
    )
    assert encode_point(point, 65536) == (0x0000, 0x0001)
    int16 = Point(quantity=Q.POWER_W, address=0, table=Table.INPUT, data_type=DataType.INT16)
    with pytest.raises(ValueError, match="does not fit"):
        encode_point(int16, 40000)


def _decode_one(point: Point, image: dict[int, int]) -> float | None:
    single = RegisterMap(name="single", points=(point,))
    return _field(decode_points(single, {point.table: image}), point.quantity)


def _field(reading: MeterReading, quantity: Quantity) -> float | None:
    by_quantity = {
        Q.ENERGY_IMPORT_WH: reading.energy_import_wh,
        Q.POWER_W: reading.power_w,
        Q.CURRENT_L1_A: reading.currents_a[0],
        Q.CURRENT_L2_A: reading.currents_a[1],
        Q.CURRENT_L3_A: reading.currents_a[2],
        Q.VOLTAGE_L1_V: reading.voltages_v[0],
        Q.VOLTAGE_L2_V: reading.voltages_v[1],
        Q.VOLTAGE_L3_V: reading.voltages_v[2],
        Q.FREQUENCY_HZ: reading.frequency_hz,
    }
    return by_quantity[quantity]


# --- maps as data: validation and read planning ------------------------------------------------------


def test_points_and_maps_are_validated_when_built() -> None:
    with pytest.raises(ValueError, match="address"):
        Point(quantity=Q.POWER_W, address=0xFFFF, table=Table.INPUT, data_type=DataType.FLOAT32)
    with pytest.raises(ValueError, match="scale"):
        Point(quantity=Q.POWER_W, address=0, table=Table.INPUT, data_type=DataType.FLOAT32, scale=0.0)
    point = Point(quantity=Q.POWER_W, address=0, table=Table.INPUT, data_type=DataType.FLOAT32)
    with pytest.raises(ValueError, match="twice"):
        RegisterMap(name="dup", points=(point, point))


def test_plan_reads_splits_at_the_request_size_limit_and_by_table() -> None:
    far = Point(quantity=Q.ENERGY_IMPORT_WH, address=200, table=Table.INPUT, data_type=DataType.UINT32)
    near = Point(quantity=Q.POWER_W, address=0, table=Table.INPUT, data_type=DataType.INT16)
    other = Point(quantity=Q.FREQUENCY_HZ, address=1, table=Table.HOLDING, data_type=DataType.UINT16)
    register_map = RegisterMap(name="wide", points=(far, near, other), max_gap=1000)
    assert plan_reads(register_map) == (
        ReadBlock(Table.HOLDING, 1, 1),
        ReadBlock(Table.INPUT, 0, 1),
        ReadBlock(Table.INPUT, 200, 2),
    )
    assert all(block.count <= MAX_READ_COUNT for block in plan_reads(register_map))


# --- SunSpec discovery over a register image ---------------------------------------------------------


def sunspec_image(base: int = 40000, *, end_marker: bool = True, meter: int = 203) -> dict[int, int]:
    """SunS, common model (L 66), a meter model (L 105) and the end marker, from `base`."""
    image = dict(enumerate(SUNS_MARKER, base))
    image |= {base + 2: 1, base + 3: 66} | dict.fromkeys(range(base + 4, base + 70), 0x2020)
    model = base + 70
    image |= {model: meter, model + 1: 105} | dict.fromkeys(range(model + 2, model + 107), 0)
    if end_marker:
        image |= {model + 107: 0xFFFF, model + 108: 0}
    return image


def reader(image: Mapping[int, int]) -> Callable[[int, int], list[int] | None]:
    def read(address: int, count: int) -> list[int] | None:
        words = [image.get(a) for a in range(address, address + count)]
        return None if None in words else [w for w in words if w is not None]

    return read


def test_discovery_walks_model_headers_from_the_suns_marker() -> None:
    models = discover_models(reader(sunspec_image()))
    assert models == (ModelHeader(1, 40002, 66), ModelHeader(203, 40070, 105))
    meter = find_meter_model(models)
    assert meter == ModelHeader(203, 40070, 105)
    power = sunspec_meter_map(meter).point(Q.POWER_W)
    assert power is not None and power.address == 40088


def test_discovery_tries_the_other_base_addresses() -> None:
    assert discover_models(reader(sunspec_image(50000)))[1] == ModelHeader(203, 50070, 105)
    assert discover_models(reader(sunspec_image(0)))[1] == ModelHeader(203, 70, 105)


def test_discovery_stops_where_the_device_has_no_registers() -> None:
    assert [m.model_id for m in discover_models(reader(sunspec_image(end_marker=False)))] == [1, 203]


@pytest.mark.parametrize("meter", [201, 202, 203, 204])
def test_every_meter_model_maps_to_the_same_layout(meter: int) -> None:
    header = find_meter_model(discover_models(reader(sunspec_image(meter=meter))))
    assert header.model_id == meter
    assert plan_reads(sunspec_meter_map(header)) == (ReadBlock(Table.HOLDING, 40073, 52),)


def test_discovery_failures_are_typed() -> None:
    with pytest.raises(SunSpecError, match="SunS"):
        discover_models(reader({40000: 0x1234, 40001: 0x5678}))
    with pytest.raises(SunSpecError, match="no meter model"):
        find_meter_model(discover_models(reader(sunspec_image(meter=101))))  # an inverter, not a meter
    with pytest.raises(SunSpecError, match="length"):
        sunspec_meter_map(ModelHeader(203, 40070, 50))
    with pytest.raises(SunSpecError, match="not a SunSpec meter"):
        sunspec_meter_map(ModelHeader(101, 40070, 105))


# --- property: no input makes decoding raise anything but a typed error ------------------------------

MAPS = [SDM630, *(sunspec_meter_map(ModelHeader(m, 40070, 105)) for m in (201, 202, 203, 204))]
words_or_junk = st.one_of(
    st.integers(0, 0xFFFF),
    st.integers(0, 0xFFFF),
    st.sampled_from([0x8000, 0xFFFF, 0x0000, 0x7FC0, 0x7F80, 0xFF80]),  # sentinels, NaN and inf halves
    st.integers(),
    st.booleans(),
    st.floats(),
    st.none(),
)


def _needed(register_map: RegisterMap) -> list[int]:
    return [b.address + i for b in plan_reads(register_map) for i in range(b.count)]


@st.composite
def map_and_image(draw: st.DrawFn) -> tuple[RegisterMap, dict[Table, dict[int, object]]]:
    register_map = draw(st.sampled_from(MAPS))
    keys = st.one_of(st.sampled_from(_needed(register_map)), st.integers(-5, 70000))
    image = draw(st.dictionaries(keys, words_or_junk, max_size=80))
    if draw(st.booleans()):  # often a complete image, so decoding gets past "missing register"
        image = {a: draw(words_or_junk) for a in _needed(register_map)} | image
    table = draw(st.sampled_from([register_map.points[0].table, Table.HOLDING, Table.INPUT]))
    return register_map, {table: image}


@settings(max_examples=500, deadline=None)  # 80 draws a case: the byte-image test below does the bulk
@given(map_and_image())
def test_decode_never_raises_anything_but_a_typed_error(
    case: tuple[RegisterMap, dict[Table, dict[int, object]]],
) -> None:
    register_map, image = case
    try:
        reading = decode_points(register_map, image)  # type: ignore[arg-type]  # junk words on purpose
    except RegisterDecodeError:
        return
    for value in (
        reading.energy_import_wh,
        reading.power_w,
        reading.frequency_hz,
        *reading.currents_a,
        *reading.voltages_v,
    ):
        assert value is None or isinstance(value, float)


@PURE
@given(st.dictionaries(st.integers(39990, 40300), words_or_junk, max_size=120), st.booleans())
def test_discovery_never_raises_anything_but_a_typed_error(image: dict[int, object], with_marker: bool) -> None:
    if with_marker:
        image |= dict(enumerate(SUNS_MARKER, 40000))
    try:
        models = discover_models(reader(image))  # type: ignore[arg-type]  # junk words on purpose
        sunspec_meter_map(find_meter_model(models))
    except SunSpecError:
        return


@st.composite
def complete_images(draw: st.DrawFn) -> tuple[RegisterMap, dict[Table, dict[int, int]]]:
    """Every register a map needs, as a device might hold them: random bytes, so NaN, infinities,
    sentinels and out-of-range scale factors all turn up (one draw per image keeps this fast)."""
    register_map = draw(st.sampled_from(MAPS))
    needed = _needed(register_map)
    raw = draw(st.binary(min_size=2 * len(needed), max_size=2 * len(needed)))
    image = {a: int.from_bytes(raw[2 * i : 2 * i + 2], "big") for i, a in enumerate(needed)}
    return register_map, {register_map.points[0].table: image}


@PURE
@given(complete_images())
def test_any_complete_image_decodes_or_raises_a_typed_error(
    case: tuple[RegisterMap, dict[Table, dict[int, int]]],
) -> None:
    register_map, image = case
    try:
        reading = decode_points(register_map, image)
    except RegisterDecodeError as exc:
        assert "scale factor" in str(exc)  # the only thing a complete image of words can get wrong
        return
    assert all(v is None or isinstance(v, float) for v in (reading.power_w, *reading.currents_a, *reading.voltages_v))


_MAP_OF_POINT = [(m, p) for m in MAPS for p in m.points]


@ROUND_TRIP
@given(st.sampled_from(_MAP_OF_POINT), st.floats(-1e7, 1e7), st.integers(-3, 3))
def test_what_the_simulator_encodes_the_driver_decodes(
    case: tuple[RegisterMap, Point], value: float, scale_factor: int
) -> None:
    register_map, point = case
    sf = scale_factor if point.scale_factor_address is not None else 0
    try:
        words = encode_point(point, value, scale_factor=sf)
    except ValueError:
        return  # does not fit the type at this scale: the simulator is told, never the wire
    image = {point.address + i: w for i, w in enumerate(words)}
    if point.scale_factor_address is not None:
        image[point.scale_factor_address] = sf & 0xFFFF
    single = RegisterMap(name="one", points=(point,), sunspec_sentinels=register_map.sunspec_sentinels)
    decoded = _field(decode_points(single, {point.table: image}), point.quantity)
    if decoded is None:  # the value happened to encode as the SunSpec "not implemented" sentinel
        assert register_map.sunspec_sentinels
        return
    step = abs(point.scale) * 10.0**sf  # one count of an integer type
    if point.data_type is DataType.FLOAT32:
        assert math.isclose(decoded, value, rel_tol=1e-6, abs_tol=1e-30 * abs(point.scale)), (decoded, value)
    elif point.data_type is DataType.ACC32:
        assert -1e-9 * step <= value - decoded < step * (1 + 1e-9), (decoded, value)  # floored, never ahead
    else:
        assert abs(decoded - value) <= step / 2 * (1 + 1e-9), (decoded, value)
