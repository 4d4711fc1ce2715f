"""Frames from data that is already in memory: Arrow, NumPy and pandas.

``from_arrow``, ``from_numpy`` and ``from_pandas`` return a :class:`~relay_ml.Frame` over the
caller's memory. Each column is **referenced, not copied** where its memory already has the
Arrow layout (an Arrow array in one chunk, a C-contiguous NumPy array of numbers or dates), and
copied once otherwise; ``frame.explain()`` says which and why, as for
:meth:`Frame.with_column <relay_ml.Frame.with_column>`. The frame keeps the source memory alive.

Such a frame has no file: ``frame.path`` is None and ``frame.origin`` names where the data came
from. Pickling it sends the data (a scanned frame sends only its path and plan).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from relay_ml._relay import _import_arrow
from relay_ml.batches import iter_batches
from relay_ml.errors import RelayTypeError, RelayValueError
from relay_ml.frame import Frame, attachable, memory_frame

if TYPE_CHECKING:
    import pandas

__all__ = ["from_arrow", "from_numpy", "from_pandas"]


# -- public constructors ---------------------------------------------------------------------


def from_arrow(data: Any) -> Frame:
    """A frame over Arrow data: any object with ``__arrow_c_stream__`` (a ``pyarrow.Table`` or
    ``RecordBatchReader``, a Polars DataFrame, a DuckDB relation) or ``__arrow_c_array__`` of a
    struct array (a ``pyarrow.RecordBatch``), or a dict of column name to Arrow array.

    Columns share the producer's buffers (no copy) when the data comes in one chunk; a column
    that comes in several chunks is concatenated into one array, once, and ``explain()`` says
    so. A pandas DataFrame goes to :func:`from_pandas`; a relay Frame is returned as it is.

    Raises:
        RelayTypeError: ``data`` speaks none of these protocols.
    """
    if isinstance(data, Frame):
        return data
    if _is_pandas_frame(data):
        return from_pandas(data)
    if isinstance(data, Mapping):
        return _from_mapping(data, "from_arrow")
    imported, num_rows, notes = _import_arrow(data)
    columns = [(array.name, array, note) for array, note in zip(imported, notes, strict=True)]
    return memory_frame(columns, num_rows, f"from_arrow({_type_name(data)})")


def from_numpy(data: Mapping[str, Any] | np.ndarray, columns: list[str] | None = None) -> Frame:
    """A frame over NumPy arrays: a dict of column name to array, or a 2-D array whose columns
    are named by ``columns`` (default ``column_0``, ``column_1``, ...).

    A 1-D array becomes a column, a 2-D array in a dict a ``fixed_size_list`` column (one row
    per array row). A C-contiguous, aligned, native-endian array of integers, floats,
    datetime64 or timedelta64 is **referenced, not copied**: ``frame[name].to_numpy()`` returns
    a view of the same memory, and writing into the array changes the frame. Other arrays are
    copied once (booleans are packed into bits, strings converted with pyarrow); ``explain()``
    names each copy. The columns of a 2-D array in Fortran order are contiguous, and so are
    referenced; those of a C-ordered one are strided and copied.

    Raises:
        RelayValueError: the arrays differ in length, or a 2-D array's ``columns`` have the
            wrong count.
        RelayTypeError: ``data`` is neither a dict nor a 2-D array.
    """
    if isinstance(data, np.ndarray):
        if data.ndim != 2:
            raise RelayValueError(
                "from_numpy() takes a dict of arrays or a 2-D array, got an array of shape "
                f"{data.shape}"
            )
        names = (
            list(columns) if columns is not None else [f"column_{j}" for j in range(data.shape[1])]
        )
        if len(names) != data.shape[1]:
            raise RelayValueError(
                f"from_numpy(): {len(names)} column names for an array of {data.shape[1]} columns"
            )
        return _from_mapping({name: data[:, j] for j, name in enumerate(names)}, "from_numpy")
    if not isinstance(data, Mapping):
        raise RelayTypeError(
            f"from_numpy() takes a dict of arrays or a 2-D array, got {_type_name(data)}"
        )
    if columns is not None:
        raise RelayTypeError(
            "from_numpy(): columns= names the columns of a 2-D array; a dict names its own"
        )
    return _from_mapping(data, "from_numpy")


def from_pandas(data: pandas.DataFrame | pandas.Series, *, index: bool = False) -> Frame:
    """A frame over a pandas DataFrame's columns (or one Series).

    Columns of NumPy dtypes (integers, floats, datetime64, timedelta64) are **referenced,
    not copied**: pandas keeps each such column contiguous, and the frame's exports are views
    of pandas' own memory. A float NaN stays a NaN value, as in pandas, rather than becoming a
    null (so float columns stay views). Columns backed by Arrow (``ArrowDtype``, pandas 3
    strings) share their Arrow buffers; other extension dtypes (nullable integers,
    categoricals, object columns) are converted with pyarrow, once. ``explain()`` says which.

    Args:
        data: the DataFrame or Series; column names must be strings.
        index: also keep the index, as a first column named after it (default ``"index"``).

    Raises:
        RelayTypeError: a column name is not a string, or a column cannot be converted.
    """
    import pandas as pd

    if isinstance(data, pd.Series):
        data = data.to_frame(name=data.name if data.name is not None else "values")
    if not isinstance(data, pd.DataFrame):
        raise RelayTypeError(
            f"from_pandas() takes a pandas DataFrame or Series, got {_type_name(data)}"
        )
    pairs: list[tuple[Any, Any]] = []
    if index:
        pairs.append(
            (data.index.name if data.index.name is not None else "index", data.index.to_series())
        )
    pairs.extend((name, data.iloc[:, j]) for j, name in enumerate(data.columns))
    columns = []
    for name, series in pairs:
        if not isinstance(name, str):
            raise RelayTypeError(
                f"from_pandas(): column names must be strings, got {name!r}; rename them "
                "(df.columns = df.columns.astype(str))"
            )
        value, note = _pandas_column(name, series)
        columns.append((name, value, note))
    return memory_frame(columns, len(data), "from_pandas")


# -- helpers ----------------------------------------------------------------------------------


def _from_mapping(data: Mapping[str, Any], origin: str) -> Frame:
    columns = []
    for name, value in data.items():
        if not isinstance(name, str):
            raise RelayTypeError(f"{origin}(): column names must be strings, got {name!r}")
        converted, note = attachable(name, value)
        columns.append((name, converted, note))
    lengths = {len(value) for _, value, _ in columns}
    if len(lengths) > 1:
        described = ", ".join(f"{name!r}: {len(value)}" for name, value, _ in columns)
        raise RelayValueError(f"{origin}(): the columns differ in length ({described})")
    num_rows = lengths.pop() if lengths else 0
    return memory_frame(columns, num_rows, origin)


def _pandas_column(name: str, series: Any) -> tuple[Any, str | None]:
    """A pandas column as what a frame attaches, and why it was copied (None when referenced)."""
    dtype = series.dtype
    if isinstance(dtype, np.dtype) and dtype.kind in "iufmM":
        return series.to_numpy(copy=False), None
    if isinstance(dtype, np.dtype) and dtype.kind == "b":
        return series.to_numpy(copy=False), None  # bytes packed into bits by the import
    import pyarrow as pa

    native_arrow = _arrow_backed(series)
    if native_arrow is not None:
        return native_arrow
    try:
        array = pa.array(series, from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as error:
        raise RelayTypeError(
            f"from_pandas(): column {name!r} of dtype {dtype} cannot be converted to Arrow: {error}"
        ) from None
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    return array, f"pandas dtype {dtype} has no Arrow layout in memory: converted with pyarrow"


def _arrow_backed(series: Any) -> tuple[Any, str | None] | None:
    """The Arrow data behind a pandas column backed by Arrow (``ArrowDtype``, pyarrow strings),
    without copying when it is one chunk; None for other columns."""
    import pyarrow as pa

    values = series.array
    chunked = getattr(
        values, "_pa_array", None
    )  # ArrowExtensionArray and ArrowStringArray keep it here
    if not isinstance(chunked, pa.ChunkedArray):
        return None
    if chunked.num_chunks == 1:
        return chunked.chunk(0), None
    return (
        chunked.combine_chunks(),
        f"the data came in {chunked.num_chunks} chunks, concatenated into one array",
    )


def _is_pandas_frame(data: Any) -> bool:
    pd = sys.modules.get("pandas")
    return pd is not None and isinstance(data, (pd.DataFrame, pd.Series))


def _type_name(value: Any) -> str:
    kind = type(value)
    module = kind.__module__.split(".")[0]
    return kind.__name__ if module == "builtins" else f"{module}.{kind.__name__}"


def numpy_batches(
    frame: Frame,
    batch_size: int,
    *,
    columns: list[str] | None = None,
    shuffle: bool | str | None = None,
    seed: int = 0,
    epoch: int = 0,
    drop_last: bool = False,
) -> Iterator[dict[str, np.ndarray]]:
    """Batches of ``frame`` as dicts of fresh NumPy arrays, for the ML adapters: gathered by
    the engine (``relay_ml.batches.iter_batches``), one parallel gather per column and batch."""
    return iter_batches(
        frame,
        batch_size,
        columns=columns,
        shuffle=shuffle,
        seed=seed,
        epoch=epoch,
        drop_last=drop_last,
    )


def shuffle_mode(shuffle: bool | str | None) -> bool | str | None:
    """The ``shuffle`` argument of the ML adapters, checked. ``True`` stays ``True``: the best
    shuffle the source allows (see ``relay_ml.batches``)."""
    if shuffle is True:
        return True
    if shuffle is False or shuffle is None:
        return None
    if shuffle in ("global", "block"):
        return shuffle
    raise RelayValueError(
        f'shuffle must be True, False, None, "global" or "block", got {shuffle!r}'
    )
