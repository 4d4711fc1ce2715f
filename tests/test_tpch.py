"""TPC-H queries 1, 3, 5, 6, 9, 10, 12 and 18 in relay's API give DuckDB's answers to the
specification's SQL, on scale factor 0.01 data from tpchgen-cli, scanned as Arrow IPC files."""

from __future__ import annotations

import decimal
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest

import relay_ml as relay

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks" / "tpch"))
import queries

duckdb = pytest.importorskip("duckdb")


@pytest.fixture(scope="module")
def tpch(tmp_path_factory):
    root = tmp_path_factory.mktemp("tpch")
    generator = shutil.which("tpchgen-cli") or str(Path(sys.executable).with_name("tpchgen-cli"))
    subprocess.run(
        [generator, "parquet", "-s", "0.01", f"--output-dir={root / 'parquet'}"], check=True
    )
    for writer in queries.WRITERS:
        queries.convert_to_ipc(str(root / "parquet"), str(root / f"ipc_{writer}"), writer)
    return root


def normalized(value):
    if isinstance(value, decimal.Decimal):
        return float(value)
    return value


def same(left, right) -> bool:
    left, right = normalized(left), normalized(right)
    if isinstance(left, float) or isinstance(right, float):
        return (
            left is not None
            and right is not None
            and math.isclose(left, right, rel_tol=1e-9, abs_tol=1e-6)
        )
    return left == right


@pytest.mark.parametrize("writer", queries.WRITERS)
@pytest.mark.parametrize("number", sorted(queries.RELAY))
def test_query_matches_duckdb(tpch, number, writer):
    """Every query, over the IPC files of each writer (pyarrow's and Polars' hold string views,
    8-byte-aligned decimals and many record batches), gives DuckDB's answer."""
    ipc = tpch / f"ipc_{writer}"
    tables = {name: relay.scan(ipc / f"{name}.arrow") for name in queries.TABLES}
    got = pa.table(queries.RELAY[number](tables)).to_pylist()
    connection = duckdb.connect()
    for name in queries.TABLES:
        connection.execute(
            f"create view {name} as select * from "
            f"read_parquet('{tpch / 'parquet' / f'{name}.parquet'}')"
        )
    want = connection.sql(queries.SQL[number]).to_arrow_table().to_pylist()
    assert len(got) == len(want), (len(got), len(want))
    if number != 18:  # at scale factor 0.01 no order has more than 300 items
        assert len(want) > 0
    for row, (mine, theirs) in enumerate(zip(got, want, strict=True)):
        assert list(mine) == list(theirs), (list(mine), list(theirs))
        for name in theirs:
            assert same(mine[name], theirs[name]), (row, name, mine[name], theirs[name])
