"""Frame: columns of a memory-mapped Arrow file, and `scan` that opens one.

Frames over memory are made here too (:func:`memory_frame`, which ``relay_ml.interop`` builds
``from_arrow``, ``from_numpy`` and ``from_pandas`` on). A frame pickles as its logical plan,
serialized by the engine.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Literal, overload

import numpy as np

from relay_ml import _relay
from relay_ml._core import (
    check_batch_size,
    dtype_name,
    float_type_of,
    int_arg,
    numpy_dtype_of,
    optional_int,
    path_arg,
    slice_offset,
    value_text,
)
from relay_ml._optional import needs
from relay_ml._relay import NativeFrame
from relay_ml._sources import schema_pairs, source_arg
from relay_ml.column import Column
from relay_ml.errors import RelayError, RelayTypeError, RelayValueError, ZeroCopyError
from relay_ml.expr import AggExpr, Expr, col, to_expr

if TYPE_CHECKING:
    import pandas
    import pyarrow


@overload
def scan(
    source: str | os.PathLike[str] | list[str | os.PathLike[str]],
    batch_size: None = None,
    *,
    format: str | None = None,
    schema: Any = None,
    hive_partitioning: bool | None = None,
    **format_options: Any,
) -> Frame: ...
@overload
def scan(
    source: str | os.PathLike[str] | list[str | os.PathLike[str]],
    batch_size: int,
    *,
    format: str | None = None,
    schema: Any = None,
    hive_partitioning: bool | None = None,
    **format_options: Any,
) -> BatchIterator: ...
def scan(
    source: str | os.PathLike[str] | list[str | os.PathLike[str]],
    batch_size: int | None = None,
    *,
    format: str | None = None,
    schema: Any = None,
    hive_partitioning: bool | None = None,
    memory_map: bool = True,
    **format_options: Any,
) -> Frame | BatchIterator:
    """Open data files as a lazy :class:`Frame`: an Arrow IPC file (Feather v2) or IPC stream
    file, a Parquet, CSV or NDJSON file, or many files at once.

    ``source`` is a path, a list of paths, a glob (``"data/*.parquet"``, ``"data/**/*.csv"``
    with ``**`` matching folders recursively) or a directory (every data file under it, in
    sorted order; hidden files and ``_``-prefixed markers such as ``_SUCCESS`` are skipped).
    The format comes from each file's suffix (``.arrow .feather .ipc .arrows`` Arrow IPC;
    ``.parquet .pq``; ``.csv``; ``.json .ndjson .jsonl``), else from its first bytes, or from
    ``format=`` ("ipc", "parquet", "csv", "ndjson"). All files must have the same columns
    (names and types, in order); the error names the first file that differs and the column.

    **A single Arrow IPC file** is memory-mapped (private, copy-on-write) and only its footer
    and record batch headers are read, so opening costs the same for a kilobyte and for a
    hundred gigabytes. Columns are views of the file (LZ4 / ZSTD compressed batches are
    decompressed when read; ``explain()`` says so).

    **Parquet, CSV and NDJSON files, and several files**, are read piece by piece (a Parquet
    row group, a whole CSV / NDJSON file, an IPC record batch), in parallel, each filtered right
    after it is decoded. Opening reads only the first file's footer (or the rows CSV / NDJSON
    schema inference samples); other files are opened when read. Only the columns a query
    needs are decoded; row groups whose min / max statistics rule out a filter are skipped,
    and so are files whose partition values do (without opening them). Decoded columns are
    copies of the file's data: ``explain()`` says "decoded from Parquet". ``profile()``
    shows rows, bytes, pieces (``batches_read`` / ``batches_skipped``) and files read and
    skipped.

    Parquet files of older writers read as pyarrow reads them: lists in the two-level layouts
    of the format's backward-compatibility rules (Spark, Hive, parquet-mr) and column chunks
    whose dictionary page offset is 0. INT96 timestamps (Spark, Hive, Impala) read as
    ``timestamp[us]``, the unit Spark writes them in, which holds every date they carry: what
    pyarrow reads with ``coerce_int96_timestamp_unit="us"`` (at its default, nanoseconds, dates
    after 2262 wrap around); digits below a microsecond are dropped. A row group whose columns
    decode to other rows than its footer says raises ``CorruptFileError``.

    Directories are hive-partitioned by default (``hive_partitioning=None``: detected for a
    directory, off for lists and globs; ``True`` / ``False`` force it): folders named
    ``key=value`` (``year=2024/month=3/part-0.parquet``) add columns ``year`` and ``month``
    after the files' columns, int64 when every value is an integer, else string, and null
    for ``__HIVE_DEFAULT_PARTITION__`` (as pyarrow and Polars read them).

    ``memory_map=False`` reads Arrow IPC files into memory when they are opened instead of
    mapping them, for files on storage that can change under the process: columns are then
    views of that copy (still no copy per query or export), which no later truncation or
    in-place write of the file can reach, at the cost of the file's size in memory. A mapped
    file must be replaced by rename, never rewritten in place (README, "Reliability").

    ``schema`` (a ``pyarrow.Schema`` or a dict name -> dtype) replaces CSV / NDJSON type
    inference. CSV options: ``has_header`` (default True), ``separator`` (default ",").

    With ``batch_size``, returns the rows in batches instead: a :class:`BatchIterator` of
    frames of at most ``batch_size`` rows. Over an IPC file each batch is a view of the mapped
    file; over decoded files each batch decodes only the pieces it overlaps, so memory stays
    bounded by a few pieces however large the files are::

        for batch in relay.scan("data/*.parquet", batch_size=100_000):
            model.predict(batch.to_numpy())

    Raises:
        RelayFileNotFoundError: a path does not exist, or a glob matches nothing (also a
            ``FileNotFoundError``).
        NotArrowFileError / WrongFormatError: a file is not of the format it is read as, or a
            directory holds no data file.
        CorruptFileError: a footer, record batch, page or line cannot be decoded; the message
            names the file and the place.
        RelayTypeError: an argument of the wrong type, an unknown format option.
        RelayValueError: ``batch_size`` < 1, an unknown format, files whose columns differ.
    """
    unknown = set(format_options) - {"has_header", "separator"}
    if unknown:
        raise RelayTypeError(
            f"scan() got unknown options {sorted(unknown)}; format options are has_header and "
            "separator (CSV)"
        )
    if batch_size is not None:
        check_batch_size(batch_size)
    if format is not None and not isinstance(format, str):
        raise RelayTypeError(f"scan(): format must be a str, got {type(format).__name__}")
    if hive_partitioning is not None and not isinstance(hive_partitioning, bool):
        raise RelayTypeError(
            "scan(): hive_partitioning must be a bool or None, got "
            f"{type(hive_partitioning).__name__}"
        )
    has_header = format_options.get("has_header")
    separator = format_options.get("separator")
    if has_header is not None and not isinstance(has_header, bool):
        raise RelayTypeError(f"scan(): has_header must be a bool, got {type(has_header).__name__}")
    if separator is not None and not isinstance(separator, str):
        raise RelayTypeError(f"scan(): separator must be a str, got {type(separator).__name__}")
    if not isinstance(memory_map, bool):
        raise RelayTypeError(f"scan(): memory_map must be a bool, got {type(memory_map).__name__}")
    pairs = schema_pairs(schema)
    native = NativeFrame.open(
        source_arg(source), format, hive_partitioning, pairs, has_header, separator, memory_map
    )
    frame = Frame._wrap(native)
    return frame if batch_size is None else BatchIterator(frame, batch_size)


#: Codecs :meth:`Frame.write_parquet` takes.
PARQUET_CODECS = ("zstd", "lz4", "snappy", "uncompressed")


def _unpickle(kind: str, origin: str, plan: bytes) -> Frame:
    """The frame ``Frame.__reduce__`` pickled: its plan decoded by the engine, its files opened
    again and its in-memory data restored."""
    return Frame._wrap(NativeFrame._deserialize(kind, origin, plan))


class Frame:
    """Columns of a memory-mapped Arrow file over a range of its rows.

    A frame holds no data: ``select``, ``head``, ``slice``, ``filter``, ``take``, ``sample``
    and ``view`` return new frames that only narrow or reorder the columns or rows (a filter or
    take becomes a selection of row ids, not a copy), and ``frame["name"]`` returns a lazy
    :class:`Column`. Data is read when it is exported: ``to_numpy()``, ``to_arrow()``,
    ``to_dict()``, or through the Arrow PyCapsule interface (``pyarrow.table(frame)``,
    ``polars.DataFrame(frame)``). ``collect()`` runs the plan once and keeps the result in
    memory; ``iter_batches()`` streams it in frames of a fixed number of rows.
    """

    __slots__ = ("_native",)
    _native: NativeFrame

    def __init__(self) -> None:
        raise TypeError(
            "Frame objects are made by relay_ml.scan(path), or over memory by relay_ml.from_arrow, "
            "from_numpy or from_pandas"
        )

    @classmethod
    def _wrap(cls, native: NativeFrame) -> Frame:
        frame = object.__new__(cls)
        frame._native = native
        return frame

    # -- shape and schema ----------------------------------------------------------------
    @property
    def path(self) -> str | None:
        """The mapped file; None for a frame over memory (``from_arrow``, ``from_numpy``, ...)."""
        return self._native.path

    @property
    def origin(self) -> str:
        """Where the frame's data comes from: the mapped file's path, or the call that made an
        in-memory frame (``"from_numpy"``, ``"from_arrow(pyarrow.Table)"``, ...)."""
        return self._native.origin

    @property
    def schema(self) -> dict[str, str]:
        """Column names mapped to their Arrow types, in column order."""
        return dict(self._native.schema)

    @property
    def columns(self) -> list[str]:
        """Column names in order."""
        return self._native.columns

    @property
    def num_rows(self) -> int:
        """Number of rows: from the file's footer, or by running the filters when there are any."""
        return self._native.num_rows()

    @property
    def shape(self) -> tuple[int, int]:
        """``(rows, columns)``."""
        return (self.num_rows, len(self.columns))

    def __len__(self) -> int:
        return self.num_rows

    # -- narrowing and deriving ------------------------------------------------------------
    def select(self, *columns: Any) -> Frame:
        """The given columns, in order: names, :class:`Expr` (``col("x") * 2``), or Columns.
        Accepts one list or several arguments. No data is read."""
        exprs = _exprs_of(columns, "select")
        return Frame._wrap(self._native.select([e._native for e in exprs]))

    def filter(self, *predicates: Any) -> Frame:
        """Rows where every predicate is true (null counts as false). Lazy: the filter runs
        when the frame is exported, and yields a selection of rows, not a copy."""
        exprs = _exprs_of(predicates, "filter")
        if not exprs:
            raise RelayTypeError("filter() needs at least one predicate")
        predicate = exprs[0]
        for other in exprs[1:]:
            predicate = predicate & other
        return Frame._wrap(self._native.filter(predicate._native))

    def with_column(self, name: str, value: Any) -> Frame:
        """This frame with column ``name`` set to ``value``, replacing a column of that name in
        place (else added last).

        ``value`` is one of:

        - an :class:`Expr`, a scalar, or a Column of this frame: computed lazily, row by row;
        - data of the frame's length: a NumPy array (1-D, or 2-D for ``fixed_size_list`` rows),
          an Arrow array (anything with ``__arrow_c_array__`` or ``__arrow_c_stream__``, such as
          ``pyarrow.Array`` or a Polars Series), a Column of another frame, or a list.

        Data is **referenced, not copied** where its memory already has Arrow's layout: a
        C-contiguous, aligned, native-endian NumPy array of integers, floats, datetime64 or
        timedelta64 (in s, ms, us or ns), an Arrow array, a Column in one record batch. Its
        exports (``frame[name].to_numpy()``) are views of that same memory, and the frame keeps
        it alive. Writing into the NumPy array afterwards changes the column too. Other data
        (non-contiguous or big-endian arrays, booleans, strings, lists) is copied once, and
        ``explain()`` and ``frame[name].copy_reason`` say why. NaT becomes null.

        Data is row-aligned with the frame's rows; when the frame's rows are not those of its
        file (after a filter, take or computed column), the frame is collected first
        (:meth:`collect`).

        Raises:
            RelayValueError: the data's length differs from the frame's.
            RelayTypeError: the value is of none of the kinds above.
        """
        if not isinstance(name, str):
            raise RelayTypeError(
                f"with_column() takes a column name first, got {type(name).__name__}"
            )
        return self.with_columns(**{name: value})

    def with_columns(self, *exprs: Any, **named: Any) -> Frame:
        """Several :meth:`with_column` at once: expressions keep their output names, keyword
        arguments name theirs (and may be data, as in :meth:`with_column`)."""
        pairs = [(e.output_name, e) for e in _exprs_of(exprs, "with_columns")]
        arrays: list[tuple[str, Any]] = []
        for name, value in named.items():
            if _is_data(value) or (
                isinstance(value, Column) and not self._native._owns_column(value)
            ):
                arrays.append((name, value))
            else:
                pairs.append((name, to_expr(value)))
        frame = self._attach(tuple(arrays)) if arrays else self
        if not pairs:
            return frame
        return Frame._wrap(frame._native.with_columns([(n, e._native) for n, e in pairs]))

    def _attach(self, arrays: tuple[tuple[str, Any], ...]) -> Frame:
        converted = [(name, *attachable(name, value)) for name, value in arrays]
        return Frame._wrap(self._native.attach(converted))

    def drop(self, *names: str | list[str]) -> Frame:
        """This frame without the named columns."""
        flat = [n for group in names for n in ([group] if isinstance(group, str) else group)]
        for name in flat:
            if name not in self.columns:
                self[name]  # raises ColumnNotFoundError listing the columns
        return self.select([n for n in self.columns if n not in set(flat)])

    def rename(self, mapping: dict[str, str]) -> Frame:
        """Columns renamed by ``{old: new}``; data untouched."""
        if not isinstance(mapping, dict):
            raise RelayTypeError(
                f"rename() takes a dict {{old: new}}, got {type(mapping).__name__}"
            )
        for old in mapping:
            if old not in self.columns:
                self[old]
        return self.select(
            [col(n).alias(mapping.get(n, n)) if n in mapping else col(n) for n in self.columns]
        )

    def cast(self, dtypes: dict[str, Any]) -> Frame:
        """Columns converted by ``{name: dtype}`` (value conversion, strict as
        :meth:`Expr.cast`).

        A cast between integer types of one width (``int32`` to ``uint32``, ``uint64`` to
        ``int64``, ...) whose values all fit converts nothing: such values have the same bits
        in both types, so one pass checks them and the column keeps its buffer (a view of the
        mapped file stays one). Use :meth:`view` to read bits as another type regardless."""
        if not isinstance(dtypes, dict):
            raise RelayTypeError(
                f"cast() takes a dict {{name: dtype}}, got {type(dtypes).__name__}"
            )
        return self.with_columns(**{name: col(name).cast(dtype) for name, dtype in dtypes.items()})

    def view(self, dtypes: dict[str, Any]) -> Frame:
        """Columns whose bits are read as another type of the same width, by
        ``{name: dtype}``: ``int32`` / ``uint32`` / ``float32``, ``int64`` / ``uint64`` /
        ``float64`` / ``timestamp[us]`` / ``duration[ns]`` / ..., ``int16`` / ``float16``.
        For a ``fixed_size_list`` column the dtype is its items' (``{"emb": "uint32"}`` views a
        list of float32 as a list of uint32).

        Nothing is converted or copied (unlike :meth:`cast`): a column that was a view of the
        mapped file still is, now with the new dtype, as NumPy's ``ndarray.view`` does. Nulls
        stay nulls.

        Raises:
            RelayTypeError: the widths differ, or a type has no fixed-width bits (strings,
                booleans, dictionaries, ...); use :meth:`cast` to convert values.
            ColumnNotFoundError: a name is not a column of the frame.
        """
        if not isinstance(dtypes, dict):
            raise RelayTypeError(
                f"view() takes a dict {{name: dtype}}, got {type(dtypes).__name__}"
            )
        columns = [(name, dtype_name(dtype)) for name, dtype in dtypes.items()]
        return Frame._wrap(self._native.view(columns))

    def take(self, indices: Any) -> Frame:
        """The rows at ``indices`` (a list or a NumPy integer array), in that order; an index
        may repeat, and negative ones count from the end as in NumPy.

        Lazy, and a selection of row ids rather than a copy: rows are gathered once, when the
        frame is exported (``to_numpy()`` of a taken frame is one parallel gather).

        Raises:
            RelayValueError: an index is out of range (the message names it and the length).
            RelayTypeError: the indices are not integers (use :meth:`filter` for a mask).
        """
        positions = _index_array(indices)
        return Frame._wrap(self._native.take(positions))

    def sample(self, n: int, seed: int | None = None, replace: bool = False) -> Frame:
        """``n`` rows drawn uniformly at random, in ascending row order (a lazy take).

        Without ``replace`` the rows are distinct and every set of ``n`` rows is equally likely
        (Floyd's algorithm); with it, each row is an independent draw and may repeat. The
        generator is relay's own (SplitMix64), so a ``seed`` gives the same rows on every
        machine and version of NumPy; ``seed=None`` draws a fresh one (kept for pickling, so a
        pickled sample unpickles to the same rows).

        Raises:
            RelayValueError: ``n`` is larger than the frame without ``replace``, or negative;
                ``seed`` is outside ``0 .. 2**64 - 1``.
        """
        if not isinstance(n, (int, np.integer)) or isinstance(n, bool):
            raise RelayTypeError(f"sample() takes an int n, got {type(n).__name__}")
        if n < 0:
            raise RelayValueError(f"sample(): n must be >= 0, got {n}")
        if seed is None:
            seed = secrets.randbits(64)
        elif not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
            raise RelayTypeError(f"sample() takes an int seed or None, got {type(seed).__name__}")
        elif not 0 <= seed < 2**64:
            raise RelayValueError(f"sample(): seed must be in 0 .. 2**64 - 1, got {seed}")
        n, seed, replace = int(n), int(seed), bool(replace)
        return Frame._wrap(self._native.sample(n, seed, replace))

    def collect(self) -> Frame:
        """Runs the plan once and returns a frame over the result held in memory, so that later
        operations (slices, exports, batches) do not run filters or computations again.

        Rows picked by a filter, take or sample are gathered once into fresh arrays, and
        computed columns are kept as computed. Columns that are still views of the mapped file
        (a plain scan, a select, a slice) stay views: copying them would only duplicate the
        page cache. Exports of collected arrays copy them (their ``copy_reason`` says so).
        """
        return Frame._wrap(self._native.collect())

    def iter_batches(self, batch_size: int) -> BatchIterator:
        """The frame's rows in order as frames of ``batch_size`` rows (the last may be shorter).

        A frame without filters is never run as a whole: each batch is a slice of the plan, so
        batches of a scan are views of the mapped file and computed columns are computed one
        batch at a time. A filtered frame is run once, collected (:meth:`collect`), and sliced.
        """
        check_batch_size(batch_size)
        return BatchIterator(self, batch_size)

    # -- relational operators: their outputs are new rows, copies -------------------------
    def sort(
        self,
        by: Any,
        *more_by: Any,
        descending: bool | list[bool] = False,
        nulls_last: bool | list[bool] = False,
    ) -> Frame:
        """The rows ordered by ``by``: column names or expressions, the first key first; rows
        with equal keys keep their order (a stable sort). ``descending`` and ``nulls_last``
        are one bool for every key or a list with one per key; nulls come first unless
        ``nulls_last``, whatever the direction (as in Polars). Floats are in total order:
        ``-0.0`` before ``0.0``, NaN after every number.

        The result selects the input's rows in the new order: columns are gathered when
        exported, each once, so ``sort(...).select(...)`` reads only the selected columns.
        ``sort(...).head(k)`` finds the first k rows without sorting the others.
        """
        return self._sorted(_sort_keys(by, more_by, descending, nulls_last, "sort"), None)

    def top_k(
        self,
        k: int,
        by: Any,
        *more_by: Any,
        descending: bool | list[bool] = False,
        nulls_last: bool | list[bool] = False,
    ) -> Frame:
        """The first ``k`` rows of ``sort(by, descending=..., nulls_last=...)``, found by a
        partial selection instead of a full sort."""
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0:
            raise RelayValueError(f"top_k(): k must be a non-negative int, got {k!r}")
        return self._sorted(_sort_keys(by, more_by, descending, nulls_last, "top_k"), int(k))

    def _sorted(self, keys: list[tuple[Expr, bool, bool]], k: int | None) -> Frame:
        return Frame._wrap(self._native.sort([(e._native, d, n) for e, d, n in keys], k))

    def unique(self, subset: str | list[str] | None = None, keep: str = "first") -> Frame:
        """One row per distinct value of the ``subset`` columns (all columns when None), in
        input order. ``keep``: ``"first"`` (or ``"any"``) or ``"last"`` row of each set of
        equal rows, or ``"none"``: only rows whose value appears once. Nulls equal each
        other. The kept rows are gathered when exported."""
        if isinstance(subset, str):
            subset = [subset]
        elif subset is not None:
            subset = list(subset)
            if not all(isinstance(name, str) for name in subset):
                raise RelayTypeError("unique(): subset takes column names")
        if not isinstance(keep, str):
            raise RelayTypeError(f"unique(): keep must be a str, got {type(keep).__name__}")
        return Frame._wrap(self._native.unique(subset, keep))

    def distinct(self, subset: str | list[str] | None = None, keep: str = "first") -> Frame:
        """The same as :meth:`unique`."""
        return self.unique(subset, keep)

    def group_by(self, *keys: Any) -> GroupBy:
        """Groups of rows with equal ``keys`` (names or expressions, one list or several
        arguments), to aggregate with :meth:`GroupBy.agg`."""
        exprs = _exprs_of(keys, "group_by")
        if not exprs:
            raise RelayValueError("group_by() needs at least one key")
        return GroupBy(self, exprs)

    def agg(self, *aggs: AggExpr | list[AggExpr]) -> Frame:
        """Aggregations over every row, as a frame of one row (also for an empty frame: sums
        and counts are 0, the others null), like Polars' ``df.select(pl.col("x").sum())``:
        ``frame.agg(col("x").sum(), col("y").mean().alias("m"))``."""
        return GroupBy(self, []).agg(*aggs)

    def _aggregate(self, keys: tuple[Expr, ...], aggs: tuple[AggExpr, ...]) -> Frame:
        return Frame._wrap(
            self._native.aggregate([e._native for e in keys], [a._parts() for a in aggs])
        )

    def join(
        self,
        other: Frame,
        on: Any = None,
        *,
        left_on: Any = None,
        right_on: Any = None,
        how: str = "inner",
        suffix: str = "_right",
    ) -> Frame:
        """This frame's rows joined with ``other``'s where the keys are equal, like Polars'
        ``DataFrame.join`` (with ``nulls_equal=False``: a null key matches nothing).

        ``on`` names the keys of both frames; or ``left_on`` / ``right_on`` give each side's,
        compared pairwise. Each is a column name, an expression, or a list of them. Integer
        keys of different widths join (compared as int64, or uint64 when both are unsigned),
        as do float32 with float64 and any two string types (utf8, large_utf8, utf8_view,
        dictionaries of strings); other keys must have the same type, else ``RelayTypeError``
        names both keys and their types.

        ``how``: ``"inner"`` (pairs with equal keys), ``"left"`` / ``"right"`` (also the rows
        of that side without a match, with nulls on the other side), ``"full"`` (both sides'
        unmatched rows), ``"semi"`` / ``"anti"`` (the left rows with / without a match, left
        columns only). Output columns are Polars': for inner and left joins on plain columns
        the right key columns are left out (the left ones are kept); for right joins the left
        key columns; full joins keep both; a right column whose name the left side has gets
        ``suffix``.

        Row order: inner, left, semi and anti joins keep the left order (the matches of a left
        row in right order); right joins the right order (the matches of a right row in left
        order); a full join gives the left rows in order, each with its matches, then the
        unmatched right rows: Polars' ``maintain_order="left_right"`` (``"right_left"`` for
        right joins). The hash table is built on the smaller side for inner joins, on the right
        side for the others (the left side for right joins).

        Semi and anti joins select left rows (gathered when exported); the other joins gather
        the columns they output into new memory, once: ``join(...).select(...)`` gathers only
        the selected columns, and each side reads only its output columns and keys.
        """
        if not isinstance(other, Frame):
            raise RelayTypeError(
                f"join() takes a relay_ml Frame to join with, got {type(other).__name__}"
            )
        if not isinstance(how, str) or how not in _JOIN_TYPES:
            raise RelayValueError(
                f"join(): how must be one of {', '.join(repr(h) for h in _JOIN_TYPES)}, got {how!r}"
            )
        if not isinstance(suffix, str):
            raise RelayTypeError(f"join(): suffix must be a str, got {type(suffix).__name__}")
        if on is not None:
            if left_on is not None or right_on is not None:
                raise RelayValueError("join(): pass either on, or left_on and right_on, not both")
            left_keys = right_keys = _join_keys(on, "on")
        elif left_on is None or right_on is None:
            missing = "left_on" if left_on is None else "right_on"
            raise RelayValueError(
                f"join(): pass on, or both left_on and right_on ({missing} is missing)"
            )
        else:
            left_keys, right_keys = _join_keys(left_on, "left_on"), _join_keys(right_on, "right_on")
            if len(left_keys) != len(right_keys):
                raise RelayValueError(
                    f"join(): left_on has {len(left_keys)} keys and right_on has "
                    f"{len(right_keys)}; they are compared pairwise"
                )
        return self._join(other, tuple(left_keys), tuple(right_keys), how, suffix)

    def _join(
        self,
        other: Frame,
        left_on: tuple[Expr, ...],
        right_on: tuple[Expr, ...],
        how: str,
        suffix: str,
    ) -> Frame:
        native = self._native.join(
            other._native, [e._native for e in left_on], [e._native for e in right_on], how, suffix
        )
        return Frame._wrap(native)

    def head(self, n: int = 5) -> Frame:
        """The first ``n`` rows; for a negative ``n``, all rows but the last ``-n``."""
        n = int_arg("n", n)
        return self.slice(0, n if n >= 0 else max(len(self) + n, 0))

    def tail(self, n: int = 5) -> Frame:
        """The last ``n`` rows; for a negative ``n``, all rows but the first ``-n``."""
        n = int_arg("n", n)
        return self.slice(-n if n != 0 else len(self))

    def slice(self, offset: int, length: int | None = None) -> Frame:
        """Rows ``offset .. offset + length``, clamped to the frame like Python slicing; a
        negative ``offset`` counts from the end (which needs the frame's length: for a
        filtered frame, that runs the filter)."""
        offset = slice_offset(offset, length, lambda: len(self))
        return Frame._wrap(self._native.slice(offset, None if length is None else int(length)))

    @overload
    def __getitem__(self, key: str) -> Column: ...
    @overload
    def __getitem__(self, key: list[str] | tuple[str, ...] | Expr | Column) -> Frame: ...
    def __getitem__(self, key: str | list[str] | tuple[str, ...] | Expr | Column) -> Column | Frame:
        if isinstance(key, str):
            return Column(self._native.column(key))
        if isinstance(key, (list, tuple)):
            return self.select(list(key))
        if isinstance(key, (Expr, Column)):
            return self.filter(key)
        raise RelayTypeError(
            f"frame[...] takes a column name or a list of names, got {type(key).__name__}"
        )

    # -- plans -----------------------------------------------------------------------------
    def explain(self) -> str:
        """The logical plan, the optimized plan, and for each output column whether exporting
        it is a view of the mapped file (or of the caller's memory) or a copy, and why.
        Decided from the plan and the file's metadata without running the plan; a column's
        :attr:`~relay_ml.Column.copy_reason` and exports with ``zero_copy=True`` give the
        same answer."""
        return self._native.explain()

    def profile(self) -> list[dict[str, Any]]:
        """Runs the frame and returns per-operator statistics: rows in and out, bytes read and
        copied, wall seconds (each operator's time includes its inputs'), for scans the record
        batches read and skipped by min/max pruning, and for reads of decoded or several files
        the pieces (row groups, record batches, files) read and skipped and the files read and
        skipped (``files_skipped``: ruled out by their partition values, and then never
        opened, or by their pieces' statistics)."""
        keys = (
            "operator",
            "rows_in",
            "rows_out",
            "bytes_read",
            "bytes_copied",
            "seconds",
            "batches_read",
            "batches_skipped",
            "files_read",
            "files_skipped",
        )
        return [dict(zip(keys, row, strict=True)) for row in self._native._profile()]

    def __iter__(self) -> Any:
        raise TypeError(
            "iterate over frame.columns, frame[name] for a column, or frame.iter_batches(n) for "
            "rows"
        )

    def __contains__(self, name: object) -> bool:
        return name in self.columns

    # -- exports ---------------------------------------------------------------------------
    def to_numpy(self, order: Literal["C", "F"] = "C") -> np.ndarray:
        """All columns as one 2-D array of shape ``(rows, columns)``, in ``order`` "C"
        (row-major) or "F" (column-major).

        When every column has a fixed-width numeric form (see :meth:`Column.to_numpy`) the
        result has their common NumPy dtype; columns of one dtype without nulls are gathered
        in one parallel pass straight into it. A frame with a column of strings (or of other
        values without a numeric form: decimals, variable-length lists, structs) gives an
        ``object`` array of Python values, as Polars' and pandas' ``to_numpy()`` do for
        mixed types. This always copies: a frame's columns are not interleaved in the file.
        For one column without a copy use ``frame[name].to_numpy()``.

        Raises:
            RelayTypeError: a column holds a fixed-size list per row (such as an embedding),
                which has no single cell in a 2-D array; select the other columns first.
        """
        if order not in ("C", "F"):
            raise RelayValueError(f'order must be "C" or "F", got {order!r}')
        if self.columns:
            matrix = self._native._matrix(order)
            if matrix is not None:
                return matrix if matrix.ndim == 2 else matrix.reshape(-1, 1)
        columns = [self[name].to_numpy() for name in self.columns]
        for name, column in zip(self.columns, columns, strict=True):
            if column.ndim != 1:
                raise RelayTypeError(
                    f"column {name!r} of {self.origin} has type {self.schema[name]}, whose rows "
                    f"have no single cell in a 2-D array; select the other columns first"
                )
        objects = any(column.dtype == object for column in columns)
        if objects:
            dtype = np.dtype(object)
        elif columns:
            dtype = np.result_type(*columns)
        else:
            dtype = np.dtype(np.float64)
        rows = len(columns[0]) if columns else self.num_rows
        out = np.empty((rows, len(columns)), dtype=dtype, order=order)
        for j, column in enumerate(columns):
            out[:, j] = column  # into an object array, numbers become Python ints and floats
        return out

    def to_arrow(self) -> pyarrow.Table:
        """The frame as a ``pyarrow.Table`` whose buffers are the mapped file's."""
        with needs("Frame.to_arrow"):
            import pyarrow as pa

        return pa.table(self)

    def write_ipc(
        self,
        path: str | os.PathLike[str],
        batch_size: int | None = None,
        compression: str | None = None,
    ) -> dict[str, int]:
        """Writes the frame to ``path`` as an Arrow IPC file (Feather v2) that relay, NumPy,
        torch and JAX map without copying: every buffer is 64-byte aligned (pyarrow's 8 makes
        JAX copy), and by default all rows go into one record batch, so each column is one view.

        ``batch_size`` splits the rows into record batches of that many rows instead.
        ``compression`` ("lz4" or "zstd") is not available: compressed buffers always decode
        to the heap, and relay writes files to be mapped; passing it raises.

        The file is written under a temporary name in the same folder, synced and renamed over
        ``path``: a reader of the old file keeps it, and a crash never leaves a partial file.
        Returns a dict with the ``rows``, ``batches`` and ``bytes`` written.
        """
        target = path_arg(path, "write_ipc")
        if batch_size is not None and (
            isinstance(batch_size, bool) or not isinstance(batch_size, int)
        ):
            raise RelayTypeError(
                f"batch_size must be an int or None, got {type(batch_size).__name__}"
            )
        if batch_size is not None and batch_size < 1:
            raise RelayValueError(f"batch_size must be at least 1, got {batch_size}")
        if compression is not None and compression not in ("lz4", "zstd"):
            raise RelayValueError(f"compression must be None, 'lz4' or 'zstd', got {compression!r}")
        return dict(_relay.write_ipc(self._native, target, batch_size, compression))

    def write_parquet(
        self,
        path: str | os.PathLike[str],
        compression: str = "zstd",
        row_group_size: int | None = None,
        compression_level: int | None = None,
    ) -> dict[str, int]:
        """Writes the frame to ``path`` as a Parquet file, readable by pyarrow, Polars, DuckDB
        and Spark, and by :func:`relay_ml.scan`.

        ``compression`` is "zstd" (the default), "lz4" (Parquet's LZ4_RAW), "snappy" or
        "uncompressed"; ``compression_level`` sets zstd's level (1 to 22, default 3).
        ``row_group_size`` is the number of rows per row group (default 1,048,576); readers
        decode and skip row groups as units, using the min / max statistics written for each.
        The Arrow schema is stored in the file, so dictionary columns, time zones and list
        types read back as they were written.

        The file is written under a temporary name in the same folder, synced and renamed over
        ``path``: a reader of the old file keeps it, and a failed write leaves ``path`` as it
        was. Returns a dict with the ``rows``, the row groups (``batches``) and the ``bytes``
        written.

        Raises:
            RelayValueError: an unknown codec, a level for a codec other than zstd or out of
                range, a ``row_group_size`` below 1, or a column type Parquet cannot hold.
            RelayTypeError: an option of the wrong type.
        """
        target = path_arg(path, "write_parquet")
        if not isinstance(compression, str):
            raise RelayTypeError(f"compression must be a str, got {type(compression).__name__}")
        if compression not in PARQUET_CODECS:
            raise RelayValueError(
                f"compression must be one of {', '.join(repr(c) for c in PARQUET_CODECS)}, got "
                f"{compression!r}"
            )
        optional_int(row_group_size, "row_group_size")
        optional_int(compression_level, "compression_level")
        if row_group_size is not None and row_group_size < 1:
            raise RelayValueError(f"row_group_size must be at least 1, got {row_group_size}")
        if compression_level is not None and compression != "zstd":
            raise RelayValueError(
                f"compression_level is for zstd only; {compression!r} takes no level"
            )
        if compression_level is not None and not 1 <= compression_level <= 22:
            raise RelayValueError(
                f"compression_level must be from 1 to 22 for zstd, got {compression_level}"
            )
        return dict(
            _relay.write_parquet(
                self._native, target, compression, row_group_size, compression_level
            )
        )

    def to_dict(self, as_series: bool = True) -> dict[str, Any]:
        """Column name to :class:`Column` (``as_series=True``) or to a list of Python values."""
        if as_series:
            return {name: self[name] for name in self.columns}
        return {name: self[name].to_pylist() for name in self.columns}

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        """The frame as one 2-D array: what ``np.asarray(frame)`` and scikit-learn's input
        validation call. Always a fresh array, in column-major order ("F", as pandas'
        ``to_numpy()`` of a numeric frame): each column is then one contiguous run, so the
        gather writes sequentially (several times faster than interleaving rows). Use
        :meth:`to_numpy` for row-major."""
        if copy is False:
            raise ValueError(
                f"a frame of {self.origin} becomes a 2-D array only by copying its columns"
            )
        array = self.to_numpy(order="F")
        return array if dtype is None or np.dtype(dtype) == array.dtype else array.astype(dtype)

    @property
    def dtype(self) -> np.dtype:
        """The dtype :meth:`to_numpy` gives for columns without nulls, read from the schema
        (``object`` when a column has no numeric form). NumPy-style consumers read it:
        scikit-learn keeps a frame of float32 columns in float32 instead of converting the
        gathered array to float64."""
        dtypes = [numpy_dtype_of(t) for t in self.schema.values()]
        return np.result_type(*dtypes) if dtypes else np.dtype(np.float64)

    def to_pandas(self, zero_copy: bool | None = None) -> pandas.DataFrame:
        """The frame as a pandas DataFrame.

        A numeric, datetime or duration column without nulls that exports as a NumPy view
        (:attr:`Column.is_zero_copy`) becomes a pandas column over the **same memory**, not a
        copy (read-only, as pandas' copy-on-write expects). Other columns are converted through
        pyarrow as ``pyarrow.Table.to_pandas`` does (integers with nulls become float64 with
        NaN, strings become pandas strings). The columns that were copied, with the reason,
        are in ``df.attrs["relay_ml.copied"]`` (``{name: reason}``).

        Args:
            zero_copy: ``True`` to raise :class:`~relay_ml.ZeroCopyError` naming every column
                that would be copied, instead of copying.
        """
        with needs("Frame.to_pandas"):
            import pandas as pd

        views: dict[str, Any] = {}
        copied: dict[str, str] = {}
        for name in self.columns:
            column = self[name]
            reason = column.copy_reason
            if reason is None:
                array = column.to_numpy()
                if array.ndim == 1 and array.dtype.kind in "biufmM":
                    views[name] = array
                    continue
                reason = f"type {column.dtype} has no pandas column over the same memory"
            copied[name] = reason
        if zero_copy and copied:
            listed = "; ".join(f"{name!r}: {reason}" for name, reason in copied.items())
            raise ZeroCopyError(f"to_pandas() of {self.origin} must copy some columns: {listed}")
        converted: dict[str, Any] = {}
        if copied:
            converted = _pandas_columns_by_arrow(self, list(copied))
        data = {name: views[name] if name in views else converted[name] for name in self.columns}
        # copy=False keeps each NumPy array as its own block: no consolidation into a copy.
        df = (
            pd.DataFrame(data, columns=self.columns, copy=False)
            if data
            else pd.DataFrame(index=range(self.num_rows))
        )
        df.attrs["relay_ml.copied"] = copied
        return df

    def __narwhals_dataframe__(self) -> Any:
        """The frame for narwhals (and so scikit-learn's feature names and column selection):
        a narwhals-compliant view whose native object is this frame."""
        with needs("Frame.__narwhals_dataframe__"):
            from relay_ml._narwhals import RelayNarwhalsFrame

        return RelayNarwhalsFrame(self)

    def __arrow_c_schema__(self) -> object:
        return self._native.__arrow_c_schema__()

    def __arrow_c_stream__(self, requested_schema: object | None = None) -> object:
        return self._native.__arrow_c_stream__(requested_schema)

    # -- pickling: a frame travels as its plan, serialized by the engine: files as what opens
    # them again (paths, formats, options), data in memory as Arrow IPC ------------------------
    def __reduce__(self) -> tuple[Any, ...]:
        return (_unpickle, self._native._serialize())

    # -- display ---------------------------------------------------------------------------
    def __repr__(self) -> str:
        return _format_table(self)


class BatchIterator:
    """A frame's rows as frames of at most ``batch_size`` rows, in order: made by
    ``relay_ml.scan(path, batch_size=N)`` and :meth:`Frame.iter_batches`.

    Iterable (again and again) and sized: ``len()`` is the number of batches. A frame with a
    filter is run once, on the first ``len()`` or iteration, and its result kept in memory for
    the iterator's lifetime; other frames are sliced lazily, so batches of a scan are views of
    the mapped file.
    """

    __slots__ = ("_batch_size", "_frame", "_rows")
    _frame: Frame
    _batch_size: int
    _rows: Frame | None  # the frame batches are sliced from, once known

    def __init__(self, frame: Frame, batch_size: int) -> None:
        check_batch_size(batch_size)
        self._frame = frame
        self._batch_size = int(batch_size)
        self._rows = None

    @property
    def frame(self) -> Frame:
        """The frame being batched."""
        return self._frame

    @property
    def batch_size(self) -> int:
        """Rows per batch (the last batch may have fewer)."""
        return self._batch_size

    def _source(self) -> Frame:
        if self._rows is None:
            frame = self._frame
            self._rows = frame.collect() if frame._native._slices_rerun() else frame
        return self._rows

    def __len__(self) -> int:
        return -(-self._source().num_rows // self._batch_size)

    def __iter__(self) -> Iterator[Frame]:
        source = self._source()
        rows = source.num_rows
        for start in range(0, rows, self._batch_size):
            yield source.slice(start, self._batch_size)

    def __repr__(self) -> str:
        return f"BatchIterator(batch_size={self._batch_size}, frame={self._frame.origin!r})"


def _pandas_columns_by_arrow(frame: Frame, names: list[str]) -> dict[str, Any]:
    """The named columns as pandas Series, converted as pyarrow converts them (or from NumPy
    when pyarrow is not installed)."""
    try:
        import pyarrow as pa
    except ImportError:
        import pandas as pd

        return {name: pd.Series(frame[name].to_numpy(), name=name) for name in names}
    table = pa.table(frame.select(names))
    df = table.to_pandas()
    return {name: df[name] for name in names}


def _index_array(indices: Any) -> np.ndarray:
    """Row indices as a contiguous int64 array (negative ones stay negative)."""
    if isinstance(indices, (Expr, Column)):
        raise RelayTypeError("take() takes integer row indices; use filter() for a condition")
    if isinstance(indices, (int, np.integer)) or (
        not hasattr(indices, "__len__") and not hasattr(indices, "__array__")
    ):
        raise RelayTypeError(
            f"take() takes a list or array of integer row indices, got {type(indices).__name__}"
        )
    array = np.asarray(indices)
    if array.size == 0:
        return np.zeros(0, dtype=np.int64)
    if array.ndim != 1:
        raise RelayValueError(
            f"take() takes a 1-D list of row indices, got an array of shape {array.shape}"
        )
    if array.dtype.kind == "b":
        raise RelayTypeError(
            "take() takes integer row indices, not a boolean mask; use filter() for a condition"
        )
    if array.dtype.kind not in "iu":
        raise RelayTypeError(f"take() takes integer row indices, got dtype {array.dtype}")
    if array.dtype.kind == "u" and array.dtype.itemsize == 8:
        too_large = array > np.iinfo(np.int64).max
        if too_large.any():
            first = int(array[np.argmax(too_large)])
            raise RelayValueError(f"take(): index {first} is out of range")
    return np.ascontiguousarray(array, dtype=np.int64)


def _is_data(value: Any) -> bool:
    """Whether a with_column value is data (an array) rather than an expression or scalar."""
    if isinstance(value, (Expr, Column, Frame, str, bytes)):
        return False
    return (
        isinstance(value, (np.ndarray, list, tuple))
        or hasattr(value, "__arrow_c_array__")
        or hasattr(value, "__arrow_c_stream__")
    )


def attachable(name: str, value: Any) -> tuple[Any, str | None]:
    """A with_column value as what the engine attaches (a NumPy array, an object with
    ``__arrow_c_array__``, or a Column), and why it was copied on the way, if it was."""
    if isinstance(value, Column):
        return value, None
    if isinstance(value, Frame):
        raise RelayTypeError(f"with_column({name!r}) takes one column, got a Frame")
    note = None
    if isinstance(value, (list, tuple)):
        value = np.asarray(value)
        note = "a Python list was converted into an array"
    if isinstance(value, np.ndarray) and value.dtype.kind in "OUSV":
        import pyarrow as pa

        try:
            value = pa.array(value.tolist() if value.dtype.kind == "O" else value)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as error:
            raise RelayTypeError(
                f"with_column({name!r}): cannot convert the array to Arrow: {error}"
            ) from None
        return (
            value,
            note or f"NumPy {value.type} values have no Arrow layout: converted with pyarrow",
        )
    if not isinstance(value, np.ndarray) and not hasattr(value, "__arrow_c_array__"):
        # An Arrow stream (a pyarrow ChunkedArray, a Polars Series): one array of its chunks.
        import pyarrow as pa

        chunked = pa.chunked_array(value)
        if chunked.num_chunks > 1:
            note = (
                note or f"the data came in {chunked.num_chunks} chunks, concatenated into one array"
            )
        value = chunked.combine_chunks() if chunked.num_chunks != 1 else chunked.chunk(0)
    return value, note


class GroupBy:
    """Rows of a frame grouped by keys: made by :meth:`Frame.group_by`."""

    __slots__ = ("_frame", "_keys")
    _frame: Frame
    _keys: tuple[Expr, ...]

    def __init__(self, frame: Frame, keys: list[Expr]) -> None:
        self._frame = frame
        self._keys = tuple(keys)

    def agg(self, *aggs: AggExpr | list[AggExpr]) -> Frame:
        """One row per group, in order of each group's first row: the keys, then one column per
        aggregation (``col("x").sum()``, ``col("x").mean().alias("m")``, ...). Aggregations
        are ``sum, mean, min, max, std, var, median, quantile, count, len, n_unique, first,
        last``; the result is computed into new memory. Sums, means, std, var, medians and
        quantiles of non-numeric columns raise RelayTypeError."""
        if len(aggs) == 1 and isinstance(aggs[0], (list, tuple)):
            aggs = tuple(aggs[0])
        for agg in aggs:
            if not isinstance(agg, AggExpr):
                raise RelayTypeError(
                    f'agg() takes aggregations such as col("x").sum(), got {type(agg).__name__}'
                )
        return self._frame._aggregate(self._keys, tuple(aggs))  # type: ignore[arg-type]


def _sort_keys(
    by: Any,
    more_by: tuple[Any, ...],
    descending: bool | list[bool],
    nulls_last: bool | list[bool],
    method: str,
) -> list[tuple[Expr, bool, bool]]:
    exprs = _exprs_of((by, *more_by) if more_by else (by,), method)

    def per_key(value: bool | list[bool], name: str) -> list[bool]:
        if isinstance(value, (list, tuple)):
            if len(value) != len(exprs):
                raise RelayValueError(
                    f"{method}(): {name} has {len(value)} values for {len(exprs)} sort keys"
                )
            return [bool(v) for v in value]
        return [bool(value)] * len(exprs)

    descending_per_key = per_key(descending, "descending")
    nulls_last_per_key = per_key(nulls_last, "nulls_last")
    return list(zip(exprs, descending_per_key, nulls_last_per_key, strict=True))


def concat(frames: Any) -> Frame:
    """The rows of ``frames``, one frame after the other, as a frame in memory. Every frame
    must have the same column names and types in the same order (a RelayTypeError names the
    first column that differs). Each frame is run once; columns that are views of a mapped file
    stay views, filtered or computed ones are gathered into memory."""
    frames = list(frames)
    if not frames:
        raise RelayValueError("concat() needs at least one frame")
    for frame in frames:
        if not isinstance(frame, Frame):
            raise RelayTypeError(f"concat() takes relay_ml Frames, got {type(frame).__name__}")
    return Frame._wrap(NativeFrame.concat([frame._native for frame in frames]))


def memory_frame(columns: list[tuple[str, Any, str | None]], num_rows: int, origin: str) -> Frame:
    """A frame of ``num_rows`` rows over ``columns`` ``[(name, data, why the caller copied it)]``,
    where data is anything :meth:`Frame.with_column` attaches (a NumPy array, an object with
    ``__arrow_c_array__``)."""
    names = [name for name, _, _ in columns]
    if len(set(names)) != len(names):
        repeated = sorted({n for n in names if names.count(n) > 1})
        raise RelayValueError(
            f"{origin}: column names must be unique, got {repeated} more than once"
        )
    for name, data, _ in columns:
        if len(data) != num_rows:
            raise RelayValueError(
                f"{origin}: column {name!r} has {len(data)} rows, the others {num_rows}; columns "
                "must be of one length"
            )
    native = NativeFrame.memory(num_rows, origin)
    if columns:
        native = native.attach(columns)
    return Frame._wrap(native)


#: The values of ``Frame.join(how=...)``.
_JOIN_TYPES = ("inner", "left", "right", "full", "semi", "anti")


def _join_keys(keys: Any, argument: str) -> list[Expr]:
    """The keys of one side of a join: a name, an expression or a column, or a list of them."""
    items = tuple(keys) if isinstance(keys, (list, tuple)) else (keys,)
    if not items:
        raise RelayValueError(f"join(): {argument} names no key column")
    return _column_exprs(items, f"join(): {argument}")


def _exprs_of(items: tuple[Any, ...], method: str) -> list[Expr]:
    """Arguments given as one list or as several, each a name, an Expr or a Column."""
    if len(items) == 1 and isinstance(items[0], (list, tuple)):
        items = tuple(items[0])
    return _column_exprs(items, f"{method}()")


def _column_exprs(items: tuple[Any, ...], taker: str) -> list[Expr]:
    """Each item (a column name, an Expr or a Column) as an expression; `taker` names the
    argument in the error for anything else."""
    exprs = []
    for item in items:
        if isinstance(item, str):
            exprs.append(col(item))
        elif isinstance(item, (Expr, Column)):
            exprs.append(to_expr(item))
        else:
            raise RelayTypeError(
                f"{taker} takes column names, expressions or columns, got {type(item).__name__}"
            )
    return exprs


_SHORT_TYPES = {
    "int8": "i8",
    "int16": "i16",
    "int32": "i32",
    "int64": "i64",
    "uint8": "u8",
    "uint16": "u16",
    "uint32": "u32",
    "uint64": "u64",
    "float16": "f16",
    "float32": "f32",
    "float64": "f64",
    "string": "str",
    "large_string": "str",
}


# A printed frame fits this many characters a line (Polars' default table width is 100): the
# columns that do not fit are left out from the middle, and a `…` column stands for them.
_TABLE_WIDTH = 100
# At most this many columns are printed, the first and the last half, as Polars prints 8.
_COLUMNS_SHOWN = 8


def _format_table(frame: Frame, rows_shown: int = 8, cell_width: int = 24) -> str:
    """A box table like Polars prints: shape, names, types, the first and last rows, and as
    many columns as fit :data:`_TABLE_WIDTH` characters. The plan runs once (see
    ``NativeFrame._preview``): only the rows shown are read back."""
    half = rows_shown // 2
    n, shown_rows = frame._native._preview(half)
    names = frame.columns
    schema = frame.schema

    def values(name: str) -> list[str]:
        try:
            raw = Column(shown_rows.column(name)).to_pylist()
        except RelayError:  # a value Python cannot hold must not break printing the frame
            # Guillemets, so that the marker cannot be read as a value.
            return ["‹unprintable›"] * len(shown_rows.column(name))  # noqa: RUF001
        float_type = float_type_of(schema[name])
        shown = [value_text(v, float_type) for v in raw]
        return shown if n <= 2 * half else [*shown[:half], "…", *shown[half:]]

    def cells(name: str) -> list[str]:
        typ = _SHORT_TYPES.get(schema[name], schema[name])
        column = [name, "---", typ, *values(name)]
        return [c if len(c) <= cell_width else c[: cell_width - 1] + "…" for c in column]

    # The first and the last columns, as many as fit: each drop takes the innermost column of
    # the longer side.
    left = list(range(min(len(names), (_COLUMNS_SHOWN + 1) // 2)))
    right = list(range(max(len(left), len(names) - _COLUMNS_SHOWN // 2), len(names)))
    formatted = {i: cells(names[i]) for i in (*left, *right)}

    def line_width() -> int:
        widths = [max(map(len, formatted[i])) for i in (*left, *right)]
        gap = 4 if len(left) + len(right) < len(names) else 0
        return sum(w + 3 for w in widths) + 1 + gap

    while len(left) + len(right) > 1 and line_width() > _TABLE_WIDTH:
        if len(right) >= len(left):
            right.pop(0)
        else:
            left.pop()
    columns = [formatted[i] for i in left]
    if len(left) + len(right) < len(names):
        body = len(formatted[left[0]]) - 3
        columns.append(["…", "", "", *(["…"] * body)])
    columns += [formatted[i] for i in right]
    widths = [max(len(c) for c in column) for column in columns]

    def line(left: str, fill: str, sep: str, right: str) -> str:
        return left + sep.join(fill * (w + 2) for w in widths) + right

    def row(cells: list[str]) -> str:
        return "│" + "┆".join(f" {v:<{w}} " for v, w in zip(cells, widths, strict=True)) + "│"

    out = [f"shape: ({n:_}, {len(names)})", line("┌", "─", "┬", "┐")]
    for i in range(3):
        out.append(row([column[i] for column in columns]))
    out.append(line("╞", "═", "╪", "╡"))
    body_rows = len(columns[0]) - 3 if columns else 0
    for i in range(body_rows):
        out.append(row([column[3 + i] for column in columns]))
    out.append(line("└", "─", "┴", "┘"))
    return "\n".join(out)
