"""Limits instead of fictions: Parquet row counts the column chunks do not hold are refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from parquet_footer import field, read_footer, write_footer

import relay_ml as relay


def write_lists(path: Path, with_flat_column: bool) -> pa.Table:
    """2,000 rows in two row groups; three list entries per row, so that the list column's
    chunks hold 3,000 entries each."""
    columns = {"xs": pa.array([[i, i + 1, i + 2] for i in range(2_000)])}
    if with_flat_column:
        columns["id"] = pa.array(np.arange(2_000))
    table = pa.table(columns)
    pq.write_table(table, path, row_group_size=1_000)
    return table


@pytest.mark.parametrize(
    ("with_flat_column", "rows", "column"),
    [
        (True, 2**40, "xs.list.element"),  # more rows than the list column's entries
        (False, 3_001, "xs.list.element"),
        (True, 1_001, "id"),  # more rows than a flat column's values
        (True, 999, "id"),  # fewer rows than a flat column's values
    ],
)
def test_parquet_row_counts_the_column_chunks_do_not_hold_are_refused(
    tmp_path, with_flat_column, rows, column
):
    path = tmp_path / "rows.parquet"
    table = write_lists(path, with_flat_column)
    frame = relay.scan(path)
    assert len(frame) == 2_000
    assert frame["xs"].to_pylist() == table["xs"].to_pylist()
    del frame
    head, footer = read_footer(path)
    row_groups = field(footer, 4)[2][1]
    field(row_groups[1], 3)[2] = rows
    write_footer(path, head, footer)
    for open_it in (lambda: relay.scan(path), lambda: relay.scan(path, batch_size=100_000)):
        with pytest.raises(relay.CorruptFileError) as refused:
            open_it()
        message = str(refused.value)
        assert str(path) in message and "row group 1" in message, message
        assert f"{rows} rows" in message and f'column "{column}"' in message, message


def test_a_negative_parquet_row_count_is_refused(tmp_path):
    path = tmp_path / "negative.parquet"
    write_lists(path, with_flat_column=True)
    head, footer = read_footer(path)
    field(field(footer, 4)[2][1][0], 3)[2] = -5
    write_footer(path, head, footer)
    with pytest.raises(relay.CorruptFileError, match=r"row group 0.*negative row count -5"):
        relay.scan(path)
