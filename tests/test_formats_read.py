"""relay_ml.scan over Parquet, CSV and NDJSON files: results against pyarrow's readers, filters
and selections against pyarrow.compute, pruning and projection in profile(), explain(),
pickling, streaming in bounded memory, and errors that name the file."""

from __future__ import annotations

import datetime as dt
import json
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.json as pajson
import pyarrow.parquet as pq
import pytest

import relay_ml as relay
from conftest import rss_anon_bytes
from relay_ml import col


def _table(rows: int = 1000) -> pa.Table:
    rng = np.random.default_rng(0)
    ids = np.arange(rows, dtype=np.int64)
    return pa.table(
        {
            "id": ids,
            "x": pa.array(rng.normal(size=rows).astype(np.float32)),
            "age": pa.array(
                [None if i % 13 == 0 else int(i % 90) for i in range(rows)], pa.int32()
            ),
            "name": pa.array([None if i % 11 == 0 else f"n{i % 37}" for i in range(rows)]),
            "city": pa.array(
                [["oslo", "rome", "lima"][i % 3] for i in range(rows)]
            ).dictionary_encode(),
            "ts": pa.array(
                [dt.datetime(2024, 1, 1) + dt.timedelta(minutes=int(i)) for i in range(rows)],
                pa.timestamp("us"),
            ),
            "tags": pa.array(
                [[int(i), int(i) + 1][: i % 3] for i in range(rows)], pa.list_(pa.int64())
            ),
        }
    )


def _same(frame: relay.Frame, expected: pa.Table) -> None:
    actual = frame.to_arrow()
    assert actual.column_names == expected.column_names
    for name in expected.column_names:
        want = expected.column(name).combine_chunks()
        have = actual.column(name).combine_chunks()
        if pa.types.is_dictionary(want.type):
            want = want.cast(want.type.value_type)
        if pa.types.is_dictionary(have.type):
            have = have.cast(have.type.value_type)
        assert have.equals(want), name


@pytest.mark.parametrize("compression", ["snappy", "zstd", "lz4", "gzip", "none"])
def test_parquet_written_by_pyarrow_reads_as_pyarrow_reads_it(
    tmp_path: Path, compression: str
) -> None:
    path = tmp_path / f"data-{compression}.parquet"
    pq.write_table(_table(), path, compression=compression, row_group_size=128)
    assert pq.ParquetFile(path).num_row_groups == 8
    frame = relay.scan(path)
    assert len(frame) == 1000
    _same(frame, pq.read_table(path))


def test_parquet_written_by_polars(tmp_path: Path) -> None:
    path = tmp_path / "polars.parquet"
    df = pl.DataFrame(
        {
            "a": np.arange(500),
            "b": [f"s{i}" if i % 4 else None for i in range(500)],
            "c": np.linspace(0, 1, 500),
        }
    )
    df.write_parquet(path, row_group_size=100)
    _same(relay.scan(path), pq.read_table(path))


def test_filter_and_select_match_pyarrow_compute(tmp_path: Path) -> None:
    path = tmp_path / "data.parquet"
    table = _table()
    pq.write_table(table, path, row_group_size=100)
    frame = relay.scan(path).filter((col("age") > 40) & (col("id") < 700)).select("id", "name", "x")
    mask = pc.and_(pc.greater(table["age"], 40), pc.less(table["id"], 700))
    expected = table.filter(pc.fill_null(mask, False)).select(["id", "name", "x"])
    _same(frame, expected)


def test_row_groups_are_pruned_by_their_statistics(tmp_path: Path) -> None:
    path = tmp_path / "sorted.parquet"
    pq.write_table(_table(), path, row_group_size=100)
    frame = relay.scan(path).filter(col("id") >= 850)
    assert frame["id"].to_numpy().tolist() == list(range(850, 1000))
    (read,) = [op for op in frame.profile() if op["operator"].startswith("READ")]
    assert (read["batches_read"], read["batches_skipped"]) == (2, 8)
    assert read["rows_in"] == 200 and read["rows_out"] == 150


def test_pages_are_skipped_by_the_page_index(tmp_path: Path) -> None:
    """Pages whose page-index bounds rule a conjunct out are not decoded; conjuncts on columns
    with other page boundaries intersect; files without a page index read every row."""
    n = 200_000
    rng = np.random.default_rng(3)
    table = pa.table(
        {
            "t": np.arange(n, dtype=np.int64),  # sorted: pages hold ranges
            "u": np.repeat(np.arange(n // 50, dtype=np.int32), 50),  # sorted, narrower pages
            "x": rng.normal(size=n),
            "f": np.where(np.arange(n) % 1000 == 7, np.nan, np.arange(n, dtype=np.float64)),
        }
    )
    indexed, plain = tmp_path / "indexed.parquet", tmp_path / "plain.parquet"
    pq.write_table(
        table, indexed, row_group_size=100_000, data_page_size=4096, write_page_index=True
    )
    pq.write_table(
        table, plain, row_group_size=100_000, data_page_size=4096, write_page_index=False
    )

    def rows_decoded(frame: relay.Frame) -> int:
        (read,) = [op for op in frame.profile() if op["operator"].startswith("READ")]
        return read["rows_in"]

    cases = [
        (col("t") >= 150_000, 55_000),  # a page or so more than the 50_000 rows
        (col("t").between(120_000, 121_000) & (col("x") > 0), 10_000),
        ((col("t") < 30_000) & (col("u") >= 500), 10_000),
        # NaN sorts above every number here, and pyarrow records no NaN counts: a page of f
        # may hold a NaN above its maximum, so `>` decodes every page of f, while the minimum
        # still rules out the pages above a `<`, `==` or `is_in` bound.
        (col("f") > 199_000.0, n + 1),
        (col("f") < 2_000.0, 10_000),
        (col("f") == 150_000.0, 155_000),
        (col("f").is_in([5.0, 150_000.0]), 155_000),
    ]
    for expr, most in cases:
        ours = relay.scan(indexed).filter(expr)
        theirs = relay.scan(plain).filter(expr)
        # Polars' equality: NaN equals NaN.
        assert pl.from_arrow(ours.to_arrow()).equals(pl.from_arrow(theirs.to_arrow())), repr(expr)
        assert rows_decoded(ours) < most, (repr(expr), rows_decoded(ours))
        assert rows_decoded(theirs) >= rows_decoded(ours)
    expected = table.filter(pc.greater_equal(table["t"], 150_000))
    assert pl.from_arrow(relay.scan(indexed).filter(col("t") >= 150_000).to_arrow()).equals(
        pl.from_arrow(expected)
    )
    # A slice (iter_batches) reads by position and decodes whole row groups.
    batches = list(relay.scan(indexed).filter(col("t") >= 150_000).iter_batches(40_000))
    assert sum(len(b) for b in batches) == 50_000


def test_only_the_selected_columns_are_decoded(tmp_path: Path) -> None:
    path = tmp_path / "wide.parquet"
    pq.write_table(_table(), path)

    def bytes_read(frame: relay.Frame) -> int:
        return sum(op["bytes_read"] for op in frame.profile() if op["operator"].startswith("READ"))

    everything = bytes_read(relay.scan(path))
    one = bytes_read(relay.scan(path).select("id"))
    assert 0 < one <= 1000 * 8 * 2 < everything
    assert "columns=[id]" in relay.scan(path).select("id").explain()


def test_explain_says_columns_are_decoded_copies_and_frames_pickle(tmp_path: Path) -> None:
    path = tmp_path / "data.parquet"
    pq.write_table(_table(), path, row_group_size=250)
    frame = relay.scan(path).filter(col("age") < 10).select("id", "name")
    text = frame.explain()
    assert text.count("decoded from Parquet") == 2, text
    assert frame["id"].copy_reason is not None and "decoded from Parquet" in frame["id"].copy_reason
    again = pickle.loads(pickle.dumps(frame))
    assert again.to_arrow().equals(frame.to_arrow())
    assert again.origin == str(path)


def test_streaming_a_parquet_file_keeps_memory_bounded(tmp_path: Path) -> None:
    path = tmp_path / "big.parquet"
    rows = 4_000_000
    table = pa.table({"a": np.arange(rows, dtype=np.int64), "b": np.ones(rows, dtype=np.float64)})
    pq.write_table(table, path, row_group_size=100_000, compression="zstd")
    del table
    data_bytes = rows * 16  # 64 MB decoded; a batch is 1.6 MB
    baseline = rss_anon_bytes()
    peak = baseline
    total = 0
    for batch in relay.scan(path, batch_size=100_000):
        total += int(batch["a"].to_numpy().sum())
        peak = max(peak, rss_anon_bytes())
    assert total == rows * (rows - 1) // 2
    assert peak - baseline < data_bytes / 4, (peak - baseline) / 1e6


def test_a_selective_parquet_query_holds_about_its_result(tmp_path: Path) -> None:
    # Each decoded batch is gathered down to its passing rows before the next is decoded, so
    # the peak memory of the query follows its result, not the decoded columns (128 MB here).
    path = tmp_path / "wide.parquet"
    rows = 4_000_000
    key = np.arange(rows, dtype=np.int64)
    table = pa.table(
        {"key": key} | {f"f{i}": (key % 1000).astype(np.float64) + i for i in range(3)}
    )
    pq.write_table(table, path, row_group_size=500_000, compression="zstd")
    del table, key
    code = f"""
import relay_ml as relay
from relay_ml import col
def peak():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
before = peak()
out = relay.scan({str(path)!r}).filter(col("key") % 100 == 7).select("f0", "f1", "f2").to_numpy()
assert out.shape == ({rows // 100}, 3), out.shape
assert out[0].tolist() == [7.0, 8.0, 9.0] and out[-1].tolist() == [907.0, 908.0, 909.0], out
print(peak() - before)
"""
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    growth = int(result.stdout.split()[-1])
    decoded_bytes = rows * 32
    assert growth < decoded_bytes / 4, growth / 1e6


def _numeric_table(rows: int) -> pa.Table:
    rng = np.random.default_rng(11)
    nulls = rng.random(rows) < 0.1
    return pa.table(
        {
            "key": rng.integers(0, 100, rows, dtype=np.int32),
            "few": pa.array(rng.integers(-5, 5, rows, dtype=np.int32)),
            "many": pa.array(rng.integers(-(2**40), 2**40, rows), mask=nulls),
            "f32": pa.array(rng.normal(size=rows).astype(np.float32), mask=np.roll(nulls, 7)),
            "f64": rng.normal(size=rows),
            "name": pa.array([f"n{i % 41}" for i in range(rows)]),
        }
    )


@pytest.mark.parametrize(
    "writer",
    ["pyarrow v1", "pyarrow v2", "pyarrow small dictionaries", "pyarrow no dictionary", "polars"],
)
def test_columns_the_filter_does_not_read_are_decoded_at_passing_rows(
    tmp_path: Path, writer: str
) -> None:
    # Numeric columns that a filter does not read are decoded only at the rows that pass: the
    # same values, nulls included, as decoding every row, for each writer's pages and encodings.
    rows = 60_000
    table = _numeric_table(rows)
    path = tmp_path / "numeric.parquet"
    options = {"row_group_size": 20_000, "data_page_size": 16_384}
    if writer == "polars":
        pl.from_arrow(table).write_parquet(path, row_group_size=20_000)
    elif writer == "pyarrow v2":
        pq.write_table(table, path, data_page_version="2.0", compression="snappy", **options)
    elif writer == "pyarrow small dictionaries":
        pq.write_table(table, path, dictionary_pagesize_limit=4096, compression="zstd", **options)
    elif writer == "pyarrow no dictionary":
        pq.write_table(table, path, use_dictionary=False, compression="none", **options)
    else:
        pq.write_table(table, path, compression="zstd", **options)
    table = pq.read_table(path)  # as pyarrow reads it back (Polars writes large strings)
    columns = ["many", "f32", "name", "f64", "few"]
    for predicate, mask in [
        (col("key") > 96, pc.greater(table["key"], 96)),
        (col("key") < 60, pc.less(table["key"], 60)),
        (col("key") >= 0, pc.greater_equal(table["key"], 0)),
        (col("key") > 200, pc.greater(table["key"], 200)),
        (
            (col("key") == 3) & (col("f64") > 0),
            pc.and_(pc.equal(table["key"], 3), pc.greater(table["f64"], 0)),
        ),
    ]:
        frame = relay.scan(path).filter(predicate).select(*columns)
        _same(frame, table.filter(mask).select(columns))
    # The filter's own column among the output, between columns decoded at the passing rows.
    mixed = ["f64", "key", "name", "many"]
    _same(
        relay.scan(path).filter(col("key") > 90).select(*mixed),
        table.filter(pc.greater(table["key"], 90)).select(mixed),
    )

    # `key > 96` keeps 3% of the rows: the read decodes `key` whole and of the other numeric
    # columns about what passes (decoded whole, they are `numeric_bytes`).
    def bytes_read(*names: str) -> int:
        frame = relay.scan(path).filter(col("key") > 96).select(*names)
        frame.collect()
        (read,) = [op for op in frame.profile() if op["operator"].startswith("READ")]
        return read["bytes_read"]

    numeric_bytes = rows * (8 + 4 + 8 + 4)
    selected_bytes = bytes_read("many", "f32", "f64", "few") - bytes_read("key")
    assert 0 < selected_bytes < numeric_bytes / 10, selected_bytes


def test_a_single_row_group_decodes_its_columns_apart_and_reads_the_same(tmp_path: Path) -> None:
    # With fewer row groups than threads, each column of a row group is decoded on its own task
    # and the batches are put back together: every type and the page index still line up.
    n = 300_000
    table = pa.table(
        {
            "t": np.arange(n, dtype=np.int64),
            "x": pa.array(np.arange(n) / 3, mask=np.arange(n) % 11 == 0),
            "s": pa.array([f"s{i % 97}" for i in range(n)]),
            "l": pa.array([[i, i + 1] if i % 5 else None for i in range(n)], pa.list_(pa.int32())),
        }
    )
    path = tmp_path / "one_group.parquet"
    pq.write_table(table, path, row_group_size=n, data_page_size=8192, write_page_index=True)
    assert pq.ParquetFile(path).num_row_groups == 1
    _same(relay.scan(path), table)
    frame = relay.scan(path).filter((col("t") >= 250_000) & (col("x") > 0)).select("l", "s", "t")
    mask = pc.and_(pc.greater_equal(table["t"], 250_000), pc.greater(table["x"], 0))
    expected = table.filter(pc.fill_null(mask, False)).select(["l", "s", "t"])
    _same(frame, expected)
    (read,) = [op for op in frame.profile() if op["operator"].startswith("READ")]
    assert read["rows_in"] < 60_000  # the page index still skips the pages before 250_000


def test_iter_batches_slices_decode_only_the_overlapping_row_groups(tmp_path: Path) -> None:
    path = tmp_path / "groups.parquet"
    pq.write_table(_table(), path, row_group_size=100)
    batch = relay.scan(path).slice(250, 100)
    assert batch["id"].to_numpy().tolist() == list(range(250, 350))
    (read,) = [op for op in batch.profile() if op["operator"].startswith("READ")]
    assert read["batches_read"] == 2 and read["rows_in"] == 100


def test_csv_written_by_pyarrow_polars_and_python(tmp_path: Path) -> None:
    table = pa.table({"a": [1, 2, None, 4], "b": ["x", "y", "z", None], "c": [0.5, 1.5, 2.5, 3.5]})
    by_pyarrow = tmp_path / "pyarrow.csv"
    pacsv.write_csv(table, by_pyarrow)
    by_polars = tmp_path / "polars.csv"
    pl.from_arrow(table).write_csv(by_polars)
    by_python = tmp_path / "python.csv"
    by_python.write_text("a,b,c\n1,x,0.5\n2,y,1.5\n,z,2.5\n4,,3.5\n")
    for path in (by_pyarrow, by_polars, by_python):
        expected = pacsv.read_csv(path)
        actual = relay.scan(path).to_arrow()
        assert actual.column_names == expected.column_names
        assert actual["a"].to_pylist() == expected["a"].to_pylist()
        assert actual["c"].to_pylist() == expected["c"].to_pylist()
        assert actual["b"].to_pylist()[:3] == ["x", "y", "z"]


def test_csv_options_and_schema_override(tmp_path: Path) -> None:
    path = tmp_path / "data.txt"
    path.write_text("1;a\n2;b\n3;c\n")
    frame = relay.scan(
        path, format="csv", has_header=False, separator=";", schema={"n": "int32", "s": "string"}
    )
    assert frame.schema == {"n": "int32", "s": "string"}
    assert frame.filter(col("n") >= 2)["s"].to_pylist() == ["b", "c"]
    expected = pacsv.read_csv(
        path,
        read_options=pacsv.ReadOptions(column_names=["n", "s"]),
        parse_options=pacsv.ParseOptions(delimiter=";"),
        convert_options=pacsv.ConvertOptions(column_types={"n": pa.int32()}),
    )
    assert frame.to_arrow().equals(expected)
    assert pickle.loads(pickle.dumps(frame)).to_arrow().equals(expected)


def test_ndjson_written_by_polars_and_python(tmp_path: Path) -> None:
    rows = [{"a": i, "b": f"s{i}", "c": i / 2} for i in range(50)]
    by_python = tmp_path / "python.jsonl"
    by_python.write_text("".join(json.dumps(r) + "\n" for r in rows))
    by_polars = tmp_path / "polars.ndjson"
    pl.DataFrame(rows).write_ndjson(by_polars)
    for path in (by_python, by_polars):
        expected = pajson.read_json(path)
        frame = relay.scan(path)
        _same(frame, expected)
        assert frame.filter(col("a") > 45)["b"].to_pylist() == ["s46", "s47", "s48", "s49"]
    frame = relay.scan(by_python, schema=pa.schema([("a", pa.int32()), ("b", pa.string())]))
    assert frame.schema == {"a": "int32", "b": "string"}


def _large_text_table(rows: int) -> pa.Table:
    """Rows whose strings hold delimiters, quotes and line breaks now and then."""
    notes = np.array(
        ["plain", "with, comma", 'say "hi"', "two\nlines", "", "crlf\r\nend"], dtype=object
    )
    return pa.table(
        {
            "id": np.arange(rows, dtype=np.int64),
            "x": np.arange(rows) / 7,
            "note": pa.array(notes[np.arange(rows) % len(notes)].tolist()),
        }
    )


def test_large_csv_and_ndjson_files_read_in_pieces_like_one(tmp_path: Path) -> None:
    # Files over 8 MiB are split into pieces at record boundaries and decoded in parallel;
    # quoted fields that span lines must never be cut.
    table = _large_text_table(600_000)
    csv_path = tmp_path / "large.csv"
    pacsv.write_csv(table, csv_path)
    ndjson_path = tmp_path / "large.ndjson"
    pl.from_arrow(table).write_ndjson(ndjson_path)
    # Compared with the table written: pyarrow's own reader, even with `newlines_in_values`,
    # turns one of these "\r\n"s into "\r" where its chunks meet. relay reads "" as null.
    from_csv = table.set_column(
        2, "note", pc.if_else(pc.equal(table["note"], ""), None, table["note"])
    )
    for path, expected in ((csv_path, from_csv), (ndjson_path, pajson.read_json(ndjson_path))):
        assert path.stat().st_size > 16 << 20
        frame = relay.scan(path)
        result = frame.to_arrow()
        assert result.num_rows == table.num_rows
        for name in ("id", "x", "note"):
            assert result[name].to_pylist() == expected[name].to_pylist(), (path, name)
        (read,) = [op for op in frame.profile() if op["operator"].startswith("READ")]
        assert read["batches_read"] > 2, read
        assert (
            frame.filter(col("id") >= 599_998)["note"].to_pylist()
            == expected["note"].to_pylist()[-2:]
        )


def test_a_bad_value_deep_in_a_large_csv_names_its_line(tmp_path: Path) -> None:
    lines = ["id,v"] + [f"{i},{i}" for i in range(1_500_000)]
    lines[1_234_568] = "1234567,oops"
    path = tmp_path / "bad_late.csv"
    path.write_text("\n".join(lines) + "\n")
    assert path.stat().st_size > 16 << 20
    with pytest.raises(relay.CorruptFileError, match=r"bad_late.csv.*line 1234569"):
        relay.scan(path, schema={"id": "int64", "v": "int64"}).to_arrow()


def test_format_comes_from_magic_bytes_when_the_suffix_says_nothing(tmp_path: Path) -> None:
    path = tmp_path / "no_suffix"
    pq.write_table(pa.table({"a": [1, 2, 3]}), path)
    assert relay.scan(path)["a"].to_pylist() == [1, 2, 3]
    unknown = tmp_path / "mystery"
    unknown.write_bytes(b"\x00\x01\x02 what")
    with pytest.raises(relay.RelayValueError, match=r"mystery.*format="):
        relay.scan(unknown)


def test_malformed_files_raise_errors_that_name_the_file(tmp_path: Path) -> None:
    bad_parquet = tmp_path / "bad.parquet"
    bad_parquet.write_bytes(b"PAR1 not really parquet PAR1")
    with pytest.raises(relay.CorruptFileError, match=r"bad\.parquet.*footer"):
        relay.scan(bad_parquet).to_arrow()
    bad_csv = tmp_path / "bad.csv"
    bad_csv.write_text("a,b\n1,2\n3\n4,5\n")
    with pytest.raises(relay.CorruptFileError, match=r"bad\.csv.*line 3"):
        relay.scan(bad_csv).to_arrow()
    bad_json = tmp_path / "bad.ndjson"
    bad_json.write_text('{"a": 1}\n{"a": \n')
    with pytest.raises(relay.CorruptFileError, match=r"bad\.ndjson.*line 2"):
        relay.scan(bad_json).to_arrow()
    # In a list of files, the error names the damaged one.
    good = tmp_path / "good.ndjson"
    good.write_text('{"a": 1}\n{"a": 2}\n')
    with pytest.raises(relay.CorruptFileError, match=r"bad\.ndjson.*line 2"):
        relay.scan([good, bad_json]).to_arrow()
    with pytest.raises(relay.RelayTypeError, match="unknown options"):
        relay.scan(bad_csv, delimiter=";")
