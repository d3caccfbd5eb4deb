"""Power-meter register maps as data, and pure decoding of the registers a meter returns.

A `RegisterMap` lists `Point`s: which quantity, at which register address (the 0-based PDU address, as
sent on the wire), in which table (input or holding), as which data type and word order, and how it is
scaled (a fixed factor, or a SunSpec scale-factor register). `plan_reads` groups the points into block
reads; `decode_points` turns a register image (address → 16-bit word) into a `MeterReading`.
No I/O here: the driver in `charger.hal.meter` reads the blocks, the simulator in
`charger.sim.meter_server` serves them (with `encode_point`), and both share these maps.

Maps:
- `SDM630`: Eastron SDM630 (DIN-rail, 3-phase). Input registers (function 04), IEEE-754 float32, high
  word first. Register numbers from Eastron's "SDM630 Modbus protocol" table, 3xxxx numbering
  (PDU address = number - 30001): 30001/30003/30005 phase L-N volts, 30007/30009/30011 phase
  currents, 30053 total system power (W), 30071 frequency (Hz), 30073 total import energy (kWh).
- SunSpec meters 201 (single phase), 202 (split phase), 203 (wye), 204 (delta): holding registers,
  int16 with `sunssf` scale-factor registers, acc32 energy. Layout from the SunSpec model definitions
  (`sunspec/models`, json/model_20x.json; the four models share one layout, length 105). A device is
  found by `discover_models`: the "SunS" marker at 40000 (or 50000, or 0), then model headers
  (ID, L) walked until the end marker ID 0xFFFF; model 1 ("common") comes first.
- SunSpec "not implemented" values read as missing (None), per the SunSpec reference library
  (`pysunspec2`, sunspec2/mb.py): int16 and sunssf 0x8000, uint16 0xFFFF, int32 0x80000000,
  uint32 0xFFFFFFFF, float32 NaN, and **acc32 0** (an accumulator that reads 0 is "not implemented";
  0x80000000 is the int32 sentinel, not the acc32 one).
"""

from __future__ import annotations

import enum
import math
import struct
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

__all__ = [
    "MAX_READ_COUNT",
    "NOT_IMPLEMENTED",
    "SDM630",
    "SUNSPEC_METER_LENGTH",
    "SUNSPEC_METER_MODELS",
    "SUNS_MARKER",
    "DataType",
    "MeterReading",
    "ModelHeader",
    "Point",
    "Quantity",
    "ReadBlock",
    "RegisterDecodeError",
    "RegisterImage",
    "RegisterMap",
    "SunSpecError",
    "SunSpecProbe",
    "Table",
    "WordOrder",
    "decode_points",
    "discover_models",
    "encode_point",
    "find_meter_model",
    "plan_reads",
    "sunspec_meter_map",
]

MAX_READ_COUNT = 125
"""Most registers one read may ask for (Modbus Application Protocol V1.1b3, functions 03 and 04)."""


class RegisterDecodeError(ValueError):
    """A register image cannot be decoded: a register is missing, a word is not 16 bits, or a scale
    factor is out of range. The driver turns this into `MeterOffline`; it never escapes as anything else."""


class SunSpecError(RegisterDecodeError):
    """No SunSpec marker, a malformed model list, or no meter model (201-204) on the device."""


class Quantity(enum.StrEnum):
    """What a point measures; the value is the field name used in logs and configuration."""

    ENERGY_IMPORT_WH = "energy_import_wh"
    POWER_W = "power_w"
    CURRENT_L1_A = "current_l1_a"
    CURRENT_L2_A = "current_l2_a"
    CURRENT_L3_A = "current_l3_a"
    VOLTAGE_L1_V = "voltage_l1_v"
    VOLTAGE_L2_V = "voltage_l2_v"
    VOLTAGE_L3_V = "voltage_l3_v"
    FREQUENCY_HZ = "frequency_hz"


class Table(enum.IntEnum):
    """The Modbus table a register lives in; the value is the function code that reads it."""

    HOLDING = 3
    INPUT = 4


class DataType(enum.Enum):
    """How the words of a point are interpreted. ACC32 is SunSpec's unsigned energy accumulator and
    SUNSSF its int16 scale-factor exponent; they differ from UINT32/INT16 only in their sentinels."""

    INT16 = "int16"
    UINT16 = "uint16"
    INT32 = "int32"
    UINT32 = "uint32"
    ACC32 = "acc32"
    FLOAT32 = "float32"
    SUNSSF = "sunssf"


class WordOrder(enum.Enum):
    """Order of the 16-bit words of a 32-bit value; bytes within a word are always big-endian (Modbus)."""

    BIG = "big"
    """Most significant word first (SunSpec, Eastron)."""
    LITTLE = "little"
    """Least significant word first (some Chinese meters, some PLCs)."""


# struct format (big-endian, on the words put in big order) and word count of each type.
_FORMAT: dict[DataType, tuple[str, int]] = {
    DataType.INT16: (">h", 1),
    DataType.UINT16: (">H", 1),
    DataType.INT32: (">i", 2),
    DataType.UINT32: (">I", 2),
    DataType.ACC32: (">I", 2),
    DataType.FLOAT32: (">f", 2),
    DataType.SUNSSF: (">h", 1),
}

NOT_IMPLEMENTED: Mapping[DataType, tuple[int, ...]] = {
    DataType.INT16: (0x8000,),
    DataType.UINT16: (0xFFFF,),
    DataType.INT32: (0x8000, 0x0000),
    DataType.UINT32: (0xFFFF, 0xFFFF),
    DataType.ACC32: (0x0000, 0x0000),
    DataType.FLOAT32: (0x7FC0, 0x0000),
    DataType.SUNSSF: (0x8000,),
}
"""SunSpec "not implemented" words per type (big word order); see the module docstring for the source."""

_SF_RANGE = range(-10, 11)  # SunSpec: scale factors are exponents in -10…10


@dataclass(frozen=True, slots=True, kw_only=True)
class Point:
    """One measured quantity in a meter's register space."""

    quantity: Quantity
    address: int
    """0-based PDU address of the first word (Eastron's 30001 is address 0)."""
    table: Table
    data_type: DataType
    word_order: WordOrder = WordOrder.BIG
    scale: float = 1.0
    """Fixed factor applied after decoding: 1000 turns an SDM630's kWh into Wh."""
    scale_factor_address: int | None = None
    """Address (same table) of a SunSpec `sunssf` register: the value is multiplied by 10**sf."""

    def __post_init__(self) -> None:
        if not 0 <= self.address <= 0xFFFF - (self.words - 1):
            raise ValueError(f"{self.quantity}: address {self.address} outside 0..65535")
        if self.scale_factor_address is not None and not 0 <= self.scale_factor_address <= 0xFFFF:
            raise ValueError(f"{self.quantity}: scale factor address {self.scale_factor_address} outside 0..65535")
        if not math.isfinite(self.scale) or self.scale == 0:
            raise ValueError(f"{self.quantity}: scale {self.scale!r} must be finite and non-zero")

    @property
    def words(self) -> int:
        """How many 16-bit registers the point occupies."""
        return _FORMAT[self.data_type][1]


@dataclass(frozen=True, slots=True, kw_only=True)
class RegisterMap:
    """A meter's points, plus the two device traits that change how it is read and decoded."""

    name: str
    points: tuple[Point, ...]
    sunspec_sentinels: bool = False
    """Read SunSpec "not implemented" values as missing. Off for meters where e.g. NaN is just garbage."""
    max_gap: int = 0
    """Unused registers one block read may span. 0 for devices that answer "illegal address" inside
    gaps; SunSpec models are contiguous and fully readable, so a whole model is one read."""

    def __post_init__(self) -> None:
        quantities = [p.quantity for p in self.points]
        if len(set(quantities)) != len(quantities):
            raise ValueError(f"{self.name}: a quantity appears twice")
        if self.max_gap < 0:
            raise ValueError(f"{self.name}: max_gap {self.max_gap} < 0")

    def point(self, quantity: Quantity) -> Point | None:
        """The point that measures `quantity`, if the meter has one."""
        return next((p for p in self.points if p.quantity is quantity), None)


PhaseValues = tuple[float | None, float | None, float | None]


@dataclass(frozen=True, slots=True, kw_only=True)
class MeterReading:
    """One decoded reading. None means the meter does not provide the value (or marks it not implemented)."""

    energy_import_wh: float | None = None
    power_w: float | None = None
    """Total active power; positive when energy flows from the grid to the car (import)."""
    currents_a: PhaseValues = (None, None, None)
    voltages_v: PhaseValues = (None, None, None)
    """Line-to-neutral voltages (a delta meter usually has none: SunSpec 204 leaves them not implemented)."""
    frequency_hz: float | None = None


RegisterImage = Mapping[Table, Mapping[int, int]]
"""Words a meter returned, per table and address."""


@dataclass(frozen=True, slots=True)
class ReadBlock:
    """One read request: `count` registers of `table` from `address`."""

    table: Table
    address: int
    count: int


def plan_reads(register_map: RegisterMap) -> tuple[ReadBlock, ...]:
    """The fewest block reads that cover every point and scale-factor register of `register_map`.

    Spans are merged while the gap between them is at most `max_gap` and the block stays within
    `MAX_READ_COUNT`; the result is sorted by table and address.
    """
    spans: set[tuple[Table, int, int]] = set()
    for point in register_map.points:
        spans.add((point.table, point.address, point.address + point.words - 1))
        if point.scale_factor_address is not None:
            spans.add((point.table, point.scale_factor_address, point.scale_factor_address))
    blocks: list[ReadBlock] = []
    current: tuple[Table, int, int] | None = None  # table, first, last (inclusive)
    for table, first, last in sorted(spans):
        if (
            current is not None
            and current[0] is table
            and first - current[2] - 1 <= register_map.max_gap
            and max(last, current[2]) - current[1] + 1 <= MAX_READ_COUNT
        ):
            current = (table, current[1], max(last, current[2]))
            continue
        if current is not None:
            blocks.append(ReadBlock(current[0], current[1], current[2] - current[1] + 1))
        current = (table, first, last)
    if current is not None:
        blocks.append(ReadBlock(current[0], current[1], current[2] - current[1] + 1))
    return tuple(blocks)


def _is_word(word: object) -> bool:
    return isinstance(word, int) and not isinstance(word, bool) and 0 <= word <= 0xFFFF


def _words(image: RegisterImage, table: Table, address: int, count: int, what: str) -> list[int]:
    registers = image.get(table, {})
    words = []
    for offset in range(count):
        word = registers.get(address + offset)
        if word is None:
            raise RegisterDecodeError(f"{what}: register {address + offset} ({table.name.lower()}) not in the image")
        if not _is_word(word):
            raise RegisterDecodeError(f"{what}: register {address + offset} holds {word!r}, not a 16-bit word")
        words.append(word)
    return words


def _raw(data_type: DataType, words: Sequence[int]) -> int | float:
    fmt, _ = _FORMAT[data_type]
    value: int | float = struct.unpack(fmt, b"".join(w.to_bytes(2, "big") for w in words))[0]
    return value


def _scale_factor(register_map: RegisterMap, point: Point, image: RegisterImage) -> int | None:
    """The point's SunSpec exponent: 0 without one, None when the device marks it not implemented."""
    if point.scale_factor_address is None:
        return 0
    (word,) = _words(image, point.table, point.scale_factor_address, 1, f"{point.quantity} scale factor")
    if register_map.sunspec_sentinels and word == NOT_IMPLEMENTED[DataType.SUNSSF][0]:
        return None
    sf = int(_raw(DataType.SUNSSF, [word]))
    if sf not in _SF_RANGE:
        raise RegisterDecodeError(f"{point.quantity}: scale factor {sf} outside -10..10")
    return sf


def _decode_point(register_map: RegisterMap, point: Point, image: RegisterImage) -> float | None:
    words = _words(image, point.table, point.address, point.words, str(point.quantity))
    if point.word_order is WordOrder.LITTLE:
        words.reverse()
    if register_map.sunspec_sentinels and tuple(words) == NOT_IMPLEMENTED[point.data_type]:
        return None
    raw = _raw(point.data_type, words)
    if register_map.sunspec_sentinels and isinstance(raw, float) and math.isnan(raw):
        return None  # SunSpec float32: any NaN, not only the canonical 0x7FC00000, means "not implemented"
    sf = _scale_factor(register_map, point, image)
    if sf is None:
        return None
    # Dividing by 10**-sf (not multiplying by 10**sf) keeps e.g. 2301 * 10**-1 exactly 230.1.
    value = raw * 10**sf if sf >= 0 else raw / 10**-sf
    return float(value * point.scale)


def decode_points(register_map: RegisterMap, registers: RegisterImage) -> MeterReading:
    """Decode every point of `register_map` from `registers`.

    Raises `RegisterDecodeError` (and nothing else) when a needed register is missing, a word is not
    0..65535, or a scale factor is outside -10..10. NaN or infinite float32 values of a map without
    SunSpec sentinels are returned as they are: judging plausibility is the driver's job.
    """
    values = {p.quantity: _decode_point(register_map, p, registers) for p in register_map.points}
    q = Quantity
    return MeterReading(
        energy_import_wh=values.get(q.ENERGY_IMPORT_WH),
        power_w=values.get(q.POWER_W),
        currents_a=(values.get(q.CURRENT_L1_A), values.get(q.CURRENT_L2_A), values.get(q.CURRENT_L3_A)),
        voltages_v=(values.get(q.VOLTAGE_L1_V), values.get(q.VOLTAGE_L2_V), values.get(q.VOLTAGE_L3_V)),
        frequency_hz=values.get(q.FREQUENCY_HZ),
    )


def encode_point(point: Point, value: float | None, *, scale_factor: int = 0) -> tuple[int, ...]:
    """The words a device stores for `value` (the inverse of decoding; used by the simulator).

    None gives the SunSpec "not implemented" words. Integers are rounded to nearest, except ACC32,
    which is floored so that an energy counter never runs ahead of the energy that flowed. Raises
    `ValueError` when the value does not fit the type at this scale.
    """
    if value is None:
        words = NOT_IMPLEMENTED[point.data_type]
    else:
        scaled = value / point.scale / 10.0**scale_factor
        fmt, _ = _FORMAT[point.data_type]
        try:
            if point.data_type is DataType.FLOAT32:
                packed = struct.pack(fmt, scaled)
            else:
                integer = math.floor(scaled) if point.data_type is DataType.ACC32 else round(scaled)
                packed = struct.pack(fmt, integer)
        except (struct.error, OverflowError, ValueError) as exc:
            raise ValueError(f"{point.quantity}: {value!r} does not fit {point.data_type.value}") from exc
        words = tuple(int.from_bytes(packed[i : i + 2], "big") for i in range(0, len(packed), 2))
    return tuple(reversed(words)) if point.word_order is WordOrder.LITTLE else words


def _sdm(quantity: Quantity, register_number: int, scale: float = 1.0) -> Point:
    return Point(
        quantity=quantity,
        address=register_number - 30001,
        table=Table.INPUT,
        data_type=DataType.FLOAT32,
        scale=scale,
    )


SDM630 = RegisterMap(
    name="Eastron SDM630",
    points=(
        _sdm(Quantity.VOLTAGE_L1_V, 30001),
        _sdm(Quantity.VOLTAGE_L2_V, 30003),
        _sdm(Quantity.VOLTAGE_L3_V, 30005),
        _sdm(Quantity.CURRENT_L1_A, 30007),
        _sdm(Quantity.CURRENT_L2_A, 30009),
        _sdm(Quantity.CURRENT_L3_A, 30011),
        _sdm(Quantity.POWER_W, 30053),
        _sdm(Quantity.FREQUENCY_HZ, 30071),
        _sdm(Quantity.ENERGY_IMPORT_WH, 30073, scale=1000.0),  # the register counts kWh
    ),
)
"""Eastron SDM630: three reads (voltages and currents, total power, frequency and import energy)."""


# --- SunSpec -----------------------------------------------------------------------------------------

SUNS_MARKER = (0x5375, 0x6E53)
"""'SunS' in two registers: the first thing at a SunSpec base address."""
SUNSPEC_METER_MODELS = frozenset({201, 202, 203, 204})
SUNSPEC_METER_LENGTH = 105
"""L of models 201-204: registers after the ID and L header."""
_END_MODEL_ID = 0xFFFF
_MAX_MODELS = 64  # a bound on the walk, so a device reporting garbage lengths cannot loop us

# Offsets within models 201-204, counted from the ID register (ID is 0, L is 1), with the offset of the
# scale factor each point uses: (quantity, offset, type, scale-factor offset).
_METER_20X: tuple[tuple[Quantity, int, DataType, int], ...] = (
    (Quantity.CURRENT_L1_A, 3, DataType.INT16, 6),  # AphA, A_SF
    (Quantity.CURRENT_L2_A, 4, DataType.INT16, 6),  # AphB
    (Quantity.CURRENT_L3_A, 5, DataType.INT16, 6),  # AphC
    (Quantity.VOLTAGE_L1_V, 8, DataType.INT16, 15),  # PhVphA, V_SF
    (Quantity.VOLTAGE_L2_V, 9, DataType.INT16, 15),  # PhVphB
    (Quantity.VOLTAGE_L3_V, 10, DataType.INT16, 15),  # PhVphC
    (Quantity.FREQUENCY_HZ, 16, DataType.INT16, 17),  # Hz, Hz_SF
    (Quantity.POWER_W, 18, DataType.INT16, 22),  # W, W_SF
    (Quantity.ENERGY_IMPORT_WH, 46, DataType.ACC32, 54),  # TotWhImp, TotWh_SF
)


@dataclass(frozen=True, slots=True)
class ModelHeader:
    """One SunSpec model found on a device: its ID, the address of its ID register, and its length L."""

    model_id: int
    address: int
    length: int


@dataclass(frozen=True, slots=True, kw_only=True)
class SunSpecProbe:
    """Ask the driver to find a SunSpec meter model instead of using a fixed map."""

    bases: tuple[int, ...] = (40000, 50000, 0)
    """Base addresses to try for the "SunS" marker, in order (SunSpec allows these three)."""
    model_ids: frozenset[int] = field(default=SUNSPEC_METER_MODELS)


ReadRegisters = Callable[[int, int], Sequence[int] | None]
"""(address, count) → holding-register words, or None when the device rejects the address."""


def discover_models(read: ReadRegisters, bases: Iterable[int] = SunSpecProbe().bases) -> tuple[ModelHeader, ...]:
    """Walk a device's SunSpec model list: find "SunS" at one of `bases`, then follow (ID, L) headers.

    `read` does the I/O (the driver's Modbus read, or a dict in tests); whatever it raises (timeouts)
    passes through. The walk ends at the end marker (ID 0xFFFF), at an address the device rejects (some
    devices omit the end marker), or at the end of the address space. Raises `SunSpecError` when no
    base has the marker or a reply has the wrong length.
    """
    for base in bases:
        if not 0 <= base <= 0xFFFF - 1:
            raise SunSpecError(f"base address {base} outside 0..65534")
        marker = read(base, 2)
        if marker is not None and tuple(marker) == SUNS_MARKER:
            break
    else:
        raise SunSpecError("no SunSpec marker 'SunS' at any base address")
    models: list[ModelHeader] = []
    address = base + 2
    while len(models) < _MAX_MODELS and address + 1 <= 0xFFFF:
        header = read(address, 2)
        if header is None:
            break
        if len(header) != 2 or not all(_is_word(w) for w in header):
            raise SunSpecError(f"model header at {address}: expected two 16-bit words, got {list(header)!r}")
        model_id, length = header
        if model_id == _END_MODEL_ID:
            break
        models.append(ModelHeader(model_id, address, length))
        address += 2 + length
    return tuple(models)


def find_meter_model(models: Iterable[ModelHeader], model_ids: frozenset[int] = SUNSPEC_METER_MODELS) -> ModelHeader:
    """The first meter model among `models`; `SunSpecError` if there is none."""
    for header in models:
        if header.model_id in model_ids:
            return header
    raise SunSpecError(f"no meter model {sorted(model_ids)} on the device")


def sunspec_meter_map(header: ModelHeader) -> RegisterMap:
    """The register map of meter model `header` (201-204) at the address discovery found it."""
    if header.model_id not in SUNSPEC_METER_MODELS:
        raise SunSpecError(f"model {header.model_id} is not a SunSpec meter model (201-204)")
    if header.length < SUNSPEC_METER_LENGTH:
        raise SunSpecError(f"model {header.model_id} at {header.address}: length {header.length} < 105")
    if not 0 <= header.address <= 0xFFFF - 1 - SUNSPEC_METER_LENGTH:
        raise SunSpecError(f"model {header.model_id} at {header.address} runs past the address space")
    points = tuple(
        Point(
            quantity=quantity,
            address=header.address + offset,
            table=Table.HOLDING,
            data_type=data_type,
            scale_factor_address=header.address + sf_offset,
        )
        for quantity, offset, data_type, sf_offset in _METER_20X
    )
    return RegisterMap(
        name=f"SunSpec {header.model_id}",
        points=points,
        sunspec_sentinels=True,
        max_gap=MAX_READ_COUNT,
    )
