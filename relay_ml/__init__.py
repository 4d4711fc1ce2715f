"""relay_ml: a zero-copy data engine for machine learning.

Memory-map Apache Arrow files and hand their columns to NumPy, torch, JAX, pyarrow, Polars
and pandas without copying them::

    import relay_ml as relay

    frame = relay.scan("data.arrow")          # reads the footer only
    ages = frame["age"].to_numpy()            # a read-only view of the mapped file
    x = frame["emb"].to_tensor()              # (N, D) torch tensor over the same bytes
"""

from __future__ import annotations

from relay_ml._relay import __version__
from relay_ml.column import Column
from relay_ml.errors import (
    ColumnNotFoundError,
    CorruptFileError,
    DeviceError,
    ExportError,
    FileChangedError,
    InvalidFileError,
    NotArrowFileError,
    RelayError,
    RelayFileNotFoundError,
    RelayIOError,
    RelayTypeError,
    RelayValueError,
    WrongFormatError,
    ZeroCopyError,
)
from relay_ml.expr import AggExpr, Expr, col, lit, when
from relay_ml.frame import BatchIterator, Frame, GroupBy, concat, scan
from relay_ml.interop import from_arrow, from_numpy, from_pandas
from relay_ml.io import append, repair, write

__all__ = [
    "AggExpr",
    "BatchIterator",
    "Column",
    "ColumnNotFoundError",
    "CorruptFileError",
    "DeviceError",
    "ExportError",
    "Expr",
    "FileChangedError",
    "Frame",
    "GroupBy",
    "InvalidFileError",
    "NotArrowFileError",
    "RelayError",
    "RelayFileNotFoundError",
    "RelayIOError",
    "RelayTypeError",
    "RelayValueError",
    "WrongFormatError",
    "ZeroCopyError",
    "__version__",
    "append",
    "col",
    "concat",
    "from_arrow",
    "from_numpy",
    "from_pandas",
    "lit",
    "repair",
    "scan",
    "when",
    "write",
]
