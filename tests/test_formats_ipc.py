"""Arrow IPC files with compressed record batches (LZ4_FRAME, ZSTD) and Arrow IPC stream files,
written by pyarrow and Polars, read by relay and compared with pyarrow's reading."""

from __future__ import annotations

import datetime
import decimal
import struct
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

import relay_ml as relay
from conftest import address_in_file_mapping
from relay_ml.cli import main


def _typed_table(n: int = 500) -> pa.Table:
    """Many types, each with nulls."""
    rng = np.random.default_rng(7)

    def nulls(values: list, every: int = 7) -> list:
        return [None if i % every == 3 else v for i, v in enumerate(values)]

    ints = rng.integers(-1000, 1000, n)
    floats = rng.standard_normal(n)
    base = datetime.datetime(2024, 1, 1)
    cities = ["paris", "lima", "oslo", "quito"]
    return pa.table(
        {
            "i8": pa.array(nulls([int(v) % 100 for v in ints]), pa.int8()),
            "i16": pa.array(nulls([int(v) for v in ints]), pa.int16()),
            "i32": pa.array(nulls([int(v) * 1000 for v in ints]), pa.int32()),
            "i64": pa.array(nulls([int(v) << 33 for v in ints]), pa.int64()),
            "u8": pa.array(nulls([abs(int(v)) % 200 for v in ints]), pa.uint8()),
            "u32": pa.array(nulls([abs(int(v)) for v in ints]), pa.uint32()),
            "u64": pa.array(nulls([abs(int(v)) << 40 for v in ints]), pa.uint64()),
            "f32": pa.array(nulls([float(v) for v in floats]), pa.float32()),
            "f64": pa.array(nulls([float(v) for v in floats], 5), pa.float64()),
            "flag": pa.array(nulls([bool(v % 2) for v in ints], 4), pa.bool_()),
            "name": pa.array(nulls([f"row-{i}-" + "z" * (i % 9) for i in range(n)]), pa.string()),
            "large_name": pa.array(nulls([f"L{i}" for i in range(n)], 6), pa.large_string()),
            "blob": pa.array(nulls([bytes([i % 256]) * (i % 5) for i in range(n)]), pa.binary()),
            "day": pa.array(
                nulls([datetime.date(2020, 1, 1) + datetime.timedelta(days=i) for i in range(n)]),
                pa.date32(),
            ),
            "when": pa.array(
                nulls([base + datetime.timedelta(seconds=i) for i in range(n)]), pa.timestamp("us")
            ),
            "money": pa.array(
                nulls([decimal.Decimal(i) / 100 for i in range(n)]), pa.decimal128(12, 2)
            ),
            "tags": pa.array(
                nulls([list(range(i % 4)) for i in range(n)], 9), pa.list_(pa.int32())
            ),
            "point": pa.array(
                nulls([{"a": i, "b": f"p{i}"} for i in range(n)], 11),
                pa.struct([("a", pa.int32()), ("b", pa.string())]),
            ),
            "emb": pa.FixedSizeListArray.from_arrays(
                pa.array(rng.standard_normal(n * 4).astype(np.float32)), 4
            ),
            "city": pa.array(nulls([cities[i % 4] for i in range(n)], 5)).dictionary_encode(),
        }
    )


def _assert_same(path: Path, expected: pa.Table) -> relay.Frame:
    frame = relay.scan(path)
    assert frame.num_rows == expected.num_rows
    assert frame.columns == expected.column_names
    got = frame.to_arrow()
    for name in expected.column_names:
        assert got[name].to_pylist() == expected[name].to_pylist(), name
        assert frame[name].to_pylist() == expected[name].to_pylist(), name
    return frame


def _write_file(
    path: Path, table: pa.Table, compression: str | None, batch_rows: int = 200
) -> Path:
    options = pa.ipc.IpcWriteOptions(compression=compression)
    with pa.ipc.new_file(path, table.schema, options=options) as writer:
        writer.write_table(table, max_chunksize=batch_rows)
    return path


def _write_stream(
    path: Path,
    table: pa.Table,
    compression: str | None = None,
    batch_rows: int | None = None,
    **options,
) -> Path:
    write_options = pa.ipc.IpcWriteOptions(compression=compression, **options)
    with pa.ipc.new_stream(path, table.schema, options=write_options) as writer:
        writer.write_table(table, max_chunksize=batch_rows or max(table.num_rows, 1))
    return path


CODEC_NAMES = {"lz4": "LZ4_FRAME", "zstd": "ZSTD"}

# --------------------------------------------------------------------------------------------
# Compressed IPC files
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("compression", ["lz4", "zstd"])
def test_compressed_file_matches_pyarrow(tmp_path: Path, compression: str) -> None:
    table = _typed_table()
    path = _write_file(tmp_path / f"{compression}.arrow", table, compression)
    expected = pa.ipc.open_file(path).read_all()
    frame = _assert_same(path, expected)
    codec = CODEC_NAMES[compression]
    first_batch = frame.slice(0, 200)  # inside one record batch
    for name in ["i64", "f32", "emb", "when"]:
        column = first_batch[name]
        assert not column.is_zero_copy
        assert codec in column.copy_reason and "decompressed into memory" in column.copy_reason, (
            column.copy_reason
        )
    assert codec in first_batch.select(["i64"]).explain(), first_batch.select(["i64"]).explain()


@pytest.mark.parametrize("compression", ["lz4", "zstd"])
def test_compressed_column_refuses_zero_copy_naming_the_codec(
    tmp_path: Path, compression: str
) -> None:
    table = pa.table({"x": np.arange(1000, dtype=np.float64)})
    path = _write_file(tmp_path / "one.arrow", table, compression, batch_rows=1000)
    column = relay.scan(path)["x"]
    with pytest.raises(relay.ZeroCopyError, match=CODEC_NAMES[compression]):
        column.to_numpy(zero_copy=True)
    np.testing.assert_array_equal(column.to_numpy(), np.arange(1000, dtype=np.float64))
    # Over several batches the codec is still the reason given, not the batch count.
    path = _write_file(tmp_path / "many.arrow", table, compression, batch_rows=300)
    column = relay.scan(path)["x"]
    assert CODEC_NAMES[compression] in column.copy_reason, column.copy_reason
    with pytest.raises(relay.ZeroCopyError, match=CODEC_NAMES[compression]):
        column.to_numpy(zero_copy=True)


@pytest.mark.parametrize("compression", ["lz4", "zstd"])
def test_filters_on_compressed_files(tmp_path: Path, compression: str) -> None:
    table = _typed_table()
    path = _write_file(tmp_path / "c.arrow", table, compression)
    got = relay.scan(path).filter(relay.col("i32") > 0).select(["i32", "name"]).to_arrow()
    mask = pa.compute.fill_null(pa.compute.greater(table["i32"], 0), False)
    expected = table.filter(mask).select(["i32", "name"])
    assert got.to_pylist() == expected.to_pylist()


def test_inspect_reports_compression(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write_file(
        tmp_path / "z.arrow", pa.table({"x": np.arange(100, dtype=np.int64)}), "zstd"
    )
    assert main(["inspect", str(path)]) == 0
    out = capsys.readouterr().out
    assert "compression: ZSTD (decompressed into memory on read)" in out
    line = next(line for line in out.splitlines() if line.startswith("x "))
    assert "no:" in line and "ZSTD" in line and "decompressed into memory" in line
    # Columns whose first reason is another one still say they are decompressed.
    table = pa.table({"s": pa.array(["a", None, "c"] * 100), "x": np.arange(300, dtype=np.int64)})
    path = _write_file(tmp_path / "z2.arrow", table, "lz4", batch_rows=100)
    assert main(["inspect", str(path)]) == 0
    out = capsys.readouterr().out
    for name in ["s", "x"]:
        line = next(line for line in out.splitlines() if line.startswith(f"{name} "))
        assert "LZ4_FRAME: it is decompressed into memory" in line, line


def test_file_with_compressed_and_plain_batches(tmp_path: Path) -> None:
    """Compression is per record batch: appending to a compressed file adds plain batches."""
    table = pa.table({"x": np.arange(100, dtype=np.int64)})
    path = _write_file(tmp_path / "mixed.arrow", table, "zstd", batch_rows=100)
    relay.append(path, relay.from_arrow(pa.table({"x": np.arange(100, 150, dtype=np.int64)})))
    frame = relay.scan(path)
    np.testing.assert_array_equal(frame["x"].to_numpy(), np.arange(150))
    assert "ZSTD" in frame.slice(0, 100)["x"].copy_reason
    assert frame.slice(100, 50)["x"].is_zero_copy


# --------------------------------------------------------------------------------------------
# IPC stream files
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("batch_rows", [None, 128])
def test_stream_matches_pyarrow(tmp_path: Path, batch_rows: int | None) -> None:
    table = _typed_table()
    path = _write_stream(tmp_path / "s.arrows", table, batch_rows=batch_rows)
    with pa.ipc.open_stream(path) as reader:
        expected = reader.read_all()
    _assert_same(path, expected)


@pytest.mark.parametrize("compression", ["lz4", "zstd"])
def test_compressed_stream(tmp_path: Path, compression: str) -> None:
    table = _typed_table()
    path = _write_stream(tmp_path / "s.arrows", table, compression=compression, batch_rows=150)
    with pa.ipc.open_stream(path) as reader:
        expected = reader.read_all()
    frame = _assert_same(path, expected)
    assert CODEC_NAMES[compression] in frame.slice(0, 150)["f64"].copy_reason
    with pytest.raises(relay.ZeroCopyError, match=CODEC_NAMES[compression]):
        frame.slice(0, 150)["emb"].to_numpy(zero_copy=True)


def test_stream_columns_are_views_of_the_mapping(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    table = pa.table(
        {
            "x": rng.standard_normal(4096).astype(np.float32),
            "id": np.arange(4096, dtype=np.int64),
            "emb": pa.FixedSizeListArray.from_arrays(
                pa.array(rng.standard_normal(4096 * 8).astype(np.float32)), 8
            ),
        }
    )
    path = _write_stream(tmp_path / "view.arrows", table)
    frame = relay.scan(path)
    for name in ["x", "id", "emb"]:
        column = frame[name]
        assert column.is_zero_copy and column.copy_reason is None, column.copy_reason
        array = column.to_numpy(zero_copy=True)
        assert address_in_file_mapping(array.__array_interface__["data"][0], path)
    np.testing.assert_array_equal(frame["x"].to_numpy(), table["x"].to_numpy())
    np.testing.assert_array_equal(
        frame["emb"].to_numpy(), np.stack(table["emb"].to_numpy(zero_copy_only=False))
    )
    # A filter's gather and a slice work the same as on the file format.
    sliced = frame.slice(10, 100)["id"].to_numpy(zero_copy=True)
    assert address_in_file_mapping(sliced.__array_interface__["data"][0], path)
    np.testing.assert_array_equal(sliced, np.arange(10, 110))
    big = relay.scan(path).filter(relay.col("x") > 1.0)["id"].to_numpy()
    np.testing.assert_array_equal(big, np.arange(4096)[table["x"].to_numpy() > 1.0])


def test_stream_batches_and_loader(tmp_path: Path) -> None:
    table = pa.table(
        {"x": np.arange(1000, dtype=np.float32), "label": np.arange(1000, dtype=np.int64) % 10}
    )
    path = _write_stream(tmp_path / "batches.arrows", table, batch_rows=250)
    frame = relay.scan(path)
    assert frame.num_rows == 1000
    assert "4 record batches" in frame["x"].copy_reason
    np.testing.assert_array_equal(frame["x"].to_numpy(), table["x"].to_numpy())
    one = frame.slice(250, 250)["x"].to_numpy(zero_copy=True)
    assert address_in_file_mapping(one.__array_interface__["data"][0], path)


def test_inspect_says_stream(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write_stream(tmp_path / "i.arrows", pa.table({"x": np.arange(10, dtype=np.float64)}))
    assert main(["inspect", str(path)]) == 0
    out = capsys.readouterr().out
    assert "format:      Arrow IPC stream" in out
    assert next(line for line in out.splitlines() if line.startswith("x ")).rstrip().endswith("yes")


def test_empty_stream(tmp_path: Path) -> None:
    path = tmp_path / "empty.arrows"
    with pa.ipc.new_stream(path, pa.schema([("x", pa.float32()), ("s", pa.string())])):
        pass
    frame = relay.scan(path)
    assert frame.num_rows == 0 and frame.columns == ["x", "s"]
    assert frame["x"].to_numpy().shape == (0,)


def test_stream_with_dictionary_deltas(tmp_path: Path) -> None:
    schema = pa.schema([("city", pa.dictionary(pa.int32(), pa.string())), ("n", pa.int64())])
    first = pa.record_batch(
        [
            pa.DictionaryArray.from_arrays(
                pa.array([0, 1, None, 0], pa.int32()), pa.array(["paris", "lima"])
            ),
            pa.array([1, 2, 3, 4]),
        ],
        schema=schema,
    )
    second = pa.record_batch(
        [
            pa.DictionaryArray.from_arrays(
                pa.array([2, 0, 3], pa.int32()), pa.array(["paris", "lima", "oslo", "quito"])
            ),
            pa.array([5, None, 7]),
        ],
        schema=schema,
    )
    path = tmp_path / "deltas.arrows"
    with pa.ipc.new_stream(
        path, schema, options=pa.ipc.IpcWriteOptions(emit_dictionary_deltas=True)
    ) as writer:
        writer.write_batch(first)
        writer.write_batch(second)
    with pa.ipc.open_stream(path) as reader:
        expected = reader.read_all()
    assert expected["city"].to_pylist() == [
        "paris",
        "lima",
        None,
        "paris",
        "oslo",
        "paris",
        "quito",
    ]
    _assert_same(path, expected)


def test_stream_with_replaced_dictionary_raises_naming_the_file(tmp_path: Path) -> None:
    schema = pa.schema([("city", pa.dictionary(pa.int32(), pa.string()))])
    path = tmp_path / "replaced.arrows"
    with pa.ipc.new_stream(path, schema) as writer:
        writer.write_batch(
            pa.record_batch([pa.array(["a", "b"]).dictionary_encode()], schema=schema)
        )
        writer.write_batch(
            pa.record_batch([pa.array(["c", "d"]).dictionary_encode()], schema=schema)
        )
    with pytest.raises(relay.RelayError, match="replaces dictionary") as info:
        relay.scan(path)
    assert str(path) in str(info.value)


def test_append_to_a_stream_is_refused(tmp_path: Path) -> None:
    path = _write_stream(tmp_path / "s.arrows", pa.table({"x": np.arange(3, dtype=np.int64)}))
    before = path.read_bytes()
    with pytest.raises(relay.RelayError, match="stream") as info:
        relay.append(path, relay.from_arrow(pa.table({"x": np.arange(3, dtype=np.int64)})))
    assert str(path) in str(info.value)
    assert path.read_bytes() == before


# --------------------------------------------------------------------------------------------
# Files written by Polars
# --------------------------------------------------------------------------------------------


def _polars_frame():
    pl = pytest.importorskip("polars")
    n = 400
    return pl.DataFrame(
        {
            "i": [None if i % 7 == 0 else i for i in range(n)],
            "f": [None if i % 5 == 0 else i / 3 for i in range(n)],
            "s": [None if i % 6 == 0 else f"s{i}" for i in range(n)],
            "b": [None if i % 4 == 0 else i % 2 == 0 for i in range(n)],
            "l": [None if i % 9 == 0 else list(range(i % 3)) for i in range(n)],
        }
    )


@pytest.mark.parametrize("compression", ["zstd", "lz4", "uncompressed"])
def test_polars_write_ipc(tmp_path: Path, compression: str) -> None:
    frame = _polars_frame()
    path = tmp_path / f"polars-{compression}.arrow"
    frame.write_ipc(path, compression=compression)
    expected = pa.ipc.open_file(path).read_all()
    relay_frame = _assert_same(path, expected)
    if compression != "uncompressed":
        assert CODEC_NAMES[compression] in relay_frame.slice(0, 10)["f"].copy_reason


@pytest.mark.parametrize("compression", ["zstd", "lz4", "uncompressed"])
def test_polars_write_ipc_stream(tmp_path: Path, compression: str) -> None:
    frame = _polars_frame()
    path = tmp_path / f"polars-{compression}.arrows"
    frame.write_ipc_stream(path, compression=compression)
    with pa.ipc.open_stream(path) as reader:
        expected = reader.read_all()
    _assert_same(path, expected)


def test_legacy_stream_without_continuation_markers(tmp_path: Path) -> None:
    table = pa.table({"x": np.arange(100, dtype=np.float64), "s": pa.array([None, "a"] * 50)})
    path = _write_stream(tmp_path / "legacy.arrows", table, batch_rows=40, use_legacy_format=True)
    assert path.read_bytes()[:4] != b"\xff\xff\xff\xff"
    with pa.ipc.open_stream(path) as reader:
        expected = reader.read_all()
    _assert_same(path, expected)


def test_damaged_stream_names_file_and_message(tmp_path: Path) -> None:
    table = pa.table({"x": np.arange(100, dtype=np.float64)})
    original = _write_stream(tmp_path / "ok.arrows", table, batch_rows=50).read_bytes()
    data = bytearray(original)
    schema_end = 8 + struct.unpack_from("<i", data, 4)[0]
    data[schema_end : schema_end + 4] = b"BAD!"
    path = tmp_path / "bad.arrows"
    path.write_bytes(bytes(data))
    with pytest.raises(relay.CorruptFileError) as info:
        relay.scan(path)
    message = str(info.value)
    assert (
        str(path) in message
        and f"message 1 (byte offset {schema_end})" in message
        and "continuation" in message
    )
    truncated = tmp_path / "cut.arrows"
    truncated.write_bytes(original[:-20])
    with pytest.raises(relay.CorruptFileError, match="truncated") as info:
        relay.scan(truncated)
    assert str(truncated) in str(info.value)


def _misaligned_file(tmp_path: Path) -> tuple[Path, pa.Table]:
    """A pyarrow-written file (8-byte alignment) whose decimal128 and string_view buffers are
    not 16-byte aligned, as arrow-rs needs them: it realigns them into memory."""
    for lead in range(1, 4):
        table = pa.table(
            {
                "pad": pa.array(range(lead), pa.int64()),
                "d": pa.array(
                    [decimal.Decimal(f"{i}.25") for i in range(lead)], pa.decimal128(15, 2)
                ),
                "s": pa.array([f"v{i}" for i in range(lead)], pa.string_view()),
            }
        )
        path = tmp_path / f"lead{lead}.arrow"
        with pa.ipc.new_file(path, table.schema) as writer:
            writer.write_table(table)
        frame = relay.scan(path)
        if all("not aligned" in (frame[c].copy_reason or "") for c in ("d", "s")):
            return path, table
    raise AssertionError("pyarrow wrote every layout 16-byte aligned")


def test_misaligned_columns_are_realigned_once_per_scan(tmp_path: Path) -> None:
    path, table = _misaligned_file(tmp_path)
    frame = relay.scan(path)
    first, again = frame.to_arrow(), frame.to_arrow()
    assert first.equals(table) and again.equals(table)
    for name in ("d", "s"):
        # The second query reads the realigned copy the first one made (the views buffer of a
        # string_view column, the values of a decimal one), not a new copy.
        kept = first.column(name).chunk(0).buffers()[1]
        assert again.column(name).chunk(0).buffers()[1].address == kept.address
        assert not address_in_file_mapping(kept.address, path)
    # Another scan is another opening: its own copy, from the file's bytes.
    other = relay.scan(path).to_arrow()
    assert other.equals(table)
    assert (
        other.column("d").chunk(0).buffers()[1].address
        != first.column("d").chunk(0).buffers()[1].address
    )
