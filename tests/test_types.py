"""Every Arrow type pyarrow writes, read back through relay and compared with pyarrow.

Each type is written with and without nulls, as one record batch (``write_feather``) and as
several (``pa.ipc.new_file`` with batches of 4, 0, 5 and 3 rows), and then checked through
every export: Python values, the Arrow PyCapsule interface, NumPy, type names, null counts,
zero-copy status, display, and slices that cross record batch boundaries.

Conventions that differ from pyarrow on purpose (and are checked as such):

- ``timestamp[ns]`` and ``duration[ns]`` give ``datetime.datetime`` / ``datetime.timedelta``
  rounded down to the microsecond, where pyarrow gives pandas objects when pandas is installed.
- Nested types (lists, structs, maps) become NumPy object arrays of the Python values
  ``to_pylist`` gives (lists, dicts), where pyarrow gives arrays of NumPy arrays.
- ``fixed_size_list<_, D>`` of a fixed-width type becomes a 2-D ``(N, D)`` array (rows that are
  null are NaN), where pyarrow gives an object array of 1-D arrays.
"""

from __future__ import annotations

import datetime as dt
import decimal
import math
import tempfile
import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.feather as feather
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import relay_ml as relay
from conftest import arrow_type_name

ROWS = 12
NULL_ROWS = (1, 5, 6, 11)
BATCH_SIZES = (4, 0, 5, 3)  # a slice of rows 2..6 crosses the first (and the empty) boundary
EPOCH = dt.datetime(1970, 1, 1)
D = decimal.Decimal


# -- the cases --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    name: str
    type: pa.DataType
    values: list[Any]  # ROWS non-null values
    build: Callable[[list[Any], pa.DataType], pa.Array] | None = None

    def array(self, nulls: bool) -> pa.Array:
        values = [None if nulls and i in NULL_ROWS else v for i, v in enumerate(self.values)]
        if self.build is not None:
            return self.build(values, self.type)
        return pa.array(values, type=self.type)


def cycle(values: list[Any]) -> list[Any]:
    return [values[i % len(values)] for i in range(ROWS)]


def build_float16(values: list[Any], type_: pa.DataType) -> pa.Array:
    mask = np.array([v is None for v in values])
    data = np.array([0.0 if v is None else v for v in values], dtype=np.float16)
    return pa.array(data, type=type_, mask=mask)


def build_run_end_encoded(values: list[Any], type_: pa.DataType) -> pa.Array:
    run_ends, run_values = [], []
    for i, value in enumerate(values):
        if run_values and run_values[-1] == value:
            run_ends[-1] = i + 1
        else:
            run_ends.append(i + 1)
            run_values.append(value)
    return pa.RunEndEncodedArray.from_arrays(
        pa.array(run_ends, type_.run_end_type), pa.array(run_values, type_.value_type), type=type_
    )


def build_dictionary_struct(values: list[Any], type_: pa.DataType) -> pa.Array:
    """struct<name: dictionary<int8, string>, tags: list<dictionary<int16, string>>>."""
    names = pa.array([None if v is None else v[0] for v in values]).dictionary_encode()
    names = names.cast(type_.field("name").type)
    tags = pa.array([None if v is None else v[1] for v in values], pa.list_(pa.string()))
    tag_values = tags.values.dictionary_encode().cast(type_.field("tags").type.value_type)
    tags = pa.ListArray.from_arrays(tags.offsets, tag_values, mask=tags.is_null())
    mask = pa.array([v is None for v in values])
    return pa.StructArray.from_arrays([names, tags], fields=list(type_), mask=mask)


def _ints(bits: int, signed: bool) -> list[int]:
    if signed:
        low, high = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
        return cycle([0, 1, -1, low, high, 42, -7])
    return cycle([0, 1, 2**bits - 1, 42, 2 ** (bits - 1)])


DATES = cycle(
    [
        dt.date(2020, 1, 1),
        dt.date(1, 1, 1),
        dt.date(9999, 12, 31),
        dt.date(1969, 12, 31),
        dt.date(2000, 2, 29),
        dt.date(1900, 3, 1),
        dt.date(1970, 1, 1),
    ]
)
DATETIMES_US = cycle(
    [
        dt.datetime(2020, 1, 1, 12, 30, 45, 123456),
        dt.datetime(1, 1, 1),
        dt.datetime(9999, 12, 31, 23, 59, 59, 999999),
        dt.datetime(1969, 12, 31, 23, 59, 59, 999999),
        dt.datetime(2000, 2, 29, 0, 0, 0, 1),
        EPOCH,
    ]
)


def _truncate(value: dt.datetime, unit: str) -> dt.datetime:
    micros = {"s": 1_000_000, "ms": 1_000, "us": 1}[unit]
    return value.replace(microsecond=value.microsecond // micros * micros)


# Nanosecond ticks, including values that are not whole microseconds (before and after 1970).
NANOS = cycle([0, 1_500, -1_500, -1, 1_700_000_000_123_456_789, -(2**62), 2**62, 999])
TIMES_US = cycle(
    [dt.time(0, 0), dt.time(23, 59, 59, 999999), dt.time(12, 0, 0, 1), dt.time(1, 2, 3, 400000)]
)
DURATIONS_US = cycle(
    [
        dt.timedelta(0),
        dt.timedelta(days=-1, microseconds=5),
        dt.timedelta(days=365 * 500, seconds=7),
        dt.timedelta(microseconds=-1),
        dt.timedelta(seconds=1, microseconds=250000),
    ]
)
AWARE = cycle(
    [
        dt.datetime(2020, 6, 1, 1, 2, 3, 456000, tzinfo=dt.timezone.utc),
        dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc),
        dt.datetime(2021, 10, 31, 0, 30, tzinfo=dt.timezone.utc),  # Paris DST ends 01:00 UTC
        dt.datetime(2021, 10, 31, 1, 30, tzinfo=dt.timezone.utc),
        dt.datetime(1950, 7, 14, 23, 59, 59, 999000, tzinfo=dt.timezone.utc),
    ]
)
STRINGS = cycle(
    ["", "a", "héllo wörld", "日本語テキスト", "a string longer than twelve bytes", "\x00nul", "z"]
)
BYTES = cycle([b"", b"a", b"\x00\xff\x10", b"a longer binary value of many bytes", b"zz"])


CASES = [
    Case("null", pa.null(), [None] * ROWS),
    Case("bool", pa.bool_(), cycle([True, False, False, True, True])),
    *(Case(f"int{b}", getattr(pa, f"int{b}")(), _ints(b, True)) for b in (8, 16, 32, 64)),
    *(Case(f"uint{b}", getattr(pa, f"uint{b}")(), _ints(b, False)) for b in (8, 16, 32, 64)),
    Case(
        "float16",
        pa.float16(),
        cycle([1.5, -2.0, 0.0, 65504.0, float("inf"), float("nan"), 0.1]),
        build_float16,
    ),
    Case(
        "float32", pa.float32(), cycle([1.5, -2.25, 0.1, -0.0, float("inf"), float("nan"), 3.4e38])
    ),
    Case(
        "float64",
        pa.float64(),
        cycle([1.5, -2.25, 0.1, -0.0, float("-inf"), float("nan"), 1e300, 5e-324]),
    ),
    Case("string", pa.string(), STRINGS),
    Case("large_string", pa.large_string(), STRINGS),
    Case("string_view", pa.string_view(), STRINGS),
    Case("binary", pa.binary(), BYTES),
    Case("large_binary", pa.large_binary(), BYTES),
    Case("binary_view", pa.binary_view(), BYTES),
    Case(
        "fixed_size_binary", pa.binary(3), cycle([b"abc", b"\x00\x00\x00", b"\xff\xfe\xfd", b"xyz"])
    ),
    Case("date32", pa.date32(), DATES),
    Case("date64", pa.date64(), DATES),
    *(
        Case(f"timestamp_{u}", pa.timestamp(u), [_truncate(v, u) for v in DATETIMES_US])
        for u in ("s", "ms", "us")
    ),
    Case("timestamp_ns", pa.timestamp("ns"), NANOS),
    Case("timestamp_ms_paris", pa.timestamp("ms", tz="Europe/Paris"), AWARE),
    Case("timestamp_us_utc", pa.timestamp("us", tz="UTC"), AWARE),
    Case(
        "timestamp_s_new_york",
        pa.timestamp("s", tz="America/New_York"),
        [_truncate(v, "s") for v in AWARE],
    ),
    Case("timestamp_ms_plus_0100", pa.timestamp("ms", tz="+01:00"), AWARE),
    Case("timestamp_us_minus_0530", pa.timestamp("us", tz="-05:30"), AWARE),
    Case("timestamp_ns_kolkata", pa.timestamp("ns", tz="Asia/Kolkata"), NANOS),
    Case("time32_s", pa.time32("s"), [t.replace(microsecond=0) for t in TIMES_US]),
    Case(
        "time32_ms",
        pa.time32("ms"),
        [t.replace(microsecond=t.microsecond // 1000 * 1000) for t in TIMES_US],
    ),
    Case("time64_us", pa.time64("us"), TIMES_US),
    Case("time64_ns", pa.time64("ns"), cycle([0, 1_500, 86_399_999_999_999, 43_200_000_000_001])),
    Case("duration_s", pa.duration("s"), cycle([0, 1, -1, 86_400 * 999_999, -86_400 * 999_999])),
    Case("duration_ms", pa.duration("ms"), cycle([0, 1, -1, 1_234_567_890])),
    Case("duration_us", pa.duration("us"), DURATIONS_US),
    Case("duration_ns", pa.duration("ns"), NANOS),
    Case(
        "decimal128_5_2",
        pa.decimal128(5, 2),
        cycle([D("1.20"), D("-0.05"), D("999.99"), D("0.00"), D("-999.99")]),
    ),
    Case(
        "decimal128_38_10",
        pa.decimal128(38, 10),
        cycle([D("1234567890123456789012345678.0123456789"), D("-0.0000000001"), D("0E-10")]),
    ),
    Case(
        "decimal128_negative_scale",
        pa.decimal128(5, -2),
        cycle([D("1.20E+4"), D("-1E+2"), D("0E+2")]),
    ),
    Case(
        "decimal256_76_20",
        pa.decimal256(76, 20),
        cycle(
            [
                D("12345678901234567890123456789012345678901234567890123456.01234567890123456789"),
                D("-1E-20"),
            ]
        ),
    ),
    Case("decimal32_7_3", pa.decimal32(7, 3), cycle([D("1234.567"), D("-0.001"), D("0.000")])),
    Case("decimal64_18_4", pa.decimal64(18, 4), cycle([D("12345678901234.5678"), D("-0.0001")])),
    Case(
        "dictionary_int8_string",
        pa.dictionary(pa.int8(), pa.string()),
        cycle(["paris", "tokyo", "lima", "paris"]),
    ),
    Case("dictionary_int32_int64", pa.dictionary(pa.int32(), pa.int64()), cycle([10, 20, 10, -5])),
    Case(
        "dictionary_uint16_float64",
        pa.dictionary(pa.uint16(), pa.float64()),
        cycle([0.5, 1.5, 0.5]),
    ),
    Case("list_int32", pa.list_(pa.int32()), cycle([[1, 2, 3], [], [None, 4], [5]])),
    Case(
        "list_list_string",
        pa.list_(pa.list_(pa.string())),
        cycle([[["a"], [], None], [["b", "c"]], [], [None]]),
    ),
    Case("large_list_float64", pa.large_list(pa.float64()), cycle([[1.5], [], [2.5, None, -0.0]])),
    Case("list_view_int32", pa.list_view(pa.int32()), cycle([[1, 2, 3], [], [None, 4], [5]])),
    Case(
        "large_list_view_string", pa.large_list_view(pa.string()), cycle([["x", None], [], ["yz"]])
    ),
    Case(
        "fixed_size_list_float32",
        pa.list_(pa.float32(), 3),
        cycle([[1.0, 2.0, 3.0], [0.5, -1.0, 4.0]]),
    ),
    Case("fixed_size_list_int64", pa.list_(pa.int64(), 2), cycle([[1, 2], [-3, 2**62]])),
    Case("fixed_size_list_bool", pa.list_(pa.bool_(), 2), cycle([[True, False], [False, False]])),
    Case(
        "struct",
        pa.struct([("a", pa.int32()), ("b", pa.string()), ("c", pa.list_(pa.float64()))]),
        cycle(
            [
                {"a": 1, "b": "x", "c": [1.5]},
                {"a": None, "b": None, "c": None},
                {"a": -2, "b": "", "c": []},
            ]
        ),
    ),
    Case(
        "struct_nested",
        pa.struct([("s", pa.struct([("when", pa.timestamp("us")), ("d", pa.decimal128(6, 3))]))]),
        cycle(
            [
                {"s": {"when": dt.datetime(2020, 1, 2, 3, 4, 5, 6), "d": D("1.500")}},
                {"s": None},
                {"s": {"when": None, "d": D("-0.001")}},
            ]
        ),
    ),
    Case(
        "struct_of_dictionaries",
        pa.struct(
            [
                ("name", pa.dictionary(pa.int8(), pa.string())),
                ("tags", pa.list_(pa.dictionary(pa.int16(), pa.string()))),
            ]
        ),
        cycle([("a", ["t1", "t2"]), ("b", []), ("a", ["t2"])]),
        build_dictionary_struct,
    ),
    Case(
        "map_string_int64",
        pa.map_(pa.string(), pa.int64()),
        cycle([[("a", 1), ("b", None)], [], [("c", 3)]]),
    ),
    Case(
        "map_int32_list",
        pa.map_(pa.int32(), pa.list_(pa.string())),
        cycle([[(1, ["x"]), (2, [])], [(3, None)]]),
    ),
    Case(
        "list_of_structs",
        pa.list_(pa.struct([("k", pa.string()), ("v", pa.list_(pa.int64()))])),
        cycle([[{"k": "a", "v": [1]}, None], [], [{"k": None, "v": None}]]),
    ),
    Case(
        "run_end_encoded_int64",
        pa.run_end_encoded(pa.int32(), pa.int64()),
        cycle([7, 7, 7, 8, 9, 9]),
        build_run_end_encoded,
    ),
    Case(
        "month_day_nano_interval",
        pa.month_day_nano_interval(),
        cycle(
            [
                pa.MonthDayNano([1, 2, 3]),
                pa.MonthDayNano([0, 0, -1]),
                pa.MonthDayNano([-12, 30, 10**15]),
            ]
        ),
    ),
]
CASES_BY_NAME = {case.name: case for case in CASES}

# Fixed-width types (and fixed_size_list of them) that a single record batch without nulls
# exports as a view of the mapping. Booleans are bits and date32 is widened, so both copy.
ZERO_COPY_CASES = {
    "int8",
    "int16",
    "int32",
    "int64",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "float16",
    "float32",
    "float64",
    "date64",
    "timestamp_s",
    "timestamp_ms",
    "timestamp_us",
    "timestamp_ns",
    "timestamp_ms_paris",
    "timestamp_us_utc",
    "timestamp_s_new_york",
    "timestamp_ms_plus_0100",
    "timestamp_us_minus_0530",
    "timestamp_ns_kolkata",
    "duration_s",
    "duration_ms",
    "duration_us",
    "duration_ns",
    "fixed_size_list_float32",
    "fixed_size_list_int64",
}


@dataclass(frozen=True)
class Written:
    case: Case
    nulls: bool
    batches: bool  # several record batches instead of one
    path: Path
    table: pa.Table

    @property
    def column(self) -> pa.ChunkedArray:
        return self.table["col"]


_written: dict[tuple[str, bool, bool], Written] = {}


def write_batches(path: Path, table: pa.Table, sizes: list[int] | tuple[int, ...]) -> pa.Table:
    """Write `table` as record batches of `sizes` rows; returns the table as written."""
    whole = pa.record_batch(
        [column.combine_chunks() for column in table.columns], schema=table.schema
    )
    batches, offset = [], 0
    for size in sizes:
        batches.append(whole.slice(offset, size))
        offset += size
    assert offset == table.num_rows
    with pa.ipc.new_file(path, table.schema) as writer:
        for batch in batches:
            writer.write_batch(batch)
    return pa.Table.from_batches(batches, schema=table.schema)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str, bool, bool], Written]:
    directory = tmp_path_factory.mktemp("types")

    def get(name: str, nulls: bool, batches: bool) -> Written:
        key = (name, nulls, batches)
        if key not in _written:
            case = CASES_BY_NAME[name]
            # A second column so that frame-level exports carry more than the column under test.
            table = pa.table({"col": case.array(nulls), "row": pa.array(range(ROWS), pa.int64())})
            path = (
                directory
                / f"{name}-{'nulls' if nulls else 'dense'}-{'batches' if batches else 'one'}.arrow"
            )
            if batches:
                table = write_batches(path, table, BATCH_SIZES)
            else:
                feather.write_feather(table, path, compression="uncompressed")
            _written[key] = Written(case, nulls, batches, path, table)
        return _written[key]

    return get


def variants() -> list[Any]:
    """pytest params over (case, nulls, batches)."""
    return [
        pytest.param(
            case.name,
            nulls,
            batches,
            id=f"{case.name}-{'nulls' if nulls else 'dense'}-{'batches' if batches else 'one'}",
        )
        for case in CASES
        for nulls in (False, True)
        for batches in (False, True)
    ]


# -- comparison helpers -------------------------------------------------------------------


def zone_of(name: str) -> dt.tzinfo:
    if name[0] in "+-":
        hours, minutes = int(name[1:3]), int(name[4:6])
        sign = 1 if name[0] == "+" else -1
        return dt.timezone(sign * dt.timedelta(hours=hours, minutes=minutes))
    return zoneinfo.ZoneInfo(name)


def expected_pylist(column: pa.ChunkedArray | pa.Array) -> list[Any]:
    """pyarrow's to_pylist, except nanosecond timestamps and durations, which relay rounds
    down to microseconds as pure-Python objects (pyarrow gives pandas objects)."""
    type_ = column.type
    if (pa.types.is_timestamp(type_) or pa.types.is_duration(type_)) and type_.unit == "ns":
        ticks = column.cast(pa.int64()).to_pylist()
        if pa.types.is_duration(type_):
            return [None if t is None else dt.timedelta(microseconds=t // 1000) for t in ticks]
        out = []
        for t in ticks:
            value = None if t is None else EPOCH + dt.timedelta(microseconds=t // 1000)
            if value is not None and type_.tz is not None:
                value = value.replace(tzinfo=dt.timezone.utc).astimezone(zone_of(type_.tz))
            out.append(value)
        return out
    return column.to_pylist()


def normalize(value: Any) -> Any:
    """A form of a Python value that compares NaN equal to NaN, tells -0.0 from 0.0, bool from
    int, and Decimal("1.2") from Decimal("1.20"), and sees a datetime's zone."""
    if isinstance(value, np.ndarray):
        return normalize(value.tolist() if value.dtype != object else list(value))
    if isinstance(value, np.generic):
        return normalize(value.item())
    if isinstance(value, float):
        return ("float", "nan" if math.isnan(value) else value, math.copysign(1.0, value))
    if isinstance(value, decimal.Decimal):
        return ("decimal", str(value))
    if isinstance(value, dt.datetime):
        return ("datetime", value.isoformat(), str(value.tzinfo))
    if isinstance(value, (list, tuple)):
        return (type(value) is list, [normalize(v) for v in value])
    if isinstance(value, dict):
        return {key: normalize(v) for key, v in value.items()}
    return (type(value).__name__, value)


def contains_nan(values: list[Any]) -> bool:
    return "nan" in repr(normalize(values))


def assert_same_values(got: list[Any], expected: list[Any]) -> None:
    assert normalize(got) == normalize(expected)
    if not contains_nan(expected):
        assert got == expected


def assert_arrow_equal(
    got: pa.Table | pa.ChunkedArray, expected: pa.Table | pa.ChunkedArray
) -> None:
    """`got.equals(expected)`, except that NaN equals NaN (Arrow's equals says it does not)."""
    if got.equals(expected):
        return
    assert (
        got.type == expected.type
        if isinstance(got, pa.ChunkedArray)
        else got.schema == expected.schema
    )
    assert contains_nan(expected.to_pylist()), "differs from the written data"
    assert normalize(got.to_pylist()) == normalize(expected.to_pylist())


def py_values(column: relay.Column) -> list[Any]:
    values = column.to_pylist()
    assert isinstance(values, list) and len(values) == len(column)
    return values


# -- per-type checks -------------------------------------------------------------------


@pytest.mark.parametrize(("name", "nulls", "batches"), variants())
def test_to_pylist_and_to_dict(files, name, nulls, batches):
    written = files(name, nulls, batches)
    frame = relay.scan(written.path)
    expected = expected_pylist(written.column)
    assert_same_values(py_values(frame["col"]), expected)
    as_dict = frame.to_dict(as_series=False)
    assert list(as_dict) == ["col", "row"]
    assert_same_values(as_dict["col"], expected)
    assert as_dict["row"] == list(range(ROWS))


@pytest.mark.parametrize(("name", "nulls", "batches"), variants())
def test_arrow_exports_equal_the_written_table(files, name, nulls, batches):
    written = files(name, nulls, batches)
    frame = relay.scan(written.path)
    table = frame.to_arrow()
    assert table.schema == written.table.schema
    assert_arrow_equal(table, written.table)
    column = frame["col"].to_arrow()
    assert column.type == written.column.type
    assert_arrow_equal(column, written.column)


@pytest.mark.parametrize(("name", "nulls", "batches"), variants())
def test_dtype_is_spelled_as_pyarrow_does(files, name, nulls, batches):
    """pyarrow's spelling, except floats: named by their width, as NumPy and `cast` name them."""
    written = files(name, nulls, batches)
    frame = relay.scan(written.path)
    expected = arrow_type_name(written.table.schema.field("col").type)
    assert frame["col"].dtype == expected
    assert frame.schema == {"col": expected, "row": "int64"}


def check_fixed_size_list_numpy(written: Written, got: np.ndarray) -> None:
    """relay gives (N, D) where pyarrow gives an object array of N arrays of D values."""
    type_ = written.column.type
    rows = written.column.to_numpy(zero_copy_only=False)
    assert got.shape == (ROWS, type_.list_size)
    expected = np.stack([np.full(type_.list_size, np.nan) if row is None else row for row in rows])
    np.testing.assert_array_equal(got, expected)
    if written.column.null_count == 0 and written.column.combine_chunks().values.null_count == 0:
        assert got.dtype == written.column.type.value_type.to_pandas_dtype()


@pytest.mark.parametrize(
    ("name", "nulls", "batches"),
    variants(),
)
def test_to_numpy_follows_pyarrow(files, name, nulls, batches):
    written = files(name, nulls, batches)
    got = relay.scan(written.path)["col"].to_numpy()
    assert isinstance(got, np.ndarray) and not got.flags.writeable
    type_ = written.column.type
    # Booleans with nulls have no fixed-width form, so fixed_size_list<bool> rows with nulls
    # are Python lists like other nested types.
    if pa.types.is_fixed_size_list(type_) and not (pa.types.is_boolean(type_.value_type) and nulls):
        check_fixed_size_list_numpy(written, got)
        return
    if pa.types.is_interval(type_):
        # pyarrow 26 crashes (SIGSEGV) converting intervals to NumPy when pandas is absent.
        expected = np.fromiter(
            expected_pylist(written.column), dtype=object, count=len(written.column)
        )
        assert got.shape == expected.shape and got.dtype == object
        assert_same_values(list(got), list(expected))
        return
    try:
        # Array.to_numpy, not ChunkedArray.to_numpy: for dictionary arrays with nulls the
        # latter (pyarrow 26) returns the value under a null's index instead of NaN.
        expected = written.column.combine_chunks().to_numpy(zero_copy_only=False)
    except pa.ArrowInvalid:  # time64[ns] values that are not whole microseconds
        expected = np.array([*expected_pylist(written.column), None], dtype=object)[:-1]
    assert got.shape == expected.shape
    assert got.dtype == expected.dtype
    if expected.dtype == object:
        # Python values, as to_pylist gives them (pyarrow puts NumPy arrays in for lists).
        assert_same_values(list(got), expected_pylist(written.column))
    else:
        np.testing.assert_array_equal(got, expected)  # NaN and NaT compare equal here


@pytest.mark.parametrize(("name", "nulls", "batches"), variants())
def test_len_null_count_and_zero_copy(files, name, nulls, batches):
    written = files(name, nulls, batches)
    frame = relay.scan(written.path)
    column = frame["col"]
    assert len(column) == len(frame) == ROWS
    assert column.null_count == sum(v is None for v in expected_pylist(written.column))
    if name != "run_end_encoded_int64":  # pyarrow counts no nulls in a run-end encoded array
        assert column.null_count == written.column.null_count
    zero_copy = name in ZERO_COPY_CASES and not nulls and not batches
    assert column.is_zero_copy is zero_copy
    assert (column.copy_reason is None) is zero_copy
    # The first three rows lie in the first record batch, so they are a view there too.
    assert frame.head(3)["col"].is_zero_copy is (name in ZERO_COPY_CASES and not nulls)
    if zero_copy:
        column.to_numpy(zero_copy=True)
    else:
        with pytest.raises(relay.ZeroCopyError):
            column.to_numpy(zero_copy=True)


@pytest.mark.parametrize(("name", "nulls", "batches"), variants())
def test_repr_shows_every_type(files, name, nulls, batches):
    written = files(name, nulls, batches)
    frame = relay.scan(written.path)
    text = repr(frame)
    assert f"shape: ({ROWS}, 2)" in text and "col" in text
    assert repr(frame["col"]).startswith("Column('col', dtype=")
    if nulls:
        assert "null" in text
    assert repr(frame.head(3)) and repr(frame.slice(ROWS))


@pytest.mark.parametrize(("name", "nulls", "batches"), variants())
def test_slices_cross_record_batches(files, name, nulls, batches):
    written = files(name, nulls, batches)
    frame = relay.scan(written.path)
    expected = expected_pylist(written.column)
    for offset, length in [(0, 3), (2, 4), (3, 7), (4, 5), (9, 3), (11, 5), (ROWS, 2), (0, ROWS)]:
        sliced = frame.slice(offset, length)
        assert_same_values(py_values(sliced["col"]), expected[offset : offset + length])
        assert_same_values(
            py_values(frame["col"].slice(offset, length)), expected[offset : offset + length]
        )
        assert sliced["row"].to_pylist() == list(range(ROWS))[offset : offset + length]
        assert_arrow_equal(sliced.to_arrow(), written.table.slice(offset, length))
        assert_arrow_equal(sliced["col"].to_arrow(), written.column.slice(offset, length))
        assert sliced["col"].null_count == sum(
            v is None for v in expected[offset : offset + length]
        )
    assert_same_values(py_values(frame.head(3)["col"]), expected[:3])
    assert_same_values(py_values(frame["col"][5:11]), expected[5:11])
    assert_same_values(py_values(frame.slice(2, 8).slice(1, 4)["col"]), expected[3:7])


# -- conventions and errors ---------------------------------------------------------------


def test_nanoseconds_round_down_to_microseconds_as_datetime_objects(tmp_path):
    ticks = [1_500, -1_500, -1, 999, 1_000]
    table = pa.table(
        {
            "ts": pa.array(ticks, pa.timestamp("ns")),
            "d": pa.array(ticks, pa.duration("ns")),
            "t": pa.array([t % 86_400_000_000_000 for t in ticks], pa.time64("ns")),
        }
    )
    feather.write_feather(table, tmp_path / "ns.arrow", compression="uncompressed")
    frame = relay.scan(tmp_path / "ns.arrow")
    stamps = frame["ts"].to_pylist()
    assert all(type(v) is dt.datetime for v in stamps)
    assert stamps == [
        EPOCH + dt.timedelta(microseconds=1),
        EPOCH - dt.timedelta(microseconds=2),
        EPOCH - dt.timedelta(microseconds=1),
        EPOCH,
        EPOCH + dt.timedelta(microseconds=1),
    ]
    durations = frame["d"].to_pylist()
    assert all(type(v) is dt.timedelta for v in durations)
    assert durations == [dt.timedelta(microseconds=m) for m in (1, -2, -1, 0, 1)]
    assert frame["t"].to_pylist() == table["t"].to_pylist()  # pyarrow rounds time64[ns] down too


def test_aware_timestamps_carry_their_zone(tmp_path):
    instants = [
        dt.datetime(2021, 3, 28, 0, 59, tzinfo=dt.timezone.utc),
        dt.datetime(2021, 3, 28, 1, 0, tzinfo=dt.timezone.utc),
    ]
    table = pa.table(
        {
            "paris": pa.array(instants, pa.timestamp("us", tz="Europe/Paris")),
            "fixed": pa.array(instants, pa.timestamp("us", tz="+05:45")),
        }
    )
    feather.write_feather(table, tmp_path / "tz.arrow", compression="uncompressed")
    frame = relay.scan(tmp_path / "tz.arrow")
    paris = frame["paris"].to_pylist()
    assert [v.tzinfo for v in paris] == [zoneinfo.ZoneInfo("Europe/Paris")] * 2
    assert [v.hour for v in paris] == [1, 3]  # the DST jump
    assert [v.utcoffset() for v in paris] == [dt.timedelta(hours=1), dt.timedelta(hours=2)]
    fixed = frame["fixed"].to_pylist()
    assert [v.tzinfo for v in fixed] == [dt.timezone(dt.timedelta(hours=5, minutes=45))] * 2
    assert fixed == instants


def test_decimals_keep_the_scale_as_exponent(tmp_path):
    table = pa.table({"d": pa.array([D("1.20"), D("0.00"), D("-7.00")], pa.decimal128(5, 2))})
    feather.write_feather(table, tmp_path / "dec.arrow", compression="uncompressed")
    values = relay.scan(tmp_path / "dec.arrow")["d"].to_pylist()
    assert [v.as_tuple().exponent for v in values] == [-2, -2, -2]
    assert [str(v) for v in values] == ["1.20", "0.00", "-7.00"]


def test_values_under_null_parents_are_never_converted(tmp_path):
    # Row 1's struct is null; its child holds a timestamp Python cannot represent.
    child = pa.array([0, 2**40], pa.timestamp("s"))
    structs = pa.StructArray.from_arrays([child], names=["t"], mask=pa.array([False, True]))
    lists = pa.ListArray.from_arrays(pa.array([0, 1, 2]), child, mask=pa.array([False, True]))
    table = pa.table({"s": structs, "l": lists})
    feather.write_feather(table, tmp_path / "hidden.arrow", compression="uncompressed")
    frame = relay.scan(tmp_path / "hidden.arrow")
    assert frame["s"].to_pylist() == table["s"].to_pylist() == [{"t": EPOCH}, None]
    assert frame["l"].to_pylist() == table["l"].to_pylist() == [[EPOCH], None]


def test_values_python_cannot_hold_raise_value_errors(tmp_path):
    table = pa.table(
        {
            "ts": pa.array([0, 2**40], pa.timestamp("s")),
            "d": pa.array([0, 2**62], pa.duration("s")),
            "day": pa.array([0, 2**31 - 1], pa.date32()),
            # In range in UTC, past 9999-12-31 in Tokyo; and before 0001-01-01 in New York.
            "tokyo": pa.array(
                [EPOCH, dt.datetime(9999, 12, 31, 23)], pa.timestamp("us", tz="Asia/Tokyo")
            ),
            "new_york": pa.array(
                [EPOCH, dt.datetime(1, 1, 1, 1)], pa.timestamp("s", tz="America/New_York")
            ),
            "fixed": pa.array([EPOCH, dt.datetime(1, 1, 1, 1)], pa.timestamp("ms", tz="-05:00")),
        }
    )
    feather.write_feather(table, tmp_path / "range.arrow", compression="uncompressed")
    frame = relay.scan(tmp_path / "range.arrow")
    for name in table.column_names:
        with pytest.raises(relay.RelayValueError, match="outside the range"):
            frame[name].to_pylist()
        assert len(frame[name].slice(0, 1).to_pylist()) == 1  # the rows that fit convert


def test_unknown_time_zone_raises_a_value_error(tmp_path):
    table = pa.table({"ts": pa.array([0], pa.timestamp("s", tz="Not/A_Zone"))})
    feather.write_feather(table, tmp_path / "zone.arrow", compression="uncompressed")
    with pytest.raises(relay.RelayValueError, match="Not/A_Zone"):
        relay.scan(tmp_path / "zone.arrow")["ts"].to_pylist()


def test_duplicate_struct_field_names_are_refused_like_pyarrow(tmp_path):
    structs = pa.StructArray.from_arrays([pa.array([1]), pa.array([2])], names=["a", "a"])
    table = pa.table({"s": structs})
    feather.write_feather(table, tmp_path / "dup.arrow", compression="uncompressed")
    with pytest.raises(ValueError):
        table["s"].to_pylist()
    with pytest.raises(relay.RelayValueError, match="duplicate field names"):
        relay.scan(tmp_path / "dup.arrow")["s"].to_pylist()


@pytest.mark.parametrize("mode", ["sparse", "dense"])
def test_unions_raise_a_type_error_naming_the_type(tmp_path, mode):
    types = pa.array([0, 1, 0], pa.int8())
    children = [pa.array([1, 2, 3]), pa.array(["a", "b", "c"])]
    if mode == "sparse":
        union = pa.UnionArray.from_sparse(types, children)
    else:
        union = pa.UnionArray.from_dense(
            types, pa.array([0, 0, 1], pa.int32()), [pa.array([1, 3]), pa.array(["b"])]
        )
    feather.write_feather(
        pa.table({"u": union}), tmp_path / "union.arrow", compression="uncompressed"
    )
    column = relay.scan(tmp_path / "union.arrow")["u"]
    with pytest.raises(relay.RelayTypeError, match=r"(?i)union") as info:
        column.to_pylist()
    assert isinstance(info.value, TypeError)


def test_to_numpy_of_equal_length_lists_is_one_dimensional(tmp_path):
    table = pa.table(
        {
            "l": pa.array([[1, 2], [3, 4]]),
            "m": pa.array([[(1, 2)], [(3, 4)]], pa.map_(pa.int8(), pa.int8())),
        }
    )
    feather.write_feather(table, tmp_path / "equal.arrow", compression="uncompressed")
    frame = relay.scan(tmp_path / "equal.arrow")
    for name in ["l", "m"]:
        got = frame[name].to_numpy()
        assert got.shape == (2,) and got.dtype == object
        assert list(got) == table[name].to_pylist()


def test_a_short_slice_of_a_long_list_column_converts_only_its_rows(tmp_path):
    n = 200_000
    lists = pa.ListArray.from_arrays(
        pa.array(np.arange(n + 1, dtype=np.int32) * 2), pa.array(np.arange(2 * n))
    )
    feather.write_feather(
        pa.table({"l": lists}), tmp_path / "long.arrow", compression="uncompressed"
    )
    column = relay.scan(tmp_path / "long.arrow")["l"]
    assert column.slice(n - 2, 2).to_pylist() == [[2 * n - 4, 2 * n - 3], [2 * n - 2, 2 * n - 1]]
    assert column.slice(5, 0).to_pylist() == []


def test_empty_files_and_empty_batches(tmp_path):
    table = pa.table({"s": pa.array([], pa.string()), "l": pa.array([], pa.list_(pa.int64()))})
    written = write_batches(tmp_path / "none.arrow", table, [])
    frame = relay.scan(tmp_path / "none.arrow")
    assert frame["s"].to_pylist() == [] and frame["l"].to_pylist() == []
    assert frame.to_arrow().equals(written)
    written = write_batches(tmp_path / "zeros.arrow", table, [0, 0])
    assert relay.scan(tmp_path / "zeros.arrow").to_dict(as_series=False) == {"s": [], "l": []}


# -- random data --------------------------------------------------------------------------


@st.composite
def random_tables(draw: st.DrawFn) -> tuple[pa.Table, list[int]]:
    n = draw(st.integers(0, 40))
    int_type, ints = draw(
        st.sampled_from(
            [
                (pa.int8(), st.integers(-128, 127)),
                (pa.int64(), st.integers(-(2**63), 2**63 - 1)),
                (pa.uint64(), st.integers(0, 2**64 - 1)),
            ]
        )
    )

    def column(values: st.SearchStrategy[Any]) -> list[Any]:
        return draw(st.lists(st.one_of(st.none(), values), min_size=n, max_size=n))

    table = pa.table(
        {
            "i": pa.array(column(ints), int_type),
            "f": pa.array(column(st.floats(width=32)), pa.float32()),
            "g": pa.array(column(st.floats()), pa.float64()),
            "s": pa.array(column(st.text(max_size=20)), pa.string()),
            "b": pa.array(column(st.binary(max_size=20)), pa.large_binary()),
        }
    )
    cuts = sorted(draw(st.lists(st.integers(0, n), max_size=4)))
    sizes = [b - a for a, b in zip([0, *cuts], [*cuts, n], strict=True)]
    return table, sizes


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_tables(), st.integers(0, 45), st.integers(0, 45))
def test_random_columns_and_batch_splits(table_and_sizes, offset, length):
    table, sizes = table_and_sizes
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "random.arrow"
        written = write_batches(path, table, sizes)
        frame = relay.scan(path)
        assert_arrow_equal(frame.to_arrow(), written)
        sliced = frame.slice(offset, length)
        for name in written.column_names:
            expected = written[name].to_pylist()
            assert_same_values(frame[name].to_pylist(), expected)
            assert_same_values(sliced[name].to_pylist(), expected[offset : offset + length])
            assert frame[name].null_count == written[name].null_count
            got = frame[name].to_numpy()
            want = written[name].to_numpy(zero_copy_only=False)
            assert got.dtype == want.dtype and got.shape == want.shape
            if want.dtype == object:
                assert_same_values(list(got), expected)
            else:
                np.testing.assert_array_equal(got, want)
            assert_arrow_equal(frame[name].to_arrow(), written[name])
        del frame, sliced  # release the mapping before the directory goes
