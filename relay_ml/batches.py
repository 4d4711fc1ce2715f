"""Shuffled, sharded batches of a frame's columns, gathered in Rust.

The framework adapters (``relay_ml.torch``, ``relay_ml.jax``, ``relay_ml.sklearn``) build on
this module; it also works on its own, with NumPy::

    import relay_ml as relay
    from relay_ml.batches import iter_batches

    frame = relay.scan("train.arrow").filter(relay.col("split") == "train")
    for batch in iter_batches(frame, 1024, columns=["x", "label"], shuffle="global", seed=0):
        ...  # batch["x"], batch["label"]: NumPy arrays of up to 1024 rows

Sources. A frame over Arrow IPC files (or in memory) is gathered *by position*: its plan runs
once into views of the mapped file, and any row can be read at any time. A frame over decoded
files (Parquet, CSV, NDJSON; one file, a glob or a folder) whose plan only filters and computes
columns is read *piece by piece* (Parquet row groups, CSV / NDJSON byte ranges): each piece is
decoded, filtered and computed when the stream reaches it, so memory holds about two shuffle
windows (``shuffle_buffer`` rows each, or one piece each without a shuffle) of the selected
columns plus the prefetched batches, whatever the size of the dataset. Any other plan (a sort, a
join, an aggregation) runs once and its result is gathered by position.

Orders. ``shuffle=None`` visits rows in file order; ``"global"`` visits a uniformly random
permutation of all rows, computed position by position from a keyed bijection (nothing is
materialized: the first batch comes at once at any size); ``"block"`` visits blocks of
``block_size`` consecutive rows (pieces, for a source read piece by piece) in a random order
and shuffles rows inside windows of ``shuffle_buffer`` rows, so a file larger than memory is
read in long sequential runs. ``"global"`` needs random access, so a source read piece by piece
refuses it (use ``"block"``, or ``frame.collect()`` first for data that fits in memory);
``shuffle=True`` picks ``"global"`` where rows can be read by position and ``"block"`` where
they cannot. An order depends only on ``(seed, epoch)``: the same on every machine and every
run, which is what makes resuming exact.

Sharding. With ``world_size`` ranks (and, in ``relay_ml.torch``, DataLoader workers), the
epoch's order is cut into contiguous shards: of rows, sizes differing by at most one row, for a
positional source; of pieces, sizes differing by at most one piece, for a source read piece by
piece. Together they visit every row exactly once.

Each batch is one gather per output straight into a fresh buffer (the only copy); the next
batches (``prefetch`` per gather thread, two threads on a machine with two cores or more) are
gathered by Rust threads while the caller works on the current one.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from relay_ml._relay import NativeBatchReader, epoch_positions
from relay_ml.errors import RelayTypeError, RelayValueError

if TYPE_CHECKING:
    from relay_ml.frame import Frame

__all__ = [
    "DEFAULT_BLOCK_SIZE",
    "DEFAULT_CACHE_BYTES",
    "DEFAULT_SHUFFLE_BUFFER",
    "BatchReader",
    "Output",
    "check_batch_arguments",
    "epoch_order",
    "feature_columns",
    "iter_batches",
]

#: Rows per block of a ``"block"`` shuffle: 256 KiB of each float32 column, long enough for
#: sequential reads and readahead to pay off on a cold file.
DEFAULT_BLOCK_SIZE = 65_536
#: Positions shuffled together in a ``"block"`` shuffle (16 blocks).
DEFAULT_SHUFFLE_BUFFER = 1_048_576
#: Bytes of decoded pieces a map-style reader of decoded files keeps per process.
DEFAULT_CACHE_BYTES = 512 * 1024 * 1024

_SHUFFLES = (None, "global", "block")


def _shuffle_name(shuffle: Any, streamed: bool = False) -> str:
    """The engine's name of a ``shuffle`` argument. ``True`` asks for the best shuffle the
    source allows: ``"global"``, or ``"block"`` for a source read piece by piece."""
    if shuffle is True:
        return "block" if streamed else "global"
    if shuffle is None or shuffle is False:
        return "none"
    if shuffle in _SHUFFLES:
        return str(shuffle)
    raise RelayValueError(
        f"shuffle must be None, 'global' or 'block' (or True/False), not {shuffle!r}"
    )


def _non_negative_int(name: str, value: Any, *, positive: bool = False) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise RelayTypeError(f"{name} must be an int, not {type(value).__name__}")
    if value < (1 if positive else 0):
        raise RelayValueError(
            f"{name} must be {'positive' if positive else 'non-negative'}, not {value}"
        )
    return int(value)


def check_batch_arguments(
    *,
    batch_size: Any,
    shuffle: Any,
    seed: Any,
    prefetch: Any,
    block_size: Any,
    shuffle_buffer: Any,
) -> None:
    """Raises RelayTypeError / RelayValueError naming the first bad argument of a batch
    iterator: checked when the iterator or dataset is made, not at its first batch."""
    _non_negative_int("batch_size", batch_size, positive=True)
    _shuffle_name(shuffle)
    _non_negative_int("seed", seed)
    _non_negative_int("prefetch", prefetch)
    _non_negative_int("block_size", block_size, positive=True)
    _non_negative_int("shuffle_buffer", shuffle_buffer, positive=True)


def feature_columns(
    columns: Sequence[str], features: Sequence[str] | str | None, target: str | None
) -> list[str] | None:
    """The feature columns of an ``(x, y)`` batch: ``features`` as given (one name or a list),
    or every column but ``target`` when only the target is named; None when neither is given
    (batches are then dicts by column)."""
    if target is not None and not isinstance(target, str):
        raise RelayTypeError(f"target must be a column name, not {type(target).__name__}")
    if features is None and target is None:
        return None
    if isinstance(features, str):
        features = [features]
    names = list(features) if features is not None else [c for c in columns if c != target]
    if not names:
        raise RelayValueError("features is empty: name at least one feature column")
    return names


def epoch_order(
    num_rows: int,
    shuffle: str | bool | None = None,
    seed: int = 0,
    epoch: int = 0,
    block_size: int = DEFAULT_BLOCK_SIZE,
    shuffle_buffer: int = DEFAULT_SHUFFLE_BUFFER,
) -> np.ndarray:
    """The row positions an epoch visits, in order (uint64): the order every batch iterator
    of relay_ml uses for the same arguments."""
    return epoch_positions(
        _non_negative_int("num_rows", num_rows),
        _shuffle_name(shuffle),
        _non_negative_int("seed", seed),
        _non_negative_int("epoch", epoch),
        _non_negative_int("block_size", block_size, positive=True),
        _non_negative_int("shuffle_buffer", shuffle_buffer, positive=True),
    )


@dataclass(frozen=True)
class Output:
    """One array of a batch: ``columns`` gathered side by side as ``dtype``.

    ``shape`` is the per-row shape: ``()`` for one scalar column, ``(D,)`` for one
    ``fixed_size_list<_, D>`` column or for stacked columns of ``D`` cells in all, and ``None``
    for a ragged list column (padded per batch; its lengths come as ``name + "_lengths"``).
    """

    name: str
    columns: tuple[str, ...]
    dtype: np.dtype
    fill_null: float | None
    shape: tuple[int, ...] | None

    def _spec(self, positions: dict[str, int]) -> tuple[list[int], str, float | None]:
        return ([positions[c] for c in self.columns], self.dtype.str, self.fill_null)


#: Allocates a batch array: (shape, NumPy dtype) -> (the object handed to the user, a writable
#: C-contiguous NumPy view of its memory).
Allocate = Callable[[tuple[int, ...], np.dtype], tuple[Any, np.ndarray]]


def _allocate_numpy(shape: tuple[int, ...], dtype: np.dtype) -> tuple[Any, np.ndarray]:
    array = np.empty(shape, dtype=dtype)
    return array, array


class BatchReader:
    """Columns of a frame, prepared for batches: the frame's plan runs here, or, over decoded
    files, is prepared to run piece by piece (see the module docs). Positions are rows of the
    frame, after its filters. ``cache_bytes`` bounds the decoded pieces that map-style access
    (``gather``) keeps, least recently used first out."""

    def __init__(
        self, frame: Frame, columns: Sequence[str], cache_bytes: int = DEFAULT_CACHE_BYTES
    ) -> None:
        self._columns = list(dict.fromkeys(columns))
        self._native = NativeBatchReader(
            frame._native, self._columns, _non_negative_int("cache_bytes", cache_bytes)
        )
        self._positions = {name: i for i, name in enumerate(self._columns)}
        self._info: dict[str, tuple[np.dtype, int | None]] = {
            name: (np.dtype(dtype), width) for name, dtype, width in self._native.column_info()
        }

    @property
    def streamed(self) -> bool:
        """Whether rows are read piece by piece (decoded files) rather than by position."""
        return bool(self._native.streamed)

    @property
    def known_num_rows(self) -> int | None:
        """Rows, when known without reading (not for a filtered source read piece by piece)."""
        rows = self._native.known_num_rows
        return None if rows is None else int(rows)

    @property
    def num_rows(self) -> int:
        """Rows; a filtered source read piece by piece decodes every piece once to count them."""
        rows = self._native.known_num_rows
        return int(self._native.count_rows() if rows is None else rows)

    def shard_rows(
        self,
        *,
        shuffle: str | bool | None = None,
        seed: int = 0,
        epoch: int = 0,
        shard: int = 0,
        shards: int = 1,
        block_size: int = DEFAULT_BLOCK_SIZE,
        shuffle_buffer: int = DEFAULT_SHUFFLE_BUFFER,
    ) -> int | None:
        """Rows shard ``shard`` of ``shards`` visits in the epoch, when known before reading."""
        rows = self._native.shard_rows(
            _shuffle_name(shuffle, self.streamed),
            seed,
            epoch,
            block_size,
            shuffle_buffer,
            shard,
            shards,
        )
        return None if rows is None else int(rows)

    def cache_info(self) -> dict[str, int] | None:
        """Hits, misses, bytes held and byte budget of the decoded-piece cache that map-style
        access uses (None for a positional source, or before the first gather)."""
        stats = self._native.cache_stats()
        if stats is None:
            return None
        hits, misses, held, budget = stats
        return {"hits": hits, "misses": misses, "bytes": held, "budget": budget}

    def column_dtype(self, name: str) -> np.dtype:
        """The dtype a column gathers to by default (dictionary columns: int64 codes)."""
        return self._info[name][0]

    def is_ragged(self, name: str) -> bool:
        return self._info[name][1] is None

    def output(
        self,
        name: str,
        columns: Sequence[str],
        dtype: Any = None,
        fill_null: float | None = None,
        stack: bool = False,
        promote: Callable[[list[np.dtype]], np.dtype] | None = None,
    ) -> Output:
        """Describes one batch array. ``stack`` keeps a (rows, 1) shape for a single scalar
        column; ``promote`` picks the dtype of several columns (default: NumPy's rules)."""
        columns = tuple(columns)
        if not columns:
            raise RelayValueError(f"output {name!r} needs at least one column")
        for column in columns:
            if column not in self._info:
                raise RelayValueError(
                    f"column {column!r} is not among the reader's columns {self._columns}"
                )
        if fill_null is not None and not isinstance(fill_null, (int, float, bool, np.number)):
            raise RelayTypeError(
                f"fill_null for {name!r} must be a number, not {type(fill_null).__name__}"
            )
        dtypes = [self._info[c][0] for c in columns]
        if dtype is None:
            dtype = (
                dtypes[0]
                if len(set(dtypes)) == 1
                else (promote or (lambda d: np.result_type(*d)))(dtypes)
            )
        dtype = np.dtype(dtype)
        fill = None if fill_null is None else float(fill_null)
        if len(columns) == 1 and self.is_ragged(columns[0]):
            return Output(name, columns, dtype, fill, None)
        ragged = [c for c in columns if self.is_ragged(c)]
        if ragged:
            raise RelayTypeError(
                f"column {ragged[0]!r} holds lists of varying length: it is padded per batch and "
                f"cannot be stacked with other columns into {name!r}"
            )
        width = sum(int(self._info[c][1] or 0) for c in columns)
        single_scalar = len(columns) == 1 and self._info[columns[0]][1] == 1
        shape = () if single_scalar and not stack else (width,)
        return Output(name, columns, dtype, fill, shape)

    def _specs(self, outputs: Sequence[Output]) -> list[tuple[list[int], str, float | None]]:
        return [output._spec(self._positions) for output in outputs]

    def gather(
        self, outputs: Sequence[Output], positions: Any, allocate: Allocate = _allocate_numpy
    ) -> dict[str, Any]:
        """The rows at ``positions`` (in that order) as ``{output name: array}``, gathered in
        parallel with the GIL released."""
        positions = np.ascontiguousarray(positions, dtype=np.int64).reshape(-1)
        rows = len(positions)
        users, buffers = self._allocate(outputs, rows, allocate)
        ragged = self._native.gather(self._specs(outputs), positions, buffers)
        return _assemble(outputs, users, ragged, rows, rows)

    def _allocate(
        self, outputs: Sequence[Output], rows: int, allocate: Allocate
    ) -> tuple[list[Any], list[np.ndarray | None]]:
        users: list[Any] = []
        buffers: list[np.ndarray | None] = []
        for output in outputs:
            if output.shape is None:
                users.append(None)
                buffers.append(None)
            else:
                user, buffer = allocate((rows, *output.shape), output.dtype)
                users.append(user)
                buffers.append(buffer)
        return users, buffers

    def iter_shard(
        self,
        outputs: Sequence[Output],
        batch_size: int,
        *,
        shuffle: str | bool | None = None,
        seed: int = 0,
        epoch: int = 0,
        shard: int = 0,
        shards: int = 1,
        drop_last: bool = False,
        start_batch: int = 0,
        prefetch: int = 2,
        block_size: int = DEFAULT_BLOCK_SIZE,
        shuffle_buffer: int = DEFAULT_SHUFFLE_BUFFER,
        allocate: Allocate | None = None,
    ) -> ShardIterator:
        """Batches of shard ``shard`` of ``shards`` of the epoch, from batch ``start_batch``.
        Without ``allocate``, the stream allocates NumPy arrays itself."""
        return ShardIterator(
            self,
            outputs,
            batch_size=_non_negative_int("batch_size", batch_size, positive=True),
            shuffle=_shuffle_name(shuffle, self.streamed),
            seed=_non_negative_int("seed", seed),
            epoch=_non_negative_int("epoch", epoch),
            shard=_non_negative_int("shard", shard),
            shards=_non_negative_int("shards", shards, positive=True),
            drop_last=bool(drop_last),
            start_batch=_non_negative_int("start_batch", start_batch),
            prefetch=_non_negative_int("prefetch", prefetch, positive=True),
            block_size=_non_negative_int("block_size", block_size, positive=True),
            shuffle_buffer=_non_negative_int("shuffle_buffer", shuffle_buffer, positive=True),
            allocate=allocate,
        )


def _assemble(
    outputs: Sequence[Output], users: list[Any], ragged: list[Any], rows: int, allocated: int
) -> dict[str, Any]:
    batch: dict[str, Any] = {}
    for output, user, pair in zip(outputs, users, ragged, strict=True):
        if output.shape is None:
            padded, lengths = pair
            batch[output.name] = padded
            batch[output.name + "_lengths"] = lengths
        else:
            batch[output.name] = user if rows == allocated else user[:rows]
    return batch


class ShardIterator:
    """Batches of one shard of one epoch, gathered ahead by a Rust thread.

    ``batches_done`` counts the batches returned so far (including skipped ones), which is
    what a resumed iterator passes as ``start_batch``. ``num_batches`` is None when only
    reading tells (a filtered source read piece by piece); ``len()`` then raises TypeError.
    """

    def __init__(
        self,
        reader: BatchReader,
        outputs: Sequence[Output],
        *,
        batch_size: int,
        shuffle: str,
        seed: int,
        epoch: int,
        shard: int,
        shards: int,
        drop_last: bool,
        start_batch: int,
        prefetch: int,
        block_size: int,
        shuffle_buffer: int,
        allocate: Allocate | None,
    ) -> None:
        if shard >= shards:
            raise RelayValueError(f"shard {shard} is out of range for {shards} shards")
        self._outputs = list(outputs)
        self._batch_size = batch_size
        self._allocate = allocate
        self._reader = reader
        # Without an allocator the stream makes its own NumPy buffers and keeps them in flight:
        # one native call per batch.
        owned = allocate is None
        self._stream = reader._native.stream(
            reader._specs(outputs),
            shuffle=shuffle,
            seed=seed,
            epoch=epoch,
            block_rows=block_size,
            buffer_rows=shuffle_buffer,
            shard=shard,
            shards=shards,
            batch_size=batch_size,
            drop_last=drop_last,
            start_batch=start_batch,
            row_shapes=[None if o.shape is None else list(o.shape) for o in outputs]
            if owned
            else None,
            depth=prefetch * 2,
        )
        self._owned = owned
        num_batches = self._stream.num_batches
        self.num_batches: int | None = None if num_batches is None else int(num_batches)
        self.batches_done = (
            start_batch if self.num_batches is None else min(start_batch, self.num_batches)
        )
        # Users' objects of the buffer sets submitted, oldest first.
        self._in_flight: deque[list[Any]] = deque()
        # `prefetch` batches ahead per gather thread, like DataLoader's prefetch_factor per
        # worker: a thread that finishes a batch finds the next one's buffers waiting.
        # (A stream without producer threads fills each batch when asked for it: one set.)
        self._depth = max(1, prefetch * int(self._stream.producers))
        ahead = (
            self._depth
            if self.num_batches is None
            else min(self._depth, self.num_batches - self.batches_done)
        )
        for _ in range(0 if owned else ahead):
            self._submit()

    def _submit(self) -> None:
        assert self._allocate is not None
        users, buffers = self._reader._allocate(self._outputs, self._batch_size, self._allocate)
        self._stream.submit(buffers)
        self._in_flight.append(users)

    def __len__(self) -> int:
        if self.num_batches is None:
            raise TypeError(
                "the number of batches is known only by reading: the source is filtered and read "
                "piece by piece"
            )
        return self.num_batches - self.batches_done

    def __iter__(self) -> ShardIterator:
        return self

    def __next__(self) -> dict[str, Any]:
        item = self._stream.next()
        if item is None:
            self.close()
            raise StopIteration
        rows, buffers, ragged = item
        self.batches_done += 1
        if self._owned:
            return _assemble(self._outputs, buffers, ragged, rows, self._batch_size)
        users = self._in_flight.popleft()
        # Keep the sets in flight: the producers gather them while this batch is used.
        if self.num_batches is None or self.batches_done + len(self._in_flight) < self.num_batches:
            self._submit()
        return _assemble(self._outputs, users, ragged, rows, self._batch_size)

    def close(self) -> None:
        """Stops the producer thread (also done when the iterator is garbage collected)."""
        self._stream.close()
        self._in_flight.clear()


def iter_batches(
    frame: Frame,
    batch_size: int,
    *,
    features: Sequence[str] | str | None = None,
    target: str | None = None,
    dtype: Any = None,
    columns: Sequence[str] | None = None,
    shuffle: str | bool | None = None,
    seed: int = 0,
    epoch: int = 0,
    drop_last: bool = False,
    rank: int = 0,
    world_size: int = 1,
    fill_null: float | dict[str, float] | None = None,
    prefetch: int = 2,
    block_size: int = DEFAULT_BLOCK_SIZE,
    shuffle_buffer: int = DEFAULT_SHUFFLE_BUFFER,
) -> Iterator[Any]:
    """Batches of ``frame`` as fresh NumPy arrays: the batches of ``relay_ml.torch.loader``
    for code without torch.

    With ``features`` / ``target``, each batch is ``(x, y)`` (or ``x`` without a target):
    ``x`` the features side by side, ``(B, k)``, as ``dtype`` (default: the features' common
    NumPy type), ``y`` the target column. Otherwise each batch is a dict by column of
    ``columns`` (all by default); a ragged list column ``c`` gives a padded ``c`` and its
    ``c_lengths``.

    Rank ``rank`` of ``world_size`` visits its shard of the epoch; all ranks together visit
    every row once. Nulls raise an error naming the column unless ``fill_null`` (a number, or
    a dict by column) replaces them. Arguments are checked here, not at the first batch.
    """
    check_batch_arguments(
        batch_size=batch_size,
        shuffle=shuffle,
        seed=seed,
        prefetch=prefetch,
        block_size=block_size,
        shuffle_buffer=shuffle_buffer,
    )
    x_columns = feature_columns(frame.columns, features, target)
    if x_columns is not None and columns is not None:
        raise RelayValueError("give columns= (dict batches) or features= / target=, not both")
    if x_columns is None:
        names = list(frame.columns if columns is None else columns)
    else:
        names = x_columns + ([target] if target is not None else [])
    reader = BatchReader(frame, names)
    fills = fill_null if isinstance(fill_null, dict) else dict.fromkeys(names, fill_null)
    if x_columns is None:
        outputs = [reader.output(name, [name], fill_null=fills.get(name)) for name in names]
    else:
        x_fills = {fills.get(c) for c in x_columns}
        if len(x_fills) > 1:
            raise RelayValueError("fill_null must be the same for all features (they form one x)")
        x_dtype = None if dtype is None else np.dtype(dtype)
        outputs = [reader.output("x", x_columns, x_dtype, x_fills.pop(), stack=True)]
        if target is not None:
            outputs.append(reader.output("y", [target], fill_null=fills.get(target)))
    batches = reader.iter_shard(
        outputs,
        batch_size,
        shuffle=shuffle,
        seed=seed,
        epoch=epoch,
        shard=rank,
        shards=world_size,
        drop_last=drop_last,
        prefetch=prefetch,
        block_size=block_size,
        shuffle_buffer=shuffle_buffer,
    )
    if x_columns is None:
        return batches
    if target is None:
        return (batch["x"] for batch in batches)
    return ((batch["x"], batch["y"]) for batch in batches)
