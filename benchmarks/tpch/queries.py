"""TPC-H queries 1, 3, 5, 6, 9, 10, 12 and 18 written three ways: in relay_ml's API, in Polars'
lazy API, and as the specification's SQL (with its validation parameters) for DuckDB.

Each relay / Polars query takes a dict of the eight tables (frames that scan Arrow IPC files)
and returns a frame; `SQL[n]` reads tables of the same names. The three must agree: the test
`tests/test_tpch.py` checks relay against DuckDB at scale factor 0.01, and
`benchmarks/tpch/run.py` times all three at scale factor 1.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Any

import relay_ml as relay
from relay_ml import col, lit, when

TABLES = ["customer", "lineitem", "nation", "orders", "part", "partsupp", "region", "supplier"]


def _revenue() -> relay.Expr:
    return col("l_extendedprice") * (1 - col("l_discount"))


def q1(t: dict[str, relay.Frame]) -> relay.Frame:
    disc_price = _revenue()
    return (
        t["lineitem"]
        .filter(col("l_shipdate") <= date(1998, 9, 2))
        .group_by("l_returnflag", "l_linestatus")
        .agg(
            col("l_quantity").sum().alias("sum_qty"),
            col("l_extendedprice").sum().alias("sum_base_price"),
            disc_price.sum().alias("sum_disc_price"),
            (disc_price * (1 + col("l_tax"))).sum().alias("sum_charge"),
            col("l_quantity").mean().alias("avg_qty"),
            col("l_extendedprice").mean().alias("avg_price"),
            col("l_discount").mean().alias("avg_disc"),
            col("l_orderkey").len().alias("count_order"),
        )
        .sort("l_returnflag", "l_linestatus")
    )


def q3(t: dict[str, relay.Frame]) -> relay.Frame:
    customers = t["customer"].filter(col("c_mktsegment") == "BUILDING")
    orders = t["orders"].filter(col("o_orderdate") < date(1995, 3, 15))
    lines = t["lineitem"].filter(col("l_shipdate") > date(1995, 3, 15))
    return (
        customers.join(orders, left_on="c_custkey", right_on="o_custkey")
        .join(lines, left_on="o_orderkey", right_on="l_orderkey")
        .group_by(col("o_orderkey").alias("l_orderkey"), "o_orderdate", "o_shippriority")
        .agg(_revenue().sum().alias("revenue"))
        .select("l_orderkey", "revenue", "o_orderdate", "o_shippriority")
        .sort("revenue", "o_orderdate", descending=[True, False])
        .head(10)
    )


def q5(t: dict[str, relay.Frame]) -> relay.Frame:
    asia = t["region"].filter(col("r_name") == "ASIA")
    orders = t["orders"].filter(
        (col("o_orderdate") >= date(1994, 1, 1)) & (col("o_orderdate") < date(1995, 1, 1))
    )
    return (
        asia.join(t["nation"], left_on="r_regionkey", right_on="n_regionkey")
        .join(t["customer"], left_on="n_nationkey", right_on="c_nationkey")
        .join(orders, left_on="c_custkey", right_on="o_custkey")
        .join(t["lineitem"], left_on="o_orderkey", right_on="l_orderkey")
        .join(
            t["supplier"],
            left_on=["l_suppkey", "n_nationkey"],
            right_on=["s_suppkey", "s_nationkey"],
        )
        .group_by("n_name")
        .agg(_revenue().sum().alias("revenue"))
        .sort("revenue", descending=True)
    )


def q6(t: dict[str, relay.Frame]) -> relay.Frame:
    return (
        t["lineitem"]
        .filter(
            (col("l_shipdate") >= date(1994, 1, 1))
            & (col("l_shipdate") < date(1995, 1, 1))
            & col("l_discount").between(0.05, 0.07)
            & (col("l_quantity") < 24)
        )
        .agg((col("l_extendedprice") * col("l_discount")).sum().alias("revenue"))
    )


def q9(t: dict[str, relay.Frame]) -> relay.Frame:
    green = t["part"].filter(col("p_name").str.contains("green"))
    return (
        green.join(t["partsupp"], left_on="p_partkey", right_on="ps_partkey")
        .join(t["supplier"], left_on="ps_suppkey", right_on="s_suppkey")
        .join(
            t["lineitem"], left_on=["p_partkey", "ps_suppkey"], right_on=["l_partkey", "l_suppkey"]
        )
        .join(t["orders"], left_on="l_orderkey", right_on="o_orderkey")
        .join(t["nation"], left_on="s_nationkey", right_on="n_nationkey")
        .group_by(col("n_name").alias("nation"), col("o_orderdate").dt.year().alias("o_year"))
        .agg((_revenue() - col("ps_supplycost") * col("l_quantity")).sum().alias("sum_profit"))
        .sort("nation", "o_year", descending=[False, True])
    )


def q10(t: dict[str, relay.Frame]) -> relay.Frame:
    orders = t["orders"].filter(
        (col("o_orderdate") >= date(1993, 10, 1)) & (col("o_orderdate") < date(1994, 1, 1))
    )
    returned = t["lineitem"].filter(col("l_returnflag") == "R")
    return (
        orders.join(returned, left_on="o_orderkey", right_on="l_orderkey")
        .join(t["customer"], left_on="o_custkey", right_on="c_custkey")
        .join(t["nation"], left_on="c_nationkey", right_on="n_nationkey")
        .group_by(
            col("o_custkey").alias("c_custkey"),
            "c_name",
            "c_acctbal",
            "c_phone",
            "n_name",
            "c_address",
            "c_comment",
        )
        .agg(_revenue().sum().alias("revenue"))
        .select(
            "c_custkey",
            "c_name",
            "revenue",
            "c_acctbal",
            "n_name",
            "c_address",
            "c_phone",
            "c_comment",
        )
        .sort("revenue", descending=True)
        .head(20)
    )


def q12(t: dict[str, relay.Frame]) -> relay.Frame:
    lines = t["lineitem"].filter(
        col("l_shipmode").is_in(["MAIL", "SHIP"])
        & (col("l_commitdate") < col("l_receiptdate"))
        & (col("l_shipdate") < col("l_commitdate"))
        & (col("l_receiptdate") >= date(1994, 1, 1))
        & (col("l_receiptdate") < date(1995, 1, 1))
    )
    high = col("o_orderpriority").is_in(["1-URGENT", "2-HIGH"])
    return (
        t["orders"]
        .join(lines, left_on="o_orderkey", right_on="l_orderkey")
        .group_by("l_shipmode")
        .agg(
            when(high).then(lit(1)).otherwise(lit(0)).sum().alias("high_line_count"),
            when(high).then(lit(0)).otherwise(lit(1)).sum().alias("low_line_count"),
        )
        .sort("l_shipmode")
    )


def q18(t: dict[str, relay.Frame]) -> relay.Frame:
    large = (
        t["lineitem"]
        .group_by("l_orderkey")
        .agg(col("l_quantity").sum().alias("total"))
        .filter(col("total") > 300)
    )
    return (
        t["orders"]
        .join(large, left_on="o_orderkey", right_on="l_orderkey", how="semi")
        .join(t["customer"], left_on="o_custkey", right_on="c_custkey")
        .join(t["lineitem"], left_on="o_orderkey", right_on="l_orderkey")
        .group_by(
            "c_name",
            col("o_custkey").alias("c_custkey"),
            "o_orderkey",
            "o_orderdate",
            "o_totalprice",
        )
        .agg(col("l_quantity").sum().alias("sum_qty"))
        .sort("o_totalprice", "o_orderdate", descending=[True, False])
        .head(100)
    )


RELAY: dict[int, Callable[[dict[str, relay.Frame]], relay.Frame]] = {
    1: q1,
    3: q3,
    5: q5,
    6: q6,
    9: q9,
    10: q10,
    12: q12,
    18: q18,
}

# -- Polars (lazy), the same plans ------------------------------------------------------------


def polars_queries() -> dict[int, Callable[[dict[str, Any]], Any]]:
    import polars as pl

    c = pl.col
    revenue = c("l_extendedprice") * (1 - c("l_discount"))

    def p1(t):
        return (
            t["lineitem"]
            .filter(c("l_shipdate") <= date(1998, 9, 2))
            .group_by("l_returnflag", "l_linestatus")
            .agg(
                c("l_quantity").sum().alias("sum_qty"),
                c("l_extendedprice").sum().alias("sum_base_price"),
                revenue.sum().alias("sum_disc_price"),
                (revenue * (1 + c("l_tax"))).sum().alias("sum_charge"),
                c("l_quantity").mean().alias("avg_qty"),
                c("l_extendedprice").mean().alias("avg_price"),
                c("l_discount").mean().alias("avg_disc"),
                pl.len().alias("count_order"),
            )
            .sort("l_returnflag", "l_linestatus")
        )

    def p3(t):
        return (
            t["customer"]
            .filter(c("c_mktsegment") == "BUILDING")
            .join(
                t["orders"].filter(c("o_orderdate") < date(1995, 3, 15)),
                left_on="c_custkey",
                right_on="o_custkey",
            )
            .join(
                t["lineitem"].filter(c("l_shipdate") > date(1995, 3, 15)),
                left_on="o_orderkey",
                right_on="l_orderkey",
            )
            .group_by(c("o_orderkey").alias("l_orderkey"), "o_orderdate", "o_shippriority")
            .agg(revenue.sum().alias("revenue"))
            .select("l_orderkey", "revenue", "o_orderdate", "o_shippriority")
            .sort(["revenue", "o_orderdate"], descending=[True, False])
            .head(10)
        )

    def p5(t):
        return (
            t["region"]
            .filter(c("r_name") == "ASIA")
            .join(t["nation"], left_on="r_regionkey", right_on="n_regionkey")
            .join(t["customer"], left_on="n_nationkey", right_on="c_nationkey")
            .join(
                t["orders"].filter(
                    c("o_orderdate").is_between(date(1994, 1, 1), date(1995, 1, 1), closed="left")
                ),
                left_on="c_custkey",
                right_on="o_custkey",
            )
            .join(t["lineitem"], left_on="o_orderkey", right_on="l_orderkey")
            .join(
                t["supplier"],
                left_on=["l_suppkey", "n_nationkey"],
                right_on=["s_suppkey", "s_nationkey"],
            )
            .group_by("n_name")
            .agg(revenue.sum().alias("revenue"))
            .sort("revenue", descending=True)
        )

    def p6(t):
        return (
            t["lineitem"]
            .filter(
                c("l_shipdate").is_between(date(1994, 1, 1), date(1995, 1, 1), closed="left")
                & c("l_discount").is_between(0.05, 0.07)
                & (c("l_quantity") < 24)
            )
            .select((c("l_extendedprice") * c("l_discount")).sum().alias("revenue"))
        )

    def p9(t):
        return (
            t["part"]
            .filter(c("p_name").str.contains("green", literal=True))
            .join(t["partsupp"], left_on="p_partkey", right_on="ps_partkey")
            .join(t["supplier"], left_on="ps_suppkey", right_on="s_suppkey")
            .join(
                t["lineitem"],
                left_on=["p_partkey", "ps_suppkey"],
                right_on=["l_partkey", "l_suppkey"],
            )
            .join(t["orders"], left_on="l_orderkey", right_on="o_orderkey")
            .join(t["nation"], left_on="s_nationkey", right_on="n_nationkey")
            .group_by(c("n_name").alias("nation"), c("o_orderdate").dt.year().alias("o_year"))
            .agg((revenue - c("ps_supplycost") * c("l_quantity")).sum().alias("sum_profit"))
            .sort(["nation", "o_year"], descending=[False, True])
        )

    def p10(t):
        return (
            t["orders"]
            .filter(c("o_orderdate").is_between(date(1993, 10, 1), date(1994, 1, 1), closed="left"))
            .join(
                t["lineitem"].filter(c("l_returnflag") == "R"),
                left_on="o_orderkey",
                right_on="l_orderkey",
            )
            .join(t["customer"], left_on="o_custkey", right_on="c_custkey")
            .join(t["nation"], left_on="c_nationkey", right_on="n_nationkey")
            .group_by(
                c("o_custkey").alias("c_custkey"),
                "c_name",
                "c_acctbal",
                "c_phone",
                "n_name",
                "c_address",
                "c_comment",
            )
            .agg(revenue.sum().alias("revenue"))
            .select(
                "c_custkey",
                "c_name",
                "revenue",
                "c_acctbal",
                "n_name",
                "c_address",
                "c_phone",
                "c_comment",
            )
            .sort("revenue", descending=True)
            .head(20)
        )

    def p12(t):
        high = c("o_orderpriority").is_in(["1-URGENT", "2-HIGH"])
        return (
            t["orders"]
            .join(
                t["lineitem"].filter(
                    c("l_shipmode").is_in(["MAIL", "SHIP"])
                    & (c("l_commitdate") < c("l_receiptdate"))
                    & (c("l_shipdate") < c("l_commitdate"))
                    & c("l_receiptdate").is_between(
                        date(1994, 1, 1), date(1995, 1, 1), closed="left"
                    )
                ),
                left_on="o_orderkey",
                right_on="l_orderkey",
            )
            .group_by("l_shipmode")
            .agg(
                pl.when(high).then(1).otherwise(0).sum().alias("high_line_count"),
                pl.when(high).then(0).otherwise(1).sum().alias("low_line_count"),
            )
            .sort("l_shipmode")
        )

    def p18(t):
        large = (
            t["lineitem"]
            .group_by("l_orderkey")
            .agg(c("l_quantity").sum().alias("total"))
            .filter(c("total") > 300)
        )
        return (
            t["orders"]
            .join(large, left_on="o_orderkey", right_on="l_orderkey", how="semi")
            .join(t["customer"], left_on="o_custkey", right_on="c_custkey")
            .join(t["lineitem"], left_on="o_orderkey", right_on="l_orderkey")
            .group_by(
                "c_name",
                c("o_custkey").alias("c_custkey"),
                "o_orderkey",
                "o_orderdate",
                "o_totalprice",
            )
            .agg(c("l_quantity").sum().alias("sum_qty"))
            .sort(["o_totalprice", "o_orderdate"], descending=[True, False])
            .head(100)
        )

    return {1: p1, 3: p3, 5: p5, 6: p6, 9: p9, 10: p10, 12: p12, 18: p18}


# -- SQL (TPC-H specification, validation parameters) ----------------------------------------

SQL: dict[int, str] = {
    1: """
select l_returnflag, l_linestatus, sum(l_quantity) as sum_qty,
  sum(l_extendedprice) as sum_base_price,
  sum(l_extendedprice * (1 - l_discount)) as sum_disc_price,
  sum(l_extendedprice * (1 - l_discount) * (1 + l_tax)) as sum_charge,
  avg(l_quantity) as avg_qty, avg(l_extendedprice) as avg_price, avg(l_discount) as avg_disc,
  count(*) as count_order
from lineitem where l_shipdate <= date '1998-12-01' - interval '90' day
group by l_returnflag, l_linestatus order by l_returnflag, l_linestatus""",
    3: """
select l_orderkey, sum(l_extendedprice * (1 - l_discount)) as revenue, o_orderdate, o_shippriority
from customer, orders, lineitem
where c_mktsegment = 'BUILDING' and c_custkey = o_custkey and l_orderkey = o_orderkey
  and o_orderdate < date '1995-03-15' and l_shipdate > date '1995-03-15'
group by l_orderkey, o_orderdate, o_shippriority order by revenue desc, o_orderdate limit 10""",
    5: """
select n_name, sum(l_extendedprice * (1 - l_discount)) as revenue
from customer, orders, lineitem, supplier, nation, region
where c_custkey = o_custkey and l_orderkey = o_orderkey and l_suppkey = s_suppkey
  and c_nationkey = s_nationkey and s_nationkey = n_nationkey and n_regionkey = r_regionkey
  and r_name = 'ASIA' and o_orderdate >= date '1994-01-01' and o_orderdate < date '1995-01-01'
group by n_name order by revenue desc""",
    6: """
select sum(l_extendedprice * l_discount) as revenue from lineitem
where l_shipdate >= date '1994-01-01' and l_shipdate < date '1995-01-01'
  and l_discount between 0.05 and 0.07 and l_quantity < 24""",
    9: """
select nation, o_year, sum(amount) as sum_profit from (
  select n_name as nation, extract(year from o_orderdate) as o_year,
    l_extendedprice * (1 - l_discount) - ps_supplycost * l_quantity as amount
  from part, supplier, lineitem, partsupp, orders, nation
  where s_suppkey = l_suppkey and ps_suppkey = l_suppkey and ps_partkey = l_partkey
    and p_partkey = l_partkey and o_orderkey = l_orderkey and s_nationkey = n_nationkey
    and p_name like '%green%') as profit
group by nation, o_year order by nation, o_year desc""",
    10: """
select c_custkey, c_name, sum(l_extendedprice * (1 - l_discount)) as revenue, c_acctbal, n_name,
  c_address, c_phone, c_comment
from customer, orders, lineitem, nation
where c_custkey = o_custkey and l_orderkey = o_orderkey and o_orderdate >= date '1993-10-01'
  and o_orderdate < date '1994-01-01' and l_returnflag = 'R' and c_nationkey = n_nationkey
group by c_custkey, c_name, c_acctbal, c_phone, n_name, c_address, c_comment
order by revenue desc limit 20""",
    12: """
select l_shipmode,
  sum(case when o_orderpriority = '1-URGENT' or o_orderpriority = '2-HIGH' then 1 else 0 end)
    as high_line_count,
  sum(case when o_orderpriority <> '1-URGENT' and o_orderpriority <> '2-HIGH' then 1 else 0 end)
    as low_line_count
from orders, lineitem
where o_orderkey = l_orderkey and l_shipmode in ('MAIL', 'SHIP') and l_commitdate < l_receiptdate
  and l_shipdate < l_commitdate
  and l_receiptdate >= date '1994-01-01' and l_receiptdate < date '1995-01-01'
group by l_shipmode order by l_shipmode""",
    18: """
select c_name, c_custkey, o_orderkey, o_orderdate, o_totalprice, sum(l_quantity) as sum_qty
from customer, orders, lineitem
where o_orderkey in (
    select l_orderkey from lineitem group by l_orderkey having sum(l_quantity) > 300
  )
  and c_custkey = o_custkey and o_orderkey = l_orderkey
group by c_name, c_custkey, o_orderkey, o_orderdate, o_totalprice
order by o_totalprice desc, o_orderdate limit 100""",
}


#: The writers whose Arrow IPC files the benchmark and the tests read, as users have them.
WRITERS = ("relay", "pyarrow", "polars")


def convert_to_ipc(parquet_dir: str, ipc_dir: str, writer: str = "relay") -> None:
    """Writes each table's Parquet file as an uncompressed Arrow IPC file, with `writer`:

    - ``relay``: relay's writer (one record batch, 64-byte aligned), string views made plain
      strings, the type every engine here reads;
    - ``pyarrow``: ``pq.read_table`` then ``ipc.new_file(...).write_table`` as a pyarrow user
      would (``string_view`` columns, 8-byte alignment, a record batch per row group);
    - ``polars``: ``pl.read_parquet(...).write_ipc(...)`` (``string_view``, many batches).
    """
    import os

    import pyarrow as pa
    import pyarrow.parquet as pq

    os.makedirs(ipc_dir, exist_ok=True)
    for name in TABLES:
        source = os.path.join(parquet_dir, f"{name}.parquet")
        target = os.path.join(ipc_dir, f"{name}.arrow")
        if writer == "polars":
            import polars as pl

            pl.read_parquet(source).write_ipc(target, compression="uncompressed")
            continue
        table = pq.read_table(source)
        if writer == "pyarrow":
            with pa.ipc.new_file(target, table.schema) as out:
                out.write_table(table)
            continue
        if writer != "relay":
            raise ValueError(f"unknown writer {writer!r}; expected one of {WRITERS}")
        fields = [
            pa.field(f.name, pa.string(), nullable=f.nullable) if f.type == pa.string_view() else f
            for f in table.schema
        ]
        table = table.cast(pa.schema(fields))
        relay.write(relay.from_arrow(table), target)
