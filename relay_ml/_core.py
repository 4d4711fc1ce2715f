"""What the Python API's modules share and build on: argument checks and dtype names.

Nothing here knows frames, columns or expressions, so every module of the package may import
it (expressions, columns, frames, sources, writers, the framework adapters).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np

from relay_ml.errors import RelayTypeError, RelayValueError


def int_arg(name: str, value: Any) -> int:
    """``value`` as an int, or a RelayTypeError naming the argument ``name``."""
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
        raise RelayTypeError(f"{name} must be an int, got {type(value).__name__}")
    return int(value)


def slice_offset(offset: Any, length: Any, num_rows: Callable[[], int]) -> int:
    """Checks a slice's arguments and returns its offset, a negative one counted from the end
    (like Python's and Polars' slicing; ``num_rows`` is asked only then)."""
    start = int_arg("offset", offset)
    if length is not None and int_arg("length", length) < 0:
        raise RelayValueError(f"length must be >= 0 or None, got {length}")
    return start if start >= 0 else max(num_rows() + start, 0)


def check_batch_size(batch_size: Any) -> None:
    """Raises RelayTypeError / RelayValueError unless ``batch_size`` is an int >= 1."""
    if not isinstance(batch_size, (int, np.integer)) or isinstance(batch_size, bool):
        raise RelayTypeError(f"batch_size must be an int, got {type(batch_size).__name__}")
    if batch_size < 1:
        raise RelayValueError(f"batch_size must be >= 1, got {batch_size}")


def optional_int(value: Any, name: str) -> None:
    """Raises RelayTypeError unless ``value`` is an int or None."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        raise RelayTypeError(f"{name} must be an int or None, got {type(value).__name__}")


def path_arg(path: Any, function: str) -> str:
    """``path`` (a str or os.PathLike) as a str, or a RelayTypeError naming ``function``."""
    if not isinstance(path, (str, os.PathLike)):
        raise RelayTypeError(
            f"{function}() takes a path (str or os.PathLike), got {type(path).__name__}"
        )
    return os.fspath(path)


def dtype_name(dtype: Any) -> str:
    """A dtype as the engine names it: accepts strings, NumPy dtypes, pyarrow types
    (``pa.int32()``) and Python types."""
    if isinstance(dtype, str):
        return dtype
    if type(dtype).__module__.startswith("pyarrow"):
        return str(dtype)  # pyarrow's spelling: "int32", "double", "timestamp[us]", ...
    if dtype is bool:
        return "bool"
    if dtype is int:
        return "int64"
    if dtype is float:
        return "float64"
    if dtype is str:
        return "string"
    try:
        name: str = np.dtype(dtype).name
    except TypeError:
        raise RelayTypeError(f"not a dtype: {dtype!r}") from None
    return name


_NUMPY_DTYPES = {
    "int8": "i1",
    "int16": "i2",
    "int32": "i4",
    "int64": "i8",
    "uint8": "u1",
    "uint16": "u2",
    "uint32": "u4",
    "uint64": "u8",
    "float16": "f2",
    "float32": "f4",
    "float64": "f8",
    "bool": "?",
}


def numpy_dtype_of(arrow_type: str) -> np.dtype:
    """The NumPy dtype of a column of ``arrow_type`` (as relay names it) without nulls,
    ``object`` for types without a fixed-width numeric form."""
    if arrow_type in _NUMPY_DTYPES:
        return np.dtype(_NUMPY_DTYPES[arrow_type])
    for prefix, kind in (("timestamp[", "M8"), ("duration[", "m8")):
        if arrow_type.startswith(prefix):
            unit = arrow_type[len(prefix) :].split(",")[0].rstrip("]")
            return np.dtype(f"{kind}[{unit}]")
    return np.dtype(object)


# Float types printed with their own shortest repr ("0.1", not 0.1's float64 digits
# "0.10000000149011612"), as NumPy prints its scalars.
_NARROW_FLOATS: dict[str, type[np.floating[Any]]] = {"float32": np.float32, "float16": np.float16}
# List types whose items are printed by their item type.
_LIST_PREFIXES = ("list<item: ", "large_list<item: ", "fixed_size_list<item: ", "list_view<item: ")


def float_type_of(type_name: str) -> type[np.floating[Any]] | None:
    """The NumPy type that prints the floats of a column of `type_name` (a float16 or float32
    column, or a list of them), or None when its floats are float64 or it has none."""
    for prefix in _LIST_PREFIXES:
        if type_name.startswith(prefix):
            item = type_name[len(prefix) :]
            item = item[: item.rindex(">")]
            return float_type_of(item)
    return _NARROW_FLOATS.get(type_name)


def value_text(value: Any, float_type: type[np.floating[Any]] | None) -> str:
    """A value as a printed frame shows it; floats of a float32 / float16 column by their own
    shortest repr."""
    if float_type is not None:
        if isinstance(value, float):
            return str(float_type(value))
        if isinstance(value, list):
            return "[" + ", ".join(value_text(v, float_type) for v in value) + "]"
    return repr_value(value)


def repr_value(value: Any) -> str:
    """A value as printed frames and columns show it: null for None, strings quoted."""
    if value is None:
        return "null"
    if isinstance(value, str):
        return repr(value)
    return str(value)
