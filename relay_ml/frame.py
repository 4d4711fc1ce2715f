"""Frame: columns of a memory-mapped Arrow file, and `scan` that opens one."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import numpy as np

from relay_ml._relay import NativeFrame
from relay_ml.column import Column, _check_slice_args
from relay_ml.errors import RelayError, RelayTypeError, RelayValueError
from relay_ml.expr import Expr, _to_expr, col

if TYPE_CHECKING:
    import pyarrow


def scan(path: str | os.PathLike[str]) -> Frame:
    """Open an Arrow IPC file (Feather v2) as a lazy :class:`Frame`.

    The file is memory-mapped (private, copy-on-write) and only its footer and record batch
    headers are read, so opening costs the same for a kilobyte and for a hundred gigabytes,
    and uses no memory beyond the page cache. Files written by pyarrow (8-byte aligned, one or
    many record batches) and by relay open alike.

    Raises:
        RelayFileNotFoundError: the path does not exist (also a ``FileNotFoundError``).
        NotArrowFileError: the path is a directory or not an Arrow IPC file.
        CorruptFileError: the footer or a record batch header is damaged or truncated.
        RelayTypeError: ``path`` is not a str or path-like object.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise RelayTypeError(f"scan() takes a path (str or os.PathLike), got {type(path).__name__}")
    return Frame._wrap(NativeFrame.scan(os.fspath(path)), ())


def _replay(path: str, ops: tuple[tuple[str, tuple[Any, ...]], ...]) -> Frame:
    """Rebuilds a frame from its file and the operations that made it (unpickling)."""
    frame = scan(path)
    for method, args in ops:
        frame = getattr(frame, method)(*args)
    return frame


class Frame:
    """Columns of a memory-mapped Arrow file over a range of its rows.

    A frame holds no data: ``select``, ``head`` and ``slice`` return new frames that only
    narrow the columns or rows, and ``frame["name"]`` returns a lazy :class:`Column`. Data is
    read when it is exported: ``to_numpy()``, ``to_arrow()``, ``to_dict()``, or through the
    Arrow PyCapsule interface (``pyarrow.table(frame)``, ``polars.DataFrame(frame)``).
    """

    __slots__ = ("_native", "_ops")

    def __init__(self) -> None:
        raise TypeError("Frame objects are made by relay_ml.scan(path)")

    @classmethod
    def _wrap(cls, native: NativeFrame, ops: tuple[tuple[str, tuple[Any, ...]], ...]) -> Frame:
        frame = object.__new__(cls)
        frame._native = native
        frame._ops = ops  # how this frame was made from the file: what pickling sends
        return frame

    def _then(self, native: NativeFrame, method: str, *args: Any) -> Frame:
        return Frame._wrap(native, self._ops + ((method, args),))

    # -- shape and schema ----------------------------------------------------------------
    @property
    def path(self) -> str:
        """The mapped file."""
        return self._native.path

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
        return self._then(self._native.select([e._native for e in exprs]), "select", *exprs)

    def filter(self, *predicates: Any) -> Frame:
        """Rows where every predicate is true (null counts as false). Lazy: the filter runs
        when the frame is exported, and yields a selection of rows, not a copy."""
        exprs = _exprs_of(predicates, "filter")
        if not exprs:
            raise RelayTypeError("filter() needs at least one predicate")
        predicate = exprs[0]
        for other in exprs[1:]:
            predicate = predicate & other
        return self._then(self._native.filter(predicate._native), "filter", predicate)

    def with_column(self, name: str, value: Any) -> Frame:
        """This frame with column ``name`` set to ``value`` (an :class:`Expr`, a Column of this
        frame, or a scalar), replacing a column of that name in place."""
        if not isinstance(name, str):
            raise RelayTypeError(f"with_column() takes a column name first, got {type(name).__name__}")
        return self.with_columns(**{name: value})

    def with_columns(self, *exprs: Any, **named: Any) -> Frame:
        """Several :meth:`with_column` at once: expressions keep their output names, keyword
        arguments name theirs."""
        pairs = [(e.output_name, e) for e in _exprs_of(exprs, "with_columns")]
        pairs += [(name, _to_expr(value)) for name, value in named.items()]
        native = self._native.with_columns([(n, e._native) for n, e in pairs])
        return self._then(native, "_with_pairs", tuple(pairs))

    def _with_pairs(self, pairs: tuple[tuple[str, Expr], ...]) -> Frame:
        return self.with_columns(**dict(pairs))

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
            raise RelayTypeError(f"rename() takes a dict {{old: new}}, got {type(mapping).__name__}")
        for old in mapping:
            if old not in self.columns:
                self[old]
        return self.select([col(n).alias(mapping.get(n, n)) if n in mapping else col(n) for n in self.columns])

    def cast(self, dtypes: dict[str, Any]) -> Frame:
        """Columns converted by ``{name: dtype}`` (value conversion)."""
        if not isinstance(dtypes, dict):
            raise RelayTypeError(f"cast() takes a dict {{name: dtype}}, got {type(dtypes).__name__}")
        return self.with_columns(**{name: col(name).cast(dtype) for name, dtype in dtypes.items()})

    def head(self, n: int = 5) -> Frame:
        """The first ``n`` rows."""
        return self.slice(0, n)

    def slice(self, offset: int, length: int | None = None) -> Frame:
        """Rows ``offset .. offset + length``, clamped to the frame like Python slicing."""
        _check_slice_args(offset, length)
        native = self._native.slice(int(offset), None if length is None else int(length))
        return self._then(native, "slice", int(offset), None if length is None else int(length))

    def __getitem__(self, key: str | list[str]) -> Any:
        if isinstance(key, str):
            return Column(self._native.column(key))
        if isinstance(key, (list, tuple)):
            return self.select(list(key))
        if isinstance(key, (Expr, Column)):
            return self.filter(key)
        raise RelayTypeError(f"frame[...] takes a column name or a list of names, got {type(key).__name__}")

    # -- plans -----------------------------------------------------------------------------
    def explain(self) -> str:
        """The logical plan, the optimized plan, and for each output column whether exporting
        it is a view of the mapped file or a copy, and why."""
        return self._native.explain()

    def profile(self) -> list[dict[str, Any]]:
        """Runs the frame and returns per-operator statistics: rows in and out, bytes read and
        copied, and wall seconds (each operator's time includes its inputs')."""
        keys = ("operator", "rows_in", "rows_out", "bytes_read", "bytes_copied", "seconds")
        return [dict(zip(keys, row)) for row in self._native._profile()]

    def __iter__(self) -> Any:
        raise TypeError("iterate over frame.columns, or use frame[name] for a column")

    def __contains__(self, name: object) -> bool:
        return name in self.columns

    # -- exports ---------------------------------------------------------------------------
    def to_numpy(self, order: str = "C") -> np.ndarray:
        """All columns as one 2-D array of shape ``(rows, columns)``, in ``order`` "C"
        (row-major) or "F" (column-major).

        Every column must have a fixed-width numeric form (see :meth:`Column.to_numpy`); the
        result has their common NumPy dtype. This always copies: a frame's columns are not
        interleaved in the file. Columns of one dtype without nulls are gathered in one
        parallel pass straight into the result. For one column without a copy use
        ``frame[name].to_numpy()``.
        """
        if order not in ("C", "F"):
            raise RelayValueError(f'order must be "C" or "F", got {order!r}')
        if self.columns:
            matrix = self._native._matrix(order)
            if matrix is not None:
                return matrix if matrix.ndim == 2 else matrix.reshape(-1, 1)
        columns = [self[name].to_numpy() for name in self.columns]
        for name, column in zip(self.columns, columns):
            if column.ndim != 1 or column.dtype == object:
                raise RelayTypeError(
                    f"column {name!r} of {self.path} has type {self.schema[name]}, which has no "
                    f"place in a 2-D numeric array; select the numeric columns first"
                )
        dtype = np.result_type(*columns) if columns else np.float64
        rows = len(columns[0]) if columns else self.num_rows
        out = np.empty((rows, len(columns)), dtype=dtype, order=order)
        for j, column in enumerate(columns):
            out[:, j] = column
        return out

    def to_arrow(self) -> pyarrow.Table:
        """The frame as a ``pyarrow.Table`` whose buffers are the mapped file's."""
        import pyarrow as pa

        return pa.table(self)

    def to_dict(self, as_series: bool = True) -> dict[str, Any]:
        """Column name to :class:`Column` (``as_series=True``) or to a list of Python values."""
        if as_series:
            return {name: self[name] for name in self.columns}
        return {name: self[name].to_pylist() for name in self.columns}

    def __arrow_c_schema__(self) -> object:
        return self._native.__arrow_c_schema__()

    def __arrow_c_stream__(self, requested_schema: object | None = None) -> object:
        return self._native.__arrow_c_stream__(requested_schema)

    # -- pickling: a frame travels as (path, operations), never as data -------------------
    def __reduce__(self) -> tuple[Any, ...]:
        return (_replay, (self.path, self._ops))

    # -- display ---------------------------------------------------------------------------
    def __repr__(self) -> str:
        return _format_table(self)


def _exprs_of(items: tuple[Any, ...], method: str) -> list[Expr]:
    """Arguments given as one list or as several, each a name, an Expr or a Column."""
    if len(items) == 1 and isinstance(items[0], (list, tuple)):
        items = tuple(items[0])
    exprs = []
    for item in items:
        if isinstance(item, str):
            exprs.append(col(item))
        elif isinstance(item, (Expr, Column)):
            exprs.append(_to_expr(item))
        else:
            raise RelayTypeError(
                f"{method}() takes column names, expressions or columns, got {type(item).__name__}"
            )
    return exprs


_SHORT_TYPES = {
    "int8": "i8", "int16": "i16", "int32": "i32", "int64": "i64",
    "uint8": "u8", "uint16": "u16", "uint32": "u32", "uint64": "u64",
    "halffloat": "f16", "float": "f32", "double": "f64", "string": "str", "large_string": "str",
}


def _format_table(frame: Frame, rows_shown: int = 8, width: int = 24) -> str:
    """A box table like Polars prints: shape, names, types, the first and last rows."""
    n = frame.num_rows
    names = frame.columns
    def shown(part: Frame, name: str) -> list[str]:
        try:
            return [repr_value(v) for v in part[name].to_pylist()]
        except RelayError:  # a value Python cannot hold must not break printing the frame
            return ["‹unprintable›"] * len(part)

    if n <= rows_shown:
        bodies = [shown(frame, c) for c in names]
    else:
        half = rows_shown // 2
        top = frame.head(half)
        bottom = frame.slice(n - half, half)
        bodies = [shown(top, c) + ["…"] + shown(bottom, c) for c in names]
    types = [_SHORT_TYPES.get(t, t) for t in frame.schema.values()]
    cells = [[name, "---", typ, *body] for name, typ, body in zip(names, types, bodies)]
    cells = [[c if len(c) <= width else c[: width - 1] + "…" for c in col] for col in cells]
    widths = [max(len(c) for c in col) for col in cells]

    def line(left: str, fill: str, sep: str, right: str) -> str:
        return left + sep.join(fill * (w + 2) for w in widths) + right

    def row(values: list[str]) -> str:
        return "│" + "┆".join(f" {v:<{w}} " for v, w in zip(values, widths)) + "│"

    out = [f"shape: ({n:_}, {len(names)})", line("┌", "─", "┬", "┐")]
    for i in range(3):
        out.append(row([col[i] for col in cells]))
    out.append(line("╞", "═", "╪", "╡"))
    body_rows = len(cells[0]) - 3 if cells else 0
    for i in range(body_rows):
        out.append(row([col[3 + i] for col in cells]))
    out.append(line("└", "─", "┴", "┘"))
    return "\n".join(out)


def repr_value(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, str):
        return repr(value)
    return str(value)
