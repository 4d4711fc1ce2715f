"""Type stubs of the native module. The documented API is relay_ml.Frame / relay_ml.Column."""

import sys
from typing import Any, final

import numpy as np
from typing_extensions import disjoint_base

__all__ = [
    "BufferOwner",
    "ColumnBase",
    "ImportedArray",
    "NativeBatchReader",
    "NativeBatchStream",
    "NativeExpr",
    "NativeFrame",
    "NativeIpcWriter",
    "__version__",
    "_import_arrow",
    "_set_optimizer_enabled",
    "append_ipc",
    "epoch_positions",
    "inspect_file",
    "repair_ipc",
    "write_ipc",
    "write_parquet",
]

__version__: str

# Native types: only ColumnBase may be subclassed (by relay_ml.Column), and it has a layout
# of its own that no second base can share (`disjoint_base`).

@final
class BufferOwner:
    """Keeps an exported buffer (and the mapping behind it) alive; the base of relay's NumPy
    arrays."""

@final
class NativeFrame:
    @staticmethod
    def open(
        source: str | list[str],
        format: str | None = None,
        hive_partitioning: bool | None = None,
        schema: list[tuple[str, str]] | None = None,
        has_header: bool | None = None,
        separator: str | None = None,
        memory_map: bool = True,
    ) -> NativeFrame:
        """What `scan` reads (a path, glob, directory or list of paths), opened as one mapped
        Arrow IPC file or as files read piece by piece; `schema` `[(name, dtype)]` replaces
        CSV / NDJSON inference."""
    @staticmethod
    def memory(num_rows: int, origin: str) -> NativeFrame:
        """`num_rows` rows and no columns in memory (a MEMORY leaf), for `attach` to add
        columns to; `origin` names the call that made the frame (``"from_numpy"``, ...)."""
    def _serialize(self) -> tuple[str, str, bytes]:
        """`(origin kind, origin, plan)`: the plan as bytes, and "file" / "memory" / "dataset"
        with the path, the call that made the frame, or the source: what pickling sends."""
    @staticmethod
    def _deserialize(kind: str, origin: str, plan: bytes) -> NativeFrame:
        """The frame `_serialize` described, its files opened again."""
    @property
    def path(self) -> str | None:
        """The mapped file; None for a frame in memory."""
    @property
    def origin(self) -> str:
        """The mapped file's path, or the call that made an in-memory frame."""
    @property
    def schema(self) -> list[tuple[str, str]]: ...
    @property
    def columns(self) -> list[str]: ...
    def num_rows(self) -> int: ...
    def select(self, exprs: list[NativeExpr]) -> NativeFrame: ...
    def filter(self, predicate: NativeExpr) -> NativeFrame: ...
    def with_columns(self, columns: list[tuple[str, NativeExpr]]) -> NativeFrame: ...
    def slice(self, offset: int, length: int | None = None) -> NativeFrame: ...
    def take(self, indices: np.ndarray) -> NativeFrame:
        """Rows at `indices` (contiguous int64; negative from the end), in order: a selection."""
    def sample(self, n: int, seed: int, replace: bool) -> NativeFrame:
        """`n` rows drawn with relay's seeded generator, ascending."""
    def collect(self) -> NativeFrame:
        """The plan run once, its result held in memory (a MEMORY leaf)."""
    def sort(self, keys: list[tuple[NativeExpr, bool, bool]], k: int | None = None) -> NativeFrame:
        """Rows ordered by `keys` `[(expr, descending, nulls_last)]`, stably; a top-k of `k`
        rows when given. A selection of the input's rows."""
    def unique(self, subset: list[str] | None, keep: str) -> NativeFrame:
        """One row per distinct value of `subset` (all columns when None); `keep` is
        "first", "any", "last" or "none"."""
    def aggregate(
        self,
        keys: list[NativeExpr],
        aggs: list[tuple[str, NativeExpr, str | None, tuple[float, str] | None]],
    ) -> NativeFrame:
        """Groups by `keys`, aggregated by `aggs` `[(function, input, output name,
        (q, interpolation) of a quantile)]`."""
    def join(
        self,
        other: NativeFrame,
        left_on: list[NativeExpr],
        right_on: list[NativeExpr],
        how: str,
        suffix: str,
    ) -> NativeFrame:
        """Rows of both frames with equal keys, kept as `how` says (a hash join); right columns
        whose names clash get `suffix`."""
    @staticmethod
    def concat(frames: list[NativeFrame]) -> NativeFrame:
        """The frames' rows one after the other, collected into memory; same schema required."""
    def view(self, columns: list[tuple[str, str]]) -> NativeFrame:
        """Columns `[(name, dtype name)]` with their bits read as a type of the same width."""
    def attach(self, columns: list[tuple[str, Any, str | None]]) -> NativeFrame:
        """External arrays `[(name, array, why the caller copied it)]` as columns, referenced
        where their memory has Arrow's layout; collects the frame first if it is not row-aligned."""
    def _owns_column(self, column: ColumnBase) -> bool: ...
    def _contains_filter(self) -> bool: ...
    def _slices_rerun(self) -> bool: ...
    def _preview(self, each_end: int) -> tuple[int, NativeFrame]:
        """`(rows, shown)`: the number of rows and, in memory, the first and the last
        `each_end` rows (every row when there are at most twice that many)."""
    def column(self, name: str) -> ColumnBase: ...
    def _matrix(self, order: str) -> np.ndarray | None: ...
    def explain(self) -> str: ...
    def _profile(self) -> list[tuple[str, int, int, int, int, float, int, int, int, int]]: ...
    def __arrow_c_schema__(self) -> object: ...
    def __arrow_c_stream__(self, requested_schema: object | None = None) -> object: ...

@final
class NativeExpr:
    @staticmethod
    def col(name: str) -> NativeExpr: ...
    @staticmethod
    def lit(value: Any) -> NativeExpr: ...
    @staticmethod
    def case(
        branches: list[tuple[NativeExpr, NativeExpr]], otherwise: NativeExpr
    ) -> NativeExpr: ...
    def binary(self, op: str, right: NativeExpr) -> NativeExpr: ...
    def unary(self, op: str) -> NativeExpr: ...
    def string_match(self, kind: str, pattern: str) -> NativeExpr: ...
    def is_in(self, values: list[Any]) -> NativeExpr: ...
    def fill_null(self, value: NativeExpr) -> NativeExpr: ...
    def cast(self, dtype: str) -> NativeExpr: ...
    def alias(self, name: str) -> NativeExpr: ...
    @property
    def output_name(self) -> str: ...

@disjoint_base
class ColumnBase:
    def __new__(cls, source: ColumnBase) -> ColumnBase: ...
    @property
    def name(self) -> str: ...
    @property
    def dtype(self) -> str: ...
    @property
    def path(self) -> str | None: ...
    @property
    def null_count(self) -> int: ...
    @property
    def copy_reason(self) -> str | None: ...
    def __len__(self) -> int: ...
    def _slice(self, offset: int, length: int | None) -> ColumnBase: ...
    def _to_numpy(self, zero_copy: bool | None = None) -> np.ndarray: ...
    def _codes(self) -> np.ndarray: ...
    def to_pylist(self) -> list[Any]: ...
    # The buffer protocol is a C slot; Python names it `__buffer__` from 3.12 (PEP 688).
    if sys.version_info >= (3, 12):
        def __buffer__(self, flags: int) -> memoryview: ...
    def __dlpack__(
        self,
        *,
        stream: Any = None,
        max_version: tuple[int, int] | None = None,
        dl_device: tuple[int, int] | None = None,
        copy: bool | None = None,
    ) -> object: ...
    def __dlpack_device__(self) -> tuple[int, int]: ...
    def __arrow_c_schema__(self) -> object: ...
    def __arrow_c_array__(
        self, requested_schema: object | None = None
    ) -> tuple[object, object]: ...
    def _arrow_chunks(self) -> list[tuple[object, object]]: ...

def inspect_file(path: str) -> dict[str, Any]: ...
def write_ipc(
    frame: NativeFrame, path: str, batch_size: int | None = None, compression: str | None = None
) -> dict[str, int]: ...
def write_parquet(
    frame: NativeFrame,
    path: str,
    compression: str = ...,  # "zstd"; the extension's signature does not show the value
    row_group_size: int | None = None,
    compression_level: int | None = None,
) -> dict[str, int]: ...
def append_ipc(path: str, frame: NativeFrame) -> dict[str, int]: ...
def repair_ipc(path: str) -> dict[str, int]: ...

@final
class NativeIpcWriter:
    def __new__(cls, path: str) -> NativeIpcWriter: ...
    def write(self, frame: NativeFrame) -> None: ...
    def finish(self, schema_of: NativeFrame) -> dict[str, int]: ...
    def abort(self) -> None: ...

def _set_optimizer_enabled(enabled: bool) -> None: ...

# -- in-memory frames (import.rs) ----------------------------------------------------------

@final
class ImportedArray:
    """One column imported through the Arrow PyCapsule interface; exports the same buffers
    again through ``__arrow_c_array__`` and pickles as a ``pyarrow.Array``."""
    @property
    def name(self) -> str: ...
    def __len__(self) -> int: ...
    def __arrow_c_array__(
        self, requested_schema: object | None = None
    ) -> tuple[object, object]: ...

def _import_arrow(value: Any) -> tuple[list[ImportedArray], int, list[str | None]]:
    """The columns of an Arrow stream or struct array, its row count, and per column why it
    was copied (several chunks concatenated) or None."""

# -- training batches (loader.rs) --------------------------------------------------------------

#: (column positions in the reader, NumPy dtype string, fill value for nulls)
_OutputSpec = tuple[list[int], str, float | None]

@final
class NativeBatchReader:
    """Columns of a frame prepared for batches: executed once (read by position), or prepared
    to run piece by piece over decoded files; `cache_bytes` bounds the decoded pieces that
    map-style `gather` keeps."""
    def __new__(
        cls, frame: NativeFrame, columns: list[str], cache_bytes: int
    ) -> NativeBatchReader: ...
    @property
    def known_num_rows(self) -> int | None: ...
    @property
    def streamed(self) -> bool: ...
    def count_rows(self) -> int: ...
    def shard_rows(
        self,
        shuffle: str,
        seed: int,
        epoch: int,
        block_rows: int,
        buffer_rows: int,
        shard: int,
        shards: int,
    ) -> int | None: ...
    def cache_stats(self) -> tuple[int, int, int, int] | None:
        """(hits, misses, bytes held, budget) of the decoded-piece cache, or None."""
    def column_info(self) -> list[tuple[str, str, int | None]]:
        """(name, natural NumPy dtype string, cells per row or None for ragged) per column."""
    def gather(
        self, outputs: list[_OutputSpec], positions: np.ndarray, buffers: list[np.ndarray | None]
    ) -> list[tuple[np.ndarray, np.ndarray] | None]: ...
    def stream(
        self,
        outputs: list[_OutputSpec],
        *,
        shuffle: str,
        seed: int,
        epoch: int,
        block_rows: int,
        buffer_rows: int,
        shard: int,
        shards: int,
        batch_size: int,
        drop_last: bool,
        start_batch: int,
        row_shapes: list[list[int] | None] | None = None,
        depth: int = 0,
    ) -> NativeBatchStream: ...

@final
class NativeBatchStream:
    """Batches of one shard of one epoch, filled ahead into submitted buffers (or, with
    `row_shapes`, into NumPy arrays the stream allocates itself), returned in order."""
    @property
    def num_batches(self) -> int | None: ...
    @property
    def producers(self) -> int: ...
    def submit(self, buffers: list[np.ndarray | None]) -> None: ...
    def next(self) -> tuple[int, list[Any], list[tuple[np.ndarray, np.ndarray] | None]] | None: ...
    def close(self) -> None: ...

def epoch_positions(
    num_rows: int, shuffle: str, seed: int, epoch: int, block_rows: int, buffer_rows: int
) -> np.ndarray:
    """The visiting order of an epoch (uint64)."""
