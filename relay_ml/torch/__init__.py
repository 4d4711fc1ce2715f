"""PyTorch integration: datasets and a loader over relay frames.

Three ways to feed a training loop, all gathering batches in Rust with the GIL released, in
one copy from the memory-mapped file into the tensor's memory:

- :func:`loader` (recommended): batches gathered ahead by a Rust thread, in the training
  process: no worker processes, optional pinned memory and device transfer::

      for x, y in relay_ml.torch.loader(frame, 1024, features=["f0", "f1"], target="label",
                                        shuffle="global", seed=0):
          ...

- :class:`RelayIterableDataset`: ready batches for ``torch.utils.data.DataLoader(ds,
  batch_size=None, num_workers=...)``, sharded across workers and ranks, resumable through
  ``state_dict()`` (works with torchdata's ``StatefulDataLoader``).
- :class:`RelayDataset`: map-style, for samplers and code that expects ``ds[i]``;
  ``DataLoader(ds, batch_size=B, shuffle=True)`` fetches each batch with one ``__getitems__``
  gather, and the default collate passes it through.

Outputs: a dict of tensors by column, or ``(x, y)`` / ``x`` when ``features`` / ``target`` are
given (``features`` stacked into one ``(B, k)`` tensor; a ``fixed_size_list<_, D>`` feature
contributes ``D`` columns). Dictionary columns give int64 codes, booleans ``torch.bool``; a
``list<_>`` column (dict output only) is padded to the batch's longest row, with its lengths as
``name + "_lengths"``, or becomes a jagged nested tensor with ``ragged="nested"``. A null raises
an error naming the column unless ``fill_null`` gives a value (a number, or a dict by column).

Epochs: shuffled orders depend only on ``(seed, epoch)``. Datasets follow
``DistributedSampler``: call ``set_epoch(e)`` before each epoch. :func:`loader` advances its
epoch by itself at the end of each full pass.

Processes: datasets pickle as (file path, plan), never as data. Worker processes (fork, spawn
or forkserver) reopen the file and build their own gather threads on first use.
"""

from __future__ import annotations

import math
import os
import pickle
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from relay_ml._optional import needs

with needs("relay_ml.torch"):
    import torch
    from torch.utils.data import Dataset, IterableDataset, default_collate, get_worker_info
    from torch.utils.data._utils.collate import default_collate_fn_map

from relay_ml.batches import (
    DEFAULT_BLOCK_SIZE,
    DEFAULT_CACHE_BYTES,
    DEFAULT_SHUFFLE_BUFFER,
    BatchReader,
    Output,
    check_batch_arguments,
    feature_columns,
)
from relay_ml.errors import RelayTypeError, RelayValueError
from relay_ml.frame import Frame

__all__ = ["RelayDataset", "RelayIterableDataset", "RelayLoader", "loader"]


def _numpy_dtype(dtype: torch.dtype, what: str) -> np.dtype:
    try:
        return torch.empty(0, dtype=dtype).numpy().dtype
    except (TypeError, RuntimeError):
        raise RelayTypeError(
            f"{what}: dtype {dtype} cannot be gathered directly; gather as torch.float32 and "
            f"convert with .to({dtype})"
        ) from None


def _torch_dtype(dtype: np.dtype) -> torch.dtype:
    return torch.from_numpy(np.empty(0, dtype=dtype)).dtype


class _Layout:
    """What a dataset's batches hold: reader columns, outputs, and how to present them.

    Built lazily in each process (a DataLoader worker rebuilds it after fork or unpickling),
    since the reader holds the process's mapping and executed view.
    """

    def __init__(
        self,
        frame: Frame,
        features: Sequence[str] | None,
        target: str | None,
        dtype: Any,
        fill_null: Any,
        ragged: str,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
    ) -> None:
        if ragged not in ("pad", "nested"):
            raise RelayValueError(f"ragged must be 'pad' or 'nested', not {ragged!r}")
        self.ragged = ragged
        features = feature_columns(frame.columns, features, target)
        self.xy = features is not None
        if features is not None:
            columns = features + ([target] if target is not None else [])
        else:
            columns = list(frame.columns)
        self.reader = BatchReader(frame, columns, cache_bytes)
        fills = fill_null if isinstance(fill_null, Mapping) else dict.fromkeys(columns, fill_null)
        unknown = [c for c in (fills if isinstance(fill_null, Mapping) else {}) if c not in columns]
        overrides: dict[str, torch.dtype] = {}
        if isinstance(dtype, Mapping):
            overrides = dict(dtype)
            unknown += [c for c in overrides if c not in columns]
        elif dtype is not None and not isinstance(dtype, torch.dtype):
            raise RelayTypeError(
                "dtype must be a torch.dtype or a dict of them by column, not "
                f"{type(dtype).__name__}"
            )
        if unknown:
            raise RelayValueError(
                f"column {unknown[0]!r} in dtype / fill_null is not among the columns {columns}"
            )

        def column_dtype(name: str) -> torch.dtype:
            if name in overrides:
                return overrides[name]
            return _torch_dtype(self.reader.column_dtype(name))

        self.outputs: list[Output] = []
        if self.xy:
            assert features is not None
            if isinstance(dtype, torch.dtype):
                x_dtype = dtype
            else:
                x_dtype = column_dtype(features[0])
                for name in features[1:]:
                    x_dtype = torch.promote_types(x_dtype, column_dtype(name))
            x_fills = {fills.get(c) for c in features}
            if len(x_fills) > 1:
                raise RelayValueError(
                    "fill_null must be the same for all features (they form one tensor)"
                )
            self.outputs.append(
                self.reader.output(
                    "x", features, _numpy_dtype(x_dtype, "features"), x_fills.pop(), stack=True
                )
            )
            if target is not None:
                if self.reader.is_ragged(target):
                    raise RelayTypeError(
                        f"target {target!r} holds lists of varying length; use the dict output "
                        "instead"
                    )
                self.outputs.append(
                    self.reader.output(
                        "y", [target], _numpy_dtype(column_dtype(target), target), fills.get(target)
                    )
                )
            self.has_target = target is not None
        else:
            for name in columns:
                self.outputs.append(
                    self.reader.output(
                        name, [name], _numpy_dtype(column_dtype(name), name), fills.get(name)
                    )
                )

    def present(self, batch: dict[str, Any]) -> Any:
        """Gathered arrays (tensors, or NumPy arrays of the stream's own) as the user sees them."""
        if self.xy:
            x = _tensor(batch["x"])
            return (x, _tensor(batch["y"])) if self.has_target else x
        result: dict[str, Any] = {}
        for output in self.outputs:
            value = batch[output.name]
            if output.shape is None:
                padded = torch.from_numpy(value)
                lengths = torch.from_numpy(batch[output.name + "_lengths"])
                if self.ragged == "nested":
                    result[output.name] = torch.nested.narrow(
                        padded, dim=1, start=0, length=lengths, layout=torch.jagged
                    )
                else:
                    result[output.name] = padded
                    result[output.name + "_lengths"] = lengths
            else:
                result[output.name] = _tensor(value)
        return result

    def stream_allocate(
        self, pin_memory: bool = False
    ) -> Callable[[tuple[int, ...], np.dtype], tuple[Any, np.ndarray]] | None:
        """The allocation of a stream's batches: None (the stream allocates NumPy arrays itself,
        turned into tensors without a copy) unless they must be pinned or shared."""
        if pin_memory or get_worker_info() is not None:
            return self.allocate(pin_memory)
        return None

    def allocate(
        self, pin_memory: bool = False
    ) -> Callable[[tuple[int, ...], np.dtype], tuple[Any, np.ndarray]]:
        """Allocation of batch tensors: pinned for a device copy, in shared memory inside a
        DataLoader worker (so sending the batch to the main process does not copy it again),
        plain otherwise."""
        in_worker = get_worker_info() is not None
        torch_dtypes = {o.dtype: _torch_dtype(o.dtype) for o in self.outputs}

        def allocate(shape: tuple[int, ...], dtype: np.dtype) -> tuple[Any, np.ndarray]:
            torch_dtype = torch_dtypes[dtype]
            if in_worker:
                # torch's own allocator of shared-memory storage, which has no annotations.
                storage = torch.UntypedStorage._new_shared(  # type: ignore[no-untyped-call]
                    math.prod(shape) * dtype.itemsize
                )
                # set_(storage, offset, size) takes the contiguous strides; torch's stub only
                # lists the form with explicit strides.
                tensor = torch.empty(0, dtype=torch_dtype).set_(  # type: ignore[call-overload]
                    storage, 0, shape
                )
            else:
                tensor = torch.empty(shape, dtype=torch_dtype, pin_memory=pin_memory)
            return tensor, tensor.numpy()

        return allocate


def _tensor(value: Any) -> torch.Tensor:
    return value if isinstance(value, torch.Tensor) else torch.from_numpy(value)


class _FrameHolder:
    """A frame plus the per-process layout built from it (rebuilt after fork or unpickling)."""

    def __init__(self, frame: Frame, layout_args: tuple[Any, ...]) -> None:
        if not isinstance(frame, Frame):
            raise RelayTypeError(f"expected a relay_ml.Frame, not {type(frame).__name__}")
        self._frame = frame
        self._layout_args = layout_args
        self._pid = os.getpid()
        self._layout: _Layout | None = _Layout(frame, *layout_args)  # validates arguments now

    @property
    def layout(self) -> _Layout:
        if self._pid != os.getpid():
            # A forked child: reopen the file through the frame's pickle (path + plan) rather
            # than use state built by the parent process.
            self._frame = pickle.loads(pickle.dumps(self._frame))
            self._layout = None
            self._pid = os.getpid()
        if self._layout is None:
            self._layout = _Layout(self._frame, *self._layout_args)
        return self._layout

    def __getstate__(self) -> dict[str, Any]:
        return {"frame": self._frame, "layout_args": self._layout_args}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._frame = state["frame"]
        self._layout_args = state["layout_args"]
        self._pid = os.getpid()
        self._layout = None


class _BatchRow:
    """Row ``index`` of a gathered batch, as the default collate function sees it."""

    __slots__ = ("batch", "index")

    def __init__(self, batch: _GatheredBatch, index: int) -> None:
        self.batch = batch
        self.index = index

    def sample(self) -> Any:
        return _index_output(self.batch.output, self.index)


def _index_output(output: Any, index: int) -> Any:
    if isinstance(output, tuple):
        return tuple(part[index] for part in output)
    if isinstance(output, dict):
        return {key: value[index] for key, value in output.items()}
    return output[index]


class _GatheredBatch(Sequence[Any]):
    """What ``RelayDataset.__getitems__`` returns: a sequence of rows (as the DataLoader
    contract asks) whose collation is the already-gathered batch, not a stack of rows."""

    def __init__(self, output: Any) -> None:
        self.output = output
        first = output[0] if isinstance(output, tuple) else output
        if isinstance(first, dict):
            first = next(iter(first.values()))
        self._len = len(first)

    def __len__(self) -> int:
        return self._len

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return [_BatchRow(self, i) for i in range(*index.indices(self._len))]
        if not -self._len <= index < self._len:
            raise IndexError(f"row {index} of a batch of {self._len}")
        return _BatchRow(self, index % self._len)


def _collate_rows(batch: Sequence[_BatchRow], *, collate_fn_map: Any = None) -> Any:
    if isinstance(batch, _GatheredBatch):
        return batch.output
    # Rows picked out of gathered batches and regrouped: collate them as samples.
    return default_collate([row.sample() for row in batch])


# torch documents extending the default collate through this map.
default_collate_fn_map[_BatchRow] = _collate_rows


class RelayDataset(Dataset[Any]):
    """A map-style dataset over a frame's rows (after its filters).

    ``ds[i]`` is one sample; ``ds.__getitems__(indices)`` gathers a whole batch in parallel
    with the GIL released, which ``torch.utils.data.DataLoader`` calls for each batch. The
    output is a dict of tensors by column, or ``(x, y)`` (or ``x``) when ``features`` /
    ``target`` are given; ``transform`` is applied to each sample or gathered batch.

    Over decoded files (Parquet, CSV, NDJSON) rows are read through a per-process cache of
    decoded pieces (row groups, byte ranges) of at most ``cache_bytes`` bytes, least recently
    used first out; the dataset is never decoded whole. A filtered source (or CSV / NDJSON,
    whose row counts the files do not store) decodes each piece once when the dataset is made,
    to count its rows. ``profile()`` reports the cache's hits and misses. Random indices over a
    dataset much larger than the cache decode a piece for most samples: prefer
    :class:`RelayIterableDataset` with ``shuffle="block"`` there.
    """

    def __init__(
        self,
        frame: Frame,
        features: Sequence[str] | None = None,
        target: str | None = None,
        dtype: Any = None,
        transform: Callable[[Any], Any] | None = None,
        *,
        fill_null: Any = None,
        ragged: str = "pad",
        cache_bytes: int = DEFAULT_CACHE_BYTES,
    ) -> None:
        self._holder = _FrameHolder(
            frame, (features, target, dtype, fill_null, ragged, cache_bytes)
        )
        self.transform = transform
        self._len = self._holder.layout.reader.num_rows

    @property
    def frame(self) -> Frame:
        return self._holder._frame

    def __len__(self) -> int:
        return self._len

    def profile(self) -> dict[str, Any]:
        """This process's decoded-piece cache: ``hits``, ``misses``, ``bytes`` held and its
        ``budget`` (zeros for a source gathered by position, which needs no cache)."""
        info = self._holder.layout.reader.cache_info()
        return info if info is not None else {"hits": 0, "misses": 0, "bytes": 0, "budget": 0}

    def _gather(self, indices: Any) -> Any:
        layout = self._holder.layout
        positions = np.asarray(indices, dtype=np.int64).reshape(-1)
        if positions.size and (positions.min() < -self._len or positions.max() >= self._len):
            bad = positions[(positions < -self._len) | (positions >= self._len)][0]
            raise IndexError(f"index {bad} is out of range for a dataset of {self._len} rows")
        positions = np.where(positions < 0, positions + self._len, positions)
        batch = layout.reader.gather(layout.outputs, positions, layout.allocate())
        return layout.present(batch)

    def __getitem__(self, index: int) -> Any:
        if isinstance(index, (bool, np.bool_)) or not isinstance(index, (int, np.integer)):
            raise TypeError(f"dataset indices must be integers, not {type(index).__name__}")
        sample = _index_output(self._gather([index]), 0)
        return sample if self.transform is None else self.transform(sample)

    def __getitems__(self, indices: Sequence[int]) -> _GatheredBatch | list[Any]:
        output = self._gather(indices)
        if self.transform is not None:
            output = self.transform(output)
        return _GatheredBatch(output)


def _distributed_rank(rank: int | None, world_size: int | None) -> tuple[int, int]:
    if rank is not None or world_size is not None:
        if rank is None or world_size is None:
            raise RelayValueError("pass both rank and world_size, or neither")
        if not 0 <= rank < world_size:
            raise RelayValueError(f"rank {rank} is out of range for world_size {world_size}")
        return rank, world_size
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


class RelayIterableDataset(IterableDataset[Any]):
    """Ready batches of a frame for ``DataLoader(ds, batch_size=None, num_workers=...)``.

    Each epoch's order (``shuffle`` None, ``"global"`` or ``"block"``) is cut into one shard
    per (rank, worker): ranks from ``torch.distributed`` when it is initialized (when the dataset
    is made or iterated in the training process), or explicit
    ``rank`` / ``world_size``; workers from ``get_worker_info()``. Every row is yielded exactly
    once per epoch across all of them (shards differ by at most one row, so with
    ``drop_last=False`` ranks may differ by one batch; pass ``drop_last=True`` where every rank
    must take the same number of steps). ``state_dict()`` / ``load_state_dict()`` resume in
    the middle of an epoch with the exact remaining batches, per worker and rank.

    Over decoded files (Parquet, CSV, NDJSON) the frame is read piece by piece (see
    ``relay_ml.batches``): memory holds about two shuffle windows of ``shuffle_buffer`` rows
    of the selected columns (one piece each without a shuffle) plus the prefetched batches,
    whatever the dataset's size; shards are then runs of pieces, differing by at most one piece,
    and ``shuffle="global"`` is refused (use ``"block"``). A filtered decoded source knows its
    number of batches only by reading: ``len()`` raises TypeError there.
    """

    def __init__(
        self,
        frame: Frame,
        batch_size: int,
        *,
        features: Sequence[str] | None = None,
        target: str | None = None,
        dtype: Any = None,
        shuffle: str | bool | None = None,
        seed: int = 0,
        drop_last: bool = False,
        fill_null: Any = None,
        transform: Callable[[Any], Any] | None = None,
        rank: int | None = None,
        world_size: int | None = None,
        prefetch: int = 2,
        block_size: int = DEFAULT_BLOCK_SIZE,
        shuffle_buffer: int = DEFAULT_SHUFFLE_BUFFER,
        ragged: str = "pad",
    ) -> None:
        check_batch_arguments(
            batch_size=batch_size,
            shuffle=shuffle,
            seed=seed,
            prefetch=prefetch,
            block_size=block_size,
            shuffle_buffer=shuffle_buffer,
        )
        self._holder = _FrameHolder(frame, (features, target, dtype, fill_null, ragged))
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.drop_last = drop_last
        self.transform = transform
        self.prefetch = prefetch
        self.block_size = block_size
        self.shuffle_buffer = shuffle_buffer
        # Explicit, or taken from torch.distributed here: DataLoader workers are separate
        # processes in which the process group is not initialized, so they use this copy.
        self._rank_args = (
            _distributed_rank(rank, world_size)
            if rank is not None or world_size is not None
            else None
        )
        self._ranks_seen = _distributed_rank(None, None)
        self.epoch = 0
        self._batches_done = 0

    @property
    def frame(self) -> Frame:
        return self._holder._frame

    def set_epoch(self, epoch: int) -> None:
        """The epoch whose order the next iteration visits (starting from its first batch)."""
        self.epoch = int(epoch)
        self._batches_done = 0

    def _shard(self) -> tuple[int, int]:
        if self._rank_args is not None:
            rank, world_size = self._rank_args
        elif torch.distributed.is_available() and torch.distributed.is_initialized():
            rank, world_size = self._ranks_seen = _distributed_rank(None, None)
        else:
            rank, world_size = self._ranks_seen
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        return rank * workers + worker, world_size * workers

    def __len__(self) -> int:
        """Batches this process's shard yields per epoch (all of them with one worker).
        Raises TypeError when only reading tells (a filtered source read piece by piece)."""
        shard, shards = self._shard()
        rows = self._holder.layout.reader.shard_rows(
            shuffle=self.shuffle,
            seed=self.seed,
            epoch=self.epoch,
            shard=shard,
            shards=shards,
            block_size=self.block_size,
            shuffle_buffer=self.shuffle_buffer,
        )
        if rows is None:
            raise TypeError(
                "the number of batches is known only by reading: the source is filtered and read "
                "piece by piece"
            )
        return rows // self.batch_size if self.drop_last else -(-rows // self.batch_size)

    def __iter__(self) -> Iterator[Any]:
        layout = self._holder.layout
        shard, shards = self._shard()
        batches = layout.reader.iter_shard(
            layout.outputs,
            self.batch_size,
            shuffle=self.shuffle,
            seed=self.seed,
            epoch=self.epoch,
            shard=shard,
            shards=shards,
            drop_last=self.drop_last,
            start_batch=self._batches_done,
            prefetch=self.prefetch,
            block_size=self.block_size,
            shuffle_buffer=self.shuffle_buffer,
            allocate=layout.stream_allocate(),
        )
        try:
            for batch in batches:
                self._batches_done = batches.batches_done
                output = layout.present(batch)
                yield output if self.transform is None else self.transform(output)
            self._batches_done = 0
        finally:
            batches.close()

    def state_dict(self) -> dict[str, Any]:
        """Where this process's shard is: epoch, seed and batches already yielded."""
        return {"epoch": self.epoch, "seed": self.seed, "batches_done": self._batches_done}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Resume: the next iteration continues the saved epoch after its yielded batches."""
        if state.get("seed", self.seed) != self.seed:
            raise RelayValueError(
                f"state was saved with seed {state['seed']}, this dataset has seed {self.seed}"
            )
        self.epoch = int(state["epoch"])
        self._batches_done = int(state["batches_done"])


class RelayLoader:
    """Batches of a frame gathered ahead by a Rust thread in this process (see :func:`loader`)."""

    def __init__(
        self,
        frame: Frame,
        batch_size: int,
        *,
        features: Sequence[str] | None = None,
        target: str | None = None,
        dtype: Any = None,
        shuffle: str | bool | None = None,
        seed: int = 0,
        prefetch: int = 2,
        pin_memory: bool = False,
        device: str | torch.device | None = None,
        drop_last: bool = False,
        fill_null: Any = None,
        transform: Callable[[Any], Any] | None = None,
        rank: int | None = None,
        world_size: int | None = None,
        block_size: int = DEFAULT_BLOCK_SIZE,
        shuffle_buffer: int = DEFAULT_SHUFFLE_BUFFER,
        ragged: str = "pad",
    ) -> None:
        self._dataset = RelayIterableDataset(
            frame,
            batch_size,
            features=features,
            target=target,
            dtype=dtype,
            shuffle=shuffle,
            seed=seed,
            drop_last=drop_last,
            fill_null=fill_null,
            transform=None,
            rank=rank,
            world_size=world_size,
            prefetch=prefetch,
            block_size=block_size,
            shuffle_buffer=shuffle_buffer,
            ragged=ragged,
        )
        self.device = None if device is None else torch.device(device)
        if pin_memory and not torch.cuda.is_available():
            raise RelayValueError(
                "pin_memory=True needs CUDA, and torch.cuda.is_available() is False"
            )
        self.pin_memory = bool(pin_memory)
        self.transform = transform

    @property
    def epoch(self) -> int:
        return self._dataset.epoch

    def set_epoch(self, epoch: int) -> None:
        self._dataset.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self._dataset)

    def __iter__(self) -> Iterator[Any]:
        ds = self._dataset
        layout = ds._holder.layout
        shard, shards = ds._shard()
        batches = layout.reader.iter_shard(
            layout.outputs,
            ds.batch_size,
            shuffle=ds.shuffle,
            seed=ds.seed,
            epoch=ds.epoch,
            shard=shard,
            shards=shards,
            drop_last=ds.drop_last,
            start_batch=ds._batches_done,
            prefetch=ds.prefetch,
            block_size=ds.block_size,
            shuffle_buffer=ds.shuffle_buffer,
            allocate=layout.stream_allocate(self.pin_memory),
        )
        try:
            for batch in batches:
                ds._batches_done = batches.batches_done
                output = layout.present(batch)
                if self.device is not None:
                    output = _to_device(output, self.device)
                yield output if self.transform is None else self.transform(output)
            ds.set_epoch(ds.epoch + 1)
        finally:
            batches.close()

    def state_dict(self) -> dict[str, Any]:
        """Epoch, seed and batches already yielded in it: resume with ``load_state_dict``."""
        return self._dataset.state_dict()

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self._dataset.load_state_dict(state)


def _to_device(output: Any, device: torch.device) -> Any:
    if isinstance(output, tuple):
        return tuple(t.to(device, non_blocking=True) for t in output)
    if isinstance(output, dict):
        return {k: v.to(device, non_blocking=True) for k, v in output.items()}
    return output.to(device, non_blocking=True)


def loader(
    frame: Frame,
    batch_size: int,
    *,
    features: Sequence[str] | None = None,
    target: str | None = None,
    shuffle: str | bool | None = None,
    seed: int = 0,
    prefetch: int = 2,
    pin_memory: bool = False,
    device: str | torch.device | None = None,
    drop_last: bool = False,
    dtype: Any = None,
    fill_null: Any = None,
    transform: Callable[[Any], Any] | None = None,
    rank: int | None = None,
    world_size: int | None = None,
    block_size: int = DEFAULT_BLOCK_SIZE,
    shuffle_buffer: int = DEFAULT_SHUFFLE_BUFFER,
    ragged: str = "pad",
) -> RelayLoader:
    """Batches of ``frame`` for a training loop, gathered by Rust threads ahead of use
    (``prefetch`` batches per gather thread, like DataLoader's ``prefetch_factor``), with no
    worker processes.

    Each batch is gathered straight into its tensors (into pinned memory with ``pin_memory``;
    ``device`` then moves it with ``non_blocking=True``): one copy from the mapped file. Each
    full pass advances the epoch, so the next pass is shuffled differently;
    ``state_dict()`` / ``load_state_dict()`` resume mid-epoch. Sharded across ranks like
    :class:`RelayIterableDataset`, and like it, reads decoded files (Parquet, CSV, NDJSON)
    piece by piece in bounded memory: train on datasets larger than RAM with
    ``shuffle="block"``.
    """
    return RelayLoader(
        frame,
        batch_size,
        features=features,
        target=target,
        dtype=dtype,
        shuffle=shuffle,
        seed=seed,
        prefetch=prefetch,
        pin_memory=pin_memory,
        device=device,
        drop_last=drop_last,
        fill_null=fill_null,
        transform=transform,
        rank=rank,
        world_size=world_size,
        block_size=block_size,
        shuffle_buffer=shuffle_buffer,
        ragged=ragged,
    )
