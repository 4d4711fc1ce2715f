"""Frames and columns as narwhals sees them: the DataFrame protocol scikit-learn reads.

scikit-learn reads feature names, and selects rows and columns by name (``train_test_split``,
``cross_val_score``, ``ColumnTransformer``), only on objects that narwhals recognises. A
:class:`~relay_ml.Frame` answers ``__narwhals_dataframe__`` and a :class:`~relay_ml.Column`
``__narwhals_series__`` with the objects below: they implement the part of narwhals' compliant
protocol that positional indexing, column selection and schema reads use, each as a lazy relay
operation (``take``, ``slice``, ``select``), and hand back relay frames and columns as their
native objects. Numbers still reach estimators through ``__array__``: one parallel gather
(:meth:`Frame.to_numpy`). Expression-based narwhals calls (``with_columns``, ``filter`` by an
expression, ``group_by``) are not part of it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from relay_ml._optional import needs

with needs("relay_ml.sklearn"):
    import narwhals as nw
    from narwhals._utils import Version

import relay_ml
from relay_ml.column import Column
from relay_ml.frame import Frame, memory_frame

if TYPE_CHECKING:
    from narwhals.typing import TimeUnit

_NUMERIC = {
    "int8": "Int8",
    "int16": "Int16",
    "int32": "Int32",
    "int64": "Int64",
    "uint8": "UInt8",
    "uint16": "UInt16",
    "uint32": "UInt32",
    "uint64": "UInt64",
    "float16": "Float32",
    "float32": "Float32",
    "float64": "Float64",
    "bool": "Boolean",
    "string": "String",
    "large_string": "String",
    "string_view": "String",
    "binary": "Binary",
    "large_binary": "Binary",
    "date32[day]": "Date",
    "null": "Unknown",
}


def narwhals_dtype(arrow_type: str, version: Version) -> Any:
    """The narwhals dtype of a relay column type ("float32", "string", ...)."""
    dtypes = version.dtypes
    if arrow_type in _NUMERIC:
        return getattr(dtypes, _NUMERIC[arrow_type])()
    if arrow_type.startswith("timestamp["):
        # Arrow's units are narwhals': "s", "ms", "us", "ns".
        unit = cast("TimeUnit", arrow_type[len("timestamp[") :].split(",")[0].rstrip("]"))
        return dtypes.Datetime(time_unit=unit)
    if arrow_type.startswith("duration["):
        return dtypes.Duration(time_unit=cast("TimeUnit", arrow_type[len("duration[") : -1]))
    if arrow_type.startswith("dictionary<"):
        return dtypes.Categorical()
    if arrow_type.startswith(("fixed_size_list<", "list<", "large_list<")):
        return dtypes.List(dtypes.Unknown())
    if arrow_type.startswith("decimal"):
        return dtypes.Decimal()
    return dtypes.Unknown()


def _positions(rows: Any, length: int) -> np.ndarray | slice:
    """Row selector of narwhals' positional indexing as a slice or int64 positions."""
    if isinstance(rows, slice):
        return rows
    if isinstance(rows, RelayNarwhalsSeries):
        rows = rows.to_numpy()
    positions = np.asarray(rows)
    if positions.dtype.kind == "b":
        raise TypeError(
            "boolean masks select rows through DataFrame.filter, which relay does not take through "
            "narwhals"
        )
    return positions.astype(np.int64, copy=False).reshape(-1)


def _take(frame: Frame, rows: np.ndarray | slice) -> Frame:
    if isinstance(rows, slice):
        start, stop, step = rows.indices(frame.num_rows)
        if step == 1:
            return frame.slice(start, max(stop - start, 0))
        return frame.take(np.arange(start, stop, step))
    return frame.take(rows)


class RelayNarwhalsFrame:
    """A relay frame as a narwhals-compliant eager DataFrame (the part scikit-learn uses)."""

    _implementation: nw.Implementation = nw.Implementation.UNKNOWN
    _native_frame: Frame
    _version: Version

    def __init__(self, frame: Frame, version: Version | None = None) -> None:
        self._native_frame = frame
        self._version = version if version is not None else Version.MAIN

    # -- protocol plumbing ---------------------------------------------------------------
    def __narwhals_dataframe__(self) -> RelayNarwhalsFrame:
        return self

    def __native_namespace__(self) -> Any:
        return relay_ml

    def _with_version(self, version: Version) -> RelayNarwhalsFrame:
        return RelayNarwhalsFrame(self._native_frame, version)

    def _with_native(self, frame: Frame) -> RelayNarwhalsFrame:
        return RelayNarwhalsFrame(frame, self._version)

    @property
    def native(self) -> Frame:
        return self._native_frame

    # -- shape and schema -----------------------------------------------------------------
    @property
    def columns(self) -> list[str]:
        return self._native_frame.columns

    @property
    def shape(self) -> tuple[int, int]:
        return self._native_frame.shape

    def __len__(self) -> int:
        return self._native_frame.num_rows

    @property
    def schema(self) -> dict[str, Any]:
        return {
            name: narwhals_dtype(t, self._version) for name, t in self._native_frame.schema.items()
        }

    def collect_schema(self) -> dict[str, Any]:
        return self.schema

    # -- selection ------------------------------------------------------------------------
    def __getitem__(self, item: tuple[Any, Any]) -> RelayNarwhalsFrame:
        rows, columns = item
        frame = self._native_frame
        if columns is not None and not (isinstance(columns, slice) and columns == slice(None)):
            frame = frame.select(self._column_names(columns))
        if rows is not None and not (isinstance(rows, slice) and rows == slice(None)):
            frame = _take(frame, _positions(rows, frame.num_rows))
        return self._with_native(frame)

    def _column_names(self, columns: Any) -> list[str]:
        names = self.columns
        if isinstance(columns, slice):
            start, stop = columns.start, columns.stop
            if isinstance(start, str) or isinstance(stop, str):  # by name, both ends included
                first = names.index(start) if start is not None else 0
                last = names.index(stop) + 1 if stop is not None else len(names)
                return names[first : last : columns.step]
            return names[columns]
        if isinstance(columns, RelayNarwhalsSeries):
            columns = columns.to_numpy().tolist()
        selected = (
            list(np.asarray(columns).tolist()) if isinstance(columns, np.ndarray) else list(columns)
        )
        return [names[c] if isinstance(c, int) else c for c in selected]

    def simple_select(self, *names: str) -> RelayNarwhalsFrame:
        return self._with_native(self._native_frame.select(list(names)))

    def get_column(self, name: str) -> RelayNarwhalsSeries:
        return RelayNarwhalsSeries(self._native_frame[name], self._version)

    def iter_columns(self) -> Iterator[RelayNarwhalsSeries]:
        for name in self.columns:
            yield self.get_column(name)

    # -- exports --------------------------------------------------------------------------
    def to_numpy(self, dtype: Any = None, *, copy: bool | None = None) -> np.ndarray:
        return np.asarray(self._native_frame, dtype=dtype)

    def __array__(self, dtype: Any = None, *, copy: bool | None = None) -> np.ndarray:
        return self._native_frame.__array__(dtype, copy)

    def to_arrow(self) -> Any:
        return self._native_frame.to_arrow()

    def to_pandas(self) -> Any:
        return self._native_frame.to_pandas()

    def to_polars(self) -> Any:
        import polars as pl

        return pl.DataFrame(self._native_frame)

    def __narwhals_namespace__(self) -> Any:
        raise NotImplementedError(
            "narwhals expressions are not available on relay frames; select columns by name or "
            "position, or convert first (frame.to_arrow(), polars.DataFrame(frame))"
        )


class RelayNarwhalsSeries:
    """A relay column as a narwhals-compliant Series. Picking rows makes a lazy take of a
    one-column frame over the column (referenced, not copied)."""

    _implementation: nw.Implementation = nw.Implementation.UNKNOWN
    _column: Column
    _version: Version

    def __init__(self, column: Column, version: Version | None = None) -> None:
        self._column = column
        self._version = version if version is not None else Version.MAIN

    @classmethod
    def of_column(cls, column: Column) -> RelayNarwhalsSeries:
        return cls(column)

    def __narwhals_series__(self) -> RelayNarwhalsSeries:
        return self

    def __native_namespace__(self) -> Any:
        return relay_ml

    def _with_version(self, version: Version) -> RelayNarwhalsSeries:
        return RelayNarwhalsSeries(self._column, version)

    def _with_native(self, column: Column) -> RelayNarwhalsSeries:
        return RelayNarwhalsSeries(column, self._version)

    @property
    def native(self) -> Column:
        return self._column

    @property
    def name(self) -> str:
        return self._column.name

    @property
    def dtype(self) -> Any:
        return narwhals_dtype(self._column.dtype, self._version)

    def __len__(self) -> int:
        return len(self._column)

    def len(self) -> int:
        return len(self._column)

    def __getitem__(self, rows: Any) -> RelayNarwhalsSeries:
        column = self._column
        positions = _positions(rows, len(column))
        if isinstance(positions, slice) and positions.step in (None, 1):
            return self._with_native(column[positions])
        frame = memory_frame([(column.name, column, None)], len(column), f"column {column.name!r}")
        return self._with_native(_take(frame, positions)[column.name])

    def item(self, index: int | None = None) -> Any:
        position = 0 if index is None else index + len(self) if index < 0 else index
        return self._column.slice(position, 1).to_pylist()[0]

    def to_numpy(self, dtype: Any = None, *, copy: bool | None = None) -> np.ndarray:
        array = self._column.to_numpy()
        return array if dtype is None else array.astype(dtype, copy=False)

    def __array__(self, dtype: Any = None, *, copy: bool | None = None) -> np.ndarray:
        return self._column.__array__(dtype, copy)

    def to_list(self) -> list[Any]:
        return self._column.to_pylist()

    def to_arrow(self) -> Any:
        return self._column.to_arrow()
