"""Exceptions raised by relay_ml.

Every error derives from :class:`RelayError`, and each subclass also derives the builtin
exception users already catch, so ``except FileNotFoundError`` or ``except KeyError`` work
as they would with pyarrow or Polars. Messages name the file, column or argument at fault.
"""

from __future__ import annotations


class RelayError(Exception):
    """Base class of every error relay_ml raises."""


class RelayFileNotFoundError(RelayError, FileNotFoundError):
    """The path does not exist."""


class InvalidFileError(RelayError, ValueError):
    """The file cannot be read as the format it was opened as."""


class WrongFormatError(InvalidFileError):
    """The file is not of the format it was opened as (no Parquet magic bytes, a directory,
    too short to hold the format's footer)."""


class NotArrowFileError(WrongFormatError):
    """The file is not an Arrow IPC file (wrong magic bytes, a directory, another format)."""


class CorruptFileError(InvalidFileError):
    """The file looks like a file of its format (Arrow IPC, Parquet, CSV, NDJSON) but its
    bytes are damaged: a footer, metadata, buffer, page or record that cannot be decoded. The
    message names the place (row group and column, or line and column)."""


class FileChangedError(RelayError, OSError):
    """The file changed size after it was mapped (it was truncated or appended in place)."""


class RelayIOError(RelayError, OSError):
    """The operating system refused an operation on the file (permissions, mmap, stat)."""


class ColumnNotFoundError(RelayError, KeyError):
    """No column has that name; the message lists the available columns."""

    def __str__(self) -> str:  # KeyError would show the message quoted
        return str(self.args[0]) if self.args else ""


class RelayTypeError(RelayError, TypeError):
    """An argument or a column has a type the operation does not accept."""


class RelayValueError(RelayError, ValueError):
    """An argument has a value the operation does not accept."""


class ExportError(RelayError, BufferError):
    """An export protocol (buffer protocol, DLPack) cannot hand out the column as asked:
    a writable buffer was requested, or the dtype has no code in that protocol."""


class ZeroCopyError(ExportError):
    """A zero-copy export was required (``zero_copy=True``) but the data must be copied.

    The message says why: several record batches, nulls, a bit-packed or variable-width
    type, compression or misalignment.
    """


class DeviceError(ExportError):
    """An export to a device relay's data does not live on (it lives in host memory)."""


__all__ = [
    "ColumnNotFoundError",
    "CorruptFileError",
    "DeviceError",
    "ExportError",
    "FileChangedError",
    "InvalidFileError",
    "NotArrowFileError",
    "RelayError",
    "RelayFileNotFoundError",
    "RelayIOError",
    "RelayTypeError",
    "RelayValueError",
    "WrongFormatError",
    "ZeroCopyError",
]
