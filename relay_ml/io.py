"""Writing frames to Arrow IPC and Parquet files, and appending to Arrow IPC files."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from relay_ml._core import path_arg
from relay_ml._relay import append_ipc, repair_ipc
from relay_ml.errors import RelayTypeError, RelayValueError
from relay_ml.frame import PARQUET_CODECS as PARQUET_CODECS
from relay_ml.frame import Frame
from relay_ml.interop import from_arrow

#: File name suffixes written as Arrow IPC files.
IPC_SUFFIXES = (".arrow", ".ipc", ".feather")
#: File name suffixes written as Parquet files.
PARQUET_SUFFIXES = (".parquet", ".pq")


def _as_frame(data: Any, function: str) -> Frame:
    if isinstance(data, Frame):
        return data
    if hasattr(data, "__arrow_c_stream__") or hasattr(data, "__arrow_c_array__"):
        return from_arrow(data)
    raise RelayTypeError(
        f"{function}() takes a relay Frame or Arrow data (pyarrow Table or RecordBatch, Polars "
        f"DataFrame), got {type(data).__name__}"
    )


def write_ipc(
    frame: Frame,
    path: str | os.PathLike[str],
    batch_size: int | None = None,
    compression: str | None = None,
) -> dict[str, int]:
    """Writes ``frame`` to ``path`` as an Arrow IPC file; see :meth:`Frame.write_ipc`."""
    return frame.write_ipc(path, batch_size, compression)


def write_parquet(
    frame: Frame,
    path: str | os.PathLike[str],
    compression: str = "zstd",
    row_group_size: int | None = None,
    compression_level: int | None = None,
) -> dict[str, int]:
    """Writes ``frame`` to ``path`` as a Parquet file; see :meth:`Frame.write_parquet`."""
    return frame.write_parquet(path, compression, row_group_size, compression_level)


def write(frame: Any, path: str | os.PathLike[str], **options: Any) -> dict[str, int]:
    """Writes ``frame`` to ``path`` in the format its suffix names.

    ``.arrow``, ``.ipc`` and ``.feather`` write an Arrow IPC file (Feather v2) with
    :meth:`Frame.write_ipc`, which takes ``batch_size`` and ``compression`` as ``options``.
    ``.parquet`` and ``.pq`` write a Parquet file with :meth:`Frame.write_parquet`, which takes
    ``compression``, ``compression_level`` and ``row_group_size``. The file is written under a
    temporary name in the same folder, synced and renamed into place.

    Returns a dict with the ``rows``, ``batches`` (record batches or row groups) and ``bytes``
    written.

    Raises:
        RelayValueError: the suffix names no format relay can write (CSV and JSON are not
            supported), or an option is invalid.
        RelayTypeError: ``frame`` is not a Frame or Arrow data.
    """
    target = path_arg(path, "write")
    suffix = Path(target).suffix.lower()
    if suffix in PARQUET_SUFFIXES:
        return write_parquet(_as_frame(frame, "write"), target, **options)
    if suffix not in IPC_SUFFIXES:
        shown = repr(suffix) if suffix else "no suffix"
        raise RelayValueError(
            f"{target}: cannot tell the format from {shown}: relay writes Arrow IPC files "
            f"({', '.join(IPC_SUFFIXES)}) and Parquet files ({', '.join(PARQUET_SUFFIXES)}); "
            f"CSV and JSON are not supported"
        )
    return write_ipc(_as_frame(frame, "write"), target, **options)


def append(path: str | os.PathLike[str], frame: Any) -> dict[str, int]:
    """Appends the rows of ``frame`` to the Arrow IPC file at ``path`` as one record batch,
    creating the file when it does not exist::

        for batch in relay.scan("huge.arrow", batch_size=100_000):
            preds = model.predict(batch.to_numpy())
            relay.append("predictions.arrow", batch.with_column("pred", preds))

    Crash-safe: when ``append`` returns, the new rows are on disk (synced) and survive a
    ``kill -9`` or a power cut. An append interrupted by a crash adds nothing: the file opens
    (with :func:`relay_ml.scan`) with exactly the rows of the appends that completed, and the
    next append makes it whole again for other readers such as pyarrow. Appending only ever adds
    bytes after the end of the file, so a frame that scanned the file earlier keeps reading the
    rows it saw. Concurrent appenders (threads or processes) are serialized by a file lock.

    Buffers are 64-byte aligned, like :meth:`Frame.write_ipc`. Each append adds one record batch,
    so many small appends make a file of many small batches: ``relay convert`` rewrites it as one.

    Returns a dict with the ``rows`` and ``batches`` appended and the file's size in ``bytes``.

    Dictionary-encoded columns keep the file's one dictionary per column (all an Arrow IPC
    file may hold): appended rows are re-encoded against it, so they may only use values it
    already has; to add values, rewrite the file with :func:`relay_ml.write`.

    Raises:
        RelayValueError: the frame's column names or types differ from the file's (the message
            shows both schemas; nothing is written), a dictionary column holds a value that the
            file's dictionary lacks (the message names the column and the value), or a
            dictionary is nested in another type.
        NotArrowFileError, CorruptFileError: ``path`` exists but is not a readable Arrow IPC file.
        RelayIOError: the file cannot be opened, locked, written or synced.
    """
    target = path_arg(path, "append")
    return dict(append_ipc(target, _as_frame(frame, "append")._native))


def repair(path: str | os.PathLike[str]) -> dict[str, int]:
    """Rewrites the Arrow IPC file at ``path`` up to its last intact footer, when its last footer
    is damaged (or its tail was torn by an interrupted append)::

        try:
            frame = relay.scan("log.arrow")
        except relay.CorruptFileError:
            report = relay.repair("log.arrow")   # {"rows": 40, "rows_dropped": 20, ...}

    An appended file whose final footer was damaged after it was written (a flipped byte on
    disk) is refused by :func:`relay_ml.scan` and :func:`relay_ml.append` with a
    ``CorruptFileError`` naming the footer's offset, rather than read at an earlier footer,
    which would silently drop the last append. ``repair`` makes that loss explicit: it keeps
    the file as it was after the last append whose footer is intact, replaces the file by
    rename (frames that scanned it earlier keep reading what they saw), and reports what it
    dropped. A file that reads as it is is left alone.

    Returns a dict with the ``rows`` the file keeps, the ``rows_dropped`` (the rows of the
    complete record batches after the last intact footer) and the ``bytes_dropped``.

    Raises:
        NotArrowFileError, CorruptFileError: the file has no intact footer to go back to.
        RelayFileNotFoundError: there is no file at ``path``.
        RelayIOError: the file cannot be read, locked or replaced.
    """
    return dict(repair_ipc(path_arg(path, "repair")))
