"""What ``relay_ml.scan`` reads: a source (a path, a list of paths, a glob, a directory)
resolved into files, each with its format and its hive partition values."""

from __future__ import annotations

import glob
import os
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from relay_ml._core import dtype_name
from relay_ml.errors import (
    NotArrowFileError,
    RelayFileNotFoundError,
    RelayTypeError,
    RelayValueError,
)

#: File suffixes and the format each names.
FORMAT_SUFFIXES = {
    ".arrow": "ipc",
    ".feather": "ipc",
    ".ipc": "ipc",
    ".arrows": "ipc",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".csv": "csv",
    ".json": "ndjson",
    ".ndjson": "ndjson",
    ".jsonl": "ndjson",
}

#: What ``format=`` accepts, mapped to the engine's names.
FORMAT_NAMES = {
    "ipc": "ipc",
    "arrow": "ipc",
    "feather": "ipc",
    "parquet": "parquet",
    "csv": "csv",
    "ndjson": "ndjson",
    "json": "ndjson",
    "jsonl": "ndjson",
}

#: The value pyarrow, Hive and Spark write in a folder name for a null partition value.
HIVE_NULL = "__HIVE_DEFAULT_PARTITION__"

_INTEGER = re.compile(r"[+-]?\d+")


@dataclass
class Source:
    """Files to read as one table."""

    description: str
    paths: list[str]
    formats: list[str]
    #: ``[(name, "int64" | "string")]``, in the order the folders nest.
    partitions: list[tuple[str, str]] = field(default_factory=list)
    #: One list of values (text, None for null) per file.
    partition_values: list[list[str | None]] = field(default_factory=list)
    #: Whether the source named a single file (no list, glob or directory).
    single_file: bool = False


def _sniff(path: str) -> str | None:
    """The format of ``path`` from its first bytes; None when they say nothing."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(8)
    except OSError:
        return None
    if head.startswith(b"PAR1"):
        return "parquet"
    if head.startswith(b"ARROW1") or head.startswith(b"\xff\xff\xff\xff"):
        return "ipc"
    stripped = head.lstrip()
    if stripped.startswith(b"{"):
        return "ndjson"
    return None


def format_of(path: str, format: str | None) -> str:
    """The format to read ``path`` as: ``format`` when given, else its suffix's, else the one
    its magic bytes say."""
    if format is not None:
        return format
    suffix = os.path.splitext(path)[1].lower()
    if suffix in FORMAT_SUFFIXES:
        return FORMAT_SUFFIXES[suffix]
    sniffed = _sniff(path)
    if sniffed is None:
        raise RelayValueError(
            f"{path}: cannot tell its format from the suffix or the first bytes; pass "
            f"format= (one of {', '.join(sorted(set(FORMAT_NAMES.values())))})"
        )
    return sniffed


def _is_data_file(path: str) -> bool:
    """Whether a file found in a directory is data: not hidden or a marker (``_SUCCESS``,
    ``.crc``), and of a known suffix or recognisable from its first bytes."""
    name = os.path.basename(path)
    if name.startswith((".", "_")):
        return False
    return os.path.splitext(name)[1].lower() in FORMAT_SUFFIXES or _sniff(path) is not None


def _hive_parts(root: str, path: str) -> list[tuple[str, str]]:
    """The ``key=value`` folders between ``root`` and ``path``, outermost first."""
    relative = os.path.relpath(os.path.dirname(path), root)
    parts = []
    for component in relative.split(os.sep):
        if "=" in component:
            key, value = component.split("=", 1)
            parts.append((unquote(key), unquote(value)))
    return parts


def resolve(source: Any, format: str | None, hive_partitioning: bool | None) -> Source:
    """The files of ``source``, sorted within a glob or directory, with formats and partitions."""
    if format is not None:
        if not isinstance(format, str) or format.lower() not in FORMAT_NAMES:
            raise RelayValueError(
                f"scan(): format must be one of {', '.join(repr(f) for f in FORMAT_NAMES)}, got "
                f"{format!r}"
            )
        format = FORMAT_NAMES[format.lower()]
    if hive_partitioning is not None and not isinstance(hive_partitioning, bool):
        raise RelayTypeError(
            "scan(): hive_partitioning must be a bool or None, got "
            f"{type(hive_partitioning).__name__}"
        )
    root: str | None = None
    glob_root: str | None = None
    single_file = False
    if isinstance(source, (list, tuple)):
        if not source:
            raise RelayValueError("scan(): the list of paths is empty")
        for item in source:
            if not isinstance(item, (str, os.PathLike)):
                raise RelayTypeError(
                    f"scan() takes paths (str or os.PathLike), got {type(item).__name__} in the "
                    "list"
                )
        paths = [os.fspath(item) for item in source]
        shown = ", ".join(paths[:2]) + (f", ... ({len(paths)} files)" if len(paths) > 2 else "")
        description = f"[{shown}]"
    elif isinstance(source, (str, os.PathLike)):
        text = os.fspath(source)
        description = text
        if os.path.isdir(text):
            root = text
            files: list[str] = []
            for folder, folders, names in os.walk(text):
                # Hidden and marker folders (`.git`, `_temporary`) hold no data of the table.
                folders[:] = [f for f in folders if "=" in f or not f.startswith((".", "_"))]
                files.extend(os.path.join(folder, name) for name in names)
            paths = sorted(p for p in files if _is_data_file(p))
            if not paths:
                raise NotArrowFileError(
                    f"{text}: is a directory that holds no data files (Arrow IPC, Parquet, CSV or "
                    "NDJSON)"
                )
        elif not os.path.exists(text) and glob.has_magic(text):
            paths = sorted(p for p in glob.glob(text, recursive=True) if os.path.isfile(p))
            # Partition folders are those below the pattern's first component with a wildcard.
            prefix = []
            for component in text.split(os.sep):
                if glob.has_magic(component):
                    break
                prefix.append(component)
            glob_root = os.sep.join(prefix) or os.curdir
            if not paths:
                raise RelayFileNotFoundError(f"{text}: no file matches the pattern")
        else:
            paths = [text]
            single_file = True
    else:
        raise RelayTypeError(
            "scan() takes a path, a glob, a directory or a list of paths, got "
            f"{type(source).__name__}"
        )
    for path in paths:
        if not os.path.exists(path):
            raise RelayFileNotFoundError(f"{path}: no such file")
    formats = [format_of(path, format) for path in paths]
    result = Source(description, paths, formats, [], [[] for _ in paths], single_file)
    use_hive = hive_partitioning if hive_partitioning is not None else root is not None
    if use_hive:
        base = (
            root
            or glob_root
            or os.path.commonpath([os.path.dirname(os.path.abspath(p)) for p in paths])
        )
        parts = [_hive_parts(base, path) for path in paths]
        keys = [key for key, _ in parts[0]]
        for path, found in zip(paths, parts, strict=True):
            if [key for key, _ in found] != keys:
                raise RelayValueError(
                    f"{path}: its partition folders are {[k for k, _ in found]}, but {paths[0]} "
                    f"has {keys}; every file must sit under the same partition keys"
                )
        if keys:
            values = [
                [None if value == HIVE_NULL else value for _, value in found] for found in parts
            ]
            types = []
            for index, key in enumerate(keys):
                present = [value for row in values if (value := row[index]) is not None]
                integer = bool(present) and all(
                    _INTEGER.fullmatch(v) and -(2**63) <= int(v) < 2**63 for v in present
                )
                types.append((key, "int64" if integer else "string"))
            result.partitions = types
            result.partition_values = values
    return result


def schema_pairs(schema: Any) -> list[tuple[str, str]] | None:
    """``schema=`` (a pyarrow schema or a dict name -> dtype) as ``[(name, dtype name)]``."""
    if schema is None:
        return None
    if isinstance(schema, dict):
        return [(str(name), dtype_name(dtype)) for name, dtype in schema.items()]
    if type(schema).__module__.startswith("pyarrow") and hasattr(schema, "names"):
        return [(f.name, dtype_name(f.type)) for f in schema]
    raise RelayTypeError(
        "scan(): schema must be a pyarrow.Schema or a dict name -> dtype, got "
        f"{type(schema).__name__}"
    )
