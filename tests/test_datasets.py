"""relay_ml.scan over many files: lists of paths, globs, directories, hive partitions (typed,
null, pruned without opening the files), files whose columns differ, pickling."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.feather as feather
import pyarrow.parquet as pq
import pytest

import relay_ml as relay
from relay_ml import col


def _part(start: int, rows: int = 10) -> pa.Table:
    ids = np.arange(start, start + rows, dtype=np.int64)
    return pa.table(
        {"id": ids, "value": (ids * 0.5).astype(np.float64), "name": [f"r{i}" for i in ids]}
    )


def _hive(root: Path, suffix: str = "parquet") -> None:
    """Folders year=2023..2024 / month=1..3 and month=__HIVE_DEFAULT_PARTITION__, one file of
    ten rows each (ids 0..80 in path order), in `suffix`'s format."""
    start = 0
    for year in (2023, 2024):
        for month in ("1", "2", "3", "__HIVE_DEFAULT_PARTITION__"):
            folder = root / f"year={year}" / f"month={month}"
            folder.mkdir(parents=True)
            table = _part(start)
            if suffix == "parquet":
                pq.write_table(table, folder / "part-0.parquet", row_group_size=5)
            else:
                feather.write_feather(
                    table, folder / "part-0.arrow", chunksize=5, compression="uncompressed"
                )
            start += 10


def _read_op(frame: relay.Frame) -> dict:
    (read,) = [op for op in frame.profile() if op["operator"].startswith("READ")]
    return read


def test_a_list_of_paths_reads_the_files_in_order(tmp_path: Path) -> None:
    paths = []
    for index in range(3):
        path = tmp_path / f"f{index}.parquet"
        pq.write_table(_part(index * 10), path)
        paths.append(path)
    frame = relay.scan([paths[2], paths[0], paths[1]])
    assert frame["id"].to_pylist() == list(range(20, 30)) + list(range(0, 20))
    expected = pa.concat_tables([pq.read_table(p) for p in (paths[2], paths[0], paths[1])])
    assert (
        frame.to_arrow().equals(expected.combine_chunks())
        or frame.to_arrow().to_pylist() == expected.to_pylist()
    )


def test_globs_are_sorted_and_recursive_and_mix_ipc_files(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    pq.write_table(_part(0), tmp_path / "b.parquet")
    pq.write_table(_part(10), tmp_path / "a.parquet")
    pq.write_table(_part(20), tmp_path / "sub" / "c.parquet")
    feather.write_feather(_part(30), tmp_path / "sub" / "d.arrow", compression="uncompressed")
    assert relay.scan(str(tmp_path / "*.parquet"))["id"].to_pylist()[:2] == [10, 11]
    frame = relay.scan(str(tmp_path / "**" / "*.parquet"))
    assert sorted(frame["id"].to_pylist()) == list(range(30))
    mixed = relay.scan(str(tmp_path / "sub" / "*"))
    assert mixed["id"].to_pylist() == list(range(20, 40))
    with pytest.raises(relay.RelayFileNotFoundError, match="no file matches"):
        relay.scan(str(tmp_path / "*.csv"))


@pytest.mark.parametrize("suffix", ["parquet", "arrow"])
def test_hive_partitions_are_typed_columns_like_pyarrow_reads_them(
    tmp_path: Path, suffix: str
) -> None:
    _hive(tmp_path, suffix)
    frame = relay.scan(tmp_path)
    assert frame.schema == {
        "id": "int64",
        "value": "float64",
        "name": "string",
        "year": "int64",
        "month": "int64",
    }
    expected = pads.dataset(
        tmp_path, format="parquet" if suffix == "parquet" else "ipc", partitioning="hive"
    ).to_table()
    actual = frame.to_arrow()
    order = pc.sort_indices(expected, [("id", "ascending")])
    expected = expected.take(order)
    assert actual["id"].to_pylist() == expected["id"].to_pylist()
    assert actual["year"].to_pylist() == expected["year"].to_pylist()
    assert actual["month"].to_pylist() == expected["month"].to_pylist()
    assert actual["month"].null_count == 20


def test_partition_filters_skip_files_without_opening_them(tmp_path: Path) -> None:
    _hive(tmp_path)
    frame = relay.scan(tmp_path).filter((col("year") == 2024) & (col("month") <= 2))
    assert frame["id"].to_pylist() == list(range(40, 60))
    read = _read_op(frame)
    assert (read["files_read"], read["files_skipped"]) == (2, 6)
    assert "files=2/8" in frame.explain()
    nulls = relay.scan(tmp_path).filter(col("month").is_null())
    assert _read_op(nulls)["files_read"] == 2
    assert sorted(nulls["id"].to_pylist()) == list(range(30, 40)) + list(range(70, 80))


def test_a_pruned_file_is_never_opened(tmp_path: Path) -> None:
    _hive(tmp_path)
    # Damage a file the filter rules out: reading it would fail, so it was never opened.
    (tmp_path / "year=2023" / "month=2" / "part-0.parquet").write_bytes(b"PAR1 damaged PAR1")
    frame = relay.scan(tmp_path).filter(col("year") == 2024).select("id", "month")
    assert frame["id"].to_pylist() == list(range(40, 80))
    with pytest.raises(relay.InvalidFileError, match="month=2"):
        relay.scan(tmp_path).to_arrow()


def test_string_partitions_and_row_group_pruning_together(tmp_path: Path) -> None:
    for city, start in (("oslo", 0), ("rome", 100), ("lima", 200)):
        folder = tmp_path / f"city={city}"
        folder.mkdir()
        pq.write_table(_part(start, 100), folder / "data.parquet", row_group_size=25)
    frame = relay.scan(tmp_path)
    assert frame.schema["city"] == "string"
    filtered = frame.filter((col("city") == "rome") & (col("id") >= 180))
    assert filtered["id"].to_pylist() == list(range(180, 200))
    read = _read_op(filtered)
    assert (read["files_read"], read["files_skipped"], read["batches_read"]) == (1, 2, 1)
    table = frame.to_arrow()
    mask = pc.and_(pc.equal(table["city"], "rome"), pc.greater_equal(table["id"], 180))
    assert filtered.to_arrow().equals(table.filter(mask))


def test_files_whose_columns_differ_raise_naming_the_file_and_column(tmp_path: Path) -> None:
    pq.write_table(_part(0), tmp_path / "a.parquet")
    other = _part(10).set_column(1, "value", pa.array([str(i) for i in range(10)]))
    pq.write_table(other, tmp_path / "b.parquet")
    with pytest.raises(relay.RelayValueError, match=r'b\.parquet.*"value".*string'):
        relay.scan(tmp_path).to_arrow()
    pq.write_table(_part(10).drop_columns(["name"]), tmp_path / "b.parquet")
    with pytest.raises(relay.RelayValueError, match=r'b\.parquet.*"name"'):
        relay.scan([tmp_path / "a.parquet", tmp_path / "b.parquet"]).to_arrow()


def test_csv_files_are_read_with_the_first_files_inferred_types(tmp_path: Path) -> None:
    """Types inferred from each file's own rows may differ (an empty column, whole numbers);
    later files with the same column names are read with the first file's types, and a value
    that does not fit them raises naming the file and line."""
    (tmp_path / "a.csv").write_text("x,y,s\n1,1.5,a\n2,2.5,b\n")
    (tmp_path / "b.csv").write_text("x,y,s\n,2,c\n,3,d\n")
    frame = relay.scan(str(tmp_path / "*.csv"))
    assert frame.schema == {"x": "int64", "y": "float64", "s": "string"}
    assert frame.to_arrow().to_pydict() == {
        "x": [1, 2, None, None],
        "y": [1.5, 2.5, 2.0, 3.0],
        "s": ["a", "b", "c", "d"],
    }
    (tmp_path / "c.csv").write_text("x,y,s\n3,4,e\nnot a number,5,f\n")
    with pytest.raises(relay.CorruptFileError, match=r"c\.csv.*line 3"):
        relay.scan(str(tmp_path / "*.csv")).to_arrow()
    # Other column names still raise when the file is opened.
    (tmp_path / "c.csv").write_text("x,z,s\n3,4,e\n")
    with pytest.raises(relay.RelayError, match=r"c\.csv"):
        relay.scan(str(tmp_path / "*.csv")).to_arrow()


def test_dataset_frames_pickle_and_stream_in_batches(tmp_path: Path) -> None:
    _hive(tmp_path)
    frame = relay.scan(tmp_path).filter(col("month") == 3).select("id", "year")
    again = pickle.loads(pickle.dumps(frame))
    assert again.to_arrow().equals(frame.to_arrow())
    batches = list(relay.scan(tmp_path, batch_size=7))
    assert [len(b) for b in batches] == [7] * 11 + [3]
    ids = [i for b in batches for i in b["id"].to_pylist()]
    assert ids == relay.scan(tmp_path)["id"].to_pylist()


def test_hive_partitioning_can_be_turned_off_and_options_are_checked(tmp_path: Path) -> None:
    _hive(tmp_path)
    assert "year" not in relay.scan(tmp_path, hive_partitioning=False).columns
    with pytest.raises(relay.RelayTypeError):
        relay.scan(tmp_path, hive_partitioning="yes")
    with pytest.raises(relay.RelayValueError, match="format"):
        relay.scan(tmp_path, format="xml")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(relay.NotArrowFileError, match="directory that holds no data files"):
        relay.scan(empty)


def test_reading_only_partition_columns_decodes_no_file_data(tmp_path: Path) -> None:
    _hive(tmp_path)
    years = relay.scan(tmp_path).select("year")
    assert years["year"].to_pylist() == [2023] * 40 + [2024] * 40
    read = _read_op(years)
    assert read["bytes_read"] == 0 and read["rows_in"] == 80
    months = relay.scan(tmp_path).group_by("month").agg(col("month").count().alias("n"))
    month_column, count_column = months.to_arrow().to_pydict().values()
    assert dict(zip(month_column, count_column, strict=True)) == {1: 20, 2: 20, 3: 20, None: 0}


def test_a_glob_reads_hive_partitions_when_asked(tmp_path: Path) -> None:
    _hive(tmp_path)
    pattern = str(tmp_path / "year=2024" / "month=3" / "*.parquet")
    assert relay.scan(pattern).columns == ["id", "value", "name"]
    frame = relay.scan(str(tmp_path / "*" / "month=3" / "*.parquet"), hive_partitioning=True)
    assert frame.columns == ["id", "value", "name", "year", "month"]
    assert frame.select("year", "month").to_arrow().to_pydict() == {
        "year": [2023] * 10 + [2024] * 10,
        "month": [3] * 20,
    }
    huge = tmp_path / "big" / "key=99999999999999999999"
    huge.mkdir(parents=True)
    pq.write_table(_part(0), huge / "p.parquet")
    assert relay.scan(tmp_path / "big").schema["key"] == "string"


def test_explain_names_where_each_column_comes_from(tmp_path: Path) -> None:
    _hive(tmp_path)
    text = relay.scan(tmp_path).filter(col("year") == 2024).select("id", "year").explain()
    assert "id (int64): copy: decoded from Parquet" in text
    assert "year (int64): copy: a partition column" in text
    frame = relay.scan(tmp_path).select("year")
    assert "folder names" in frame["year"].copy_reason


def test_a_partition_filter_prints_nothing_to_stderr(tmp_path: Path) -> None:
    """The README's hive example: the filter on a partition column reads no statistics of it
    from the files (it is not in them), and nothing reaches stderr."""
    import subprocess
    import sys

    _hive(tmp_path)
    script = (
        "import sys, relay_ml as relay\n"
        "from relay_ml import col\n"
        "frame = relay.scan(sys.argv[1]).filter((col('year') == 2024) & (col('id') > 45))\n"
        "print(sorted(frame['id'].to_pylist()))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert done.stdout.strip() == str(list(range(46, 80)))
    assert done.stderr == ""
