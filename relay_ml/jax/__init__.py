"""JAX integration: columns and frames as JAX arrays, and batches for training loops.

``to_jax(column)`` hands a column to JAX through DLPack. On CPU that is **zero-copy** when the
column exports as a view (:attr:`Column.is_zero_copy`), its buffer starts on a 64-byte boundary
(JAX copies any other buffer, silently) and its dtype exists in JAX's current mode. Otherwise
the column is copied once, and :func:`explain` says why (``relay inspect FILE`` shows each column's
alignment). pyarrow aligns buffers to 8 bytes only, so columns of its files usually copy.

**64-bit values under JAX's default 32-bit mode** (``jax_enable_x64`` off): JAX has no int64,
uint64 or float64 arrays then. The rule here, applied by :func:`to_jax` and
:func:`iter_batches` alike:

- int64 / uint64 become int32 / uint32 **only when every value fits**; otherwise a
  :class:`~relay_ml.RelayValueError` names the column and its range. A value is never
  wrapped around.
- float64 becomes float32 (rounded to nearest, as JAX itself rounds), **only when every finite
  value is within float32's range**; a value that would overflow to infinity raises instead.

With ``jax.config.update("jax_enable_x64", True)`` 64-bit columns keep their dtype (and stay
zero-copy when aligned).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from relay_ml._optional import needs
from relay_ml.column import Column
from relay_ml.errors import RelayTypeError, RelayValueError
from relay_ml.frame import Frame
from relay_ml.interop import numpy_batches, shuffle_mode

if TYPE_CHECKING:
    import jax

__all__ = ["explain", "iter_batches", "narrow_for_jax", "to_jax"]

#: JAX's CPU runtime copies DLPack buffers that are not aligned to this many bytes.
JAX_ALIGNMENT = 64

_NARROWED: dict[np.dtype[Any], np.dtype[Any]] = {
    np.dtype(np.int64): np.dtype(np.int32),
    np.dtype(np.uint64): np.dtype(np.uint32),
    np.dtype(np.float64): np.dtype(np.float32),
}


def _x64_enabled() -> bool:
    with needs("relay_ml.jax"):
        import jax

    # Options are attributes that jax's Config sets at run time; its class does not declare them.
    return bool(jax.config.jax_enable_x64)  # type: ignore[attr-defined]


def narrow_for_jax(
    array: np.ndarray, name: str, x64: bool | None = None
) -> tuple[np.ndarray, str | None]:
    """``array`` in a dtype JAX holds in its current mode, by the rule in this module's docs,
    and why it was converted (None when unchanged).

    Raises:
        RelayValueError: a 64-bit value does not fit the 32-bit type.
    """
    if x64 is None:
        x64 = _x64_enabled()
    target = None if x64 else _NARROWED.get(array.dtype)
    if target is None:
        return array, None
    if array.size:
        if target.kind in "iu":
            info = np.iinfo(target)
            low, high = array.min(), array.max()
            if low < info.min or high > info.max:
                raise RelayValueError(
                    f"column {name!r} holds {array.dtype} values from {low} to {high}, outside "
                    f"{target} ({info.min} .. {info.max}), and JAX is in 32-bit mode; enable "
                    "64-bit mode with jax.config.update('jax_enable_x64', True), or cast the column"
                )
        else:
            finite = array[np.isfinite(array)]
            limit = np.finfo(np.float32).max
            if finite.size and np.abs(finite).max() > limit:
                raise RelayValueError(
                    f"column {name!r} holds float64 values beyond float32's range (|x| > "
                    f"{limit:.4g}), and JAX is in 32-bit mode; enable 64-bit mode with "
                    "jax.config.update('jax_enable_x64', True), or scale the column"
                )
    return array.astype(
        target
    ), f"JAX is in 32-bit mode: {array.dtype} values converted to {target}"


def _column_plan(column: Column) -> tuple[str | None, np.ndarray | None]:
    """Why handing ``column`` to JAX copies (None for zero-copy), and the NumPy array to copy
    from when it does."""
    reason = column.copy_reason
    if reason is not None:
        return f"relay copies the column: {reason}", None
    array = column.to_numpy()
    if array.dtype == object:
        raise RelayTypeError(f"column {column.name!r} of type {column.dtype} has no JAX array form")
    if array.dtype in _NARROWED and not _x64_enabled():
        return "64-bit values under JAX's 32-bit mode are converted (see relay_ml.jax)", array
    offset = array.ctypes.data % JAX_ALIGNMENT
    if offset and array.size:
        return (
            f"the buffer starts {offset} bytes past a {JAX_ALIGNMENT}-byte boundary, and JAX "
            f"copies buffers that are not {JAX_ALIGNMENT}-byte aligned (pyarrow aligns buffers to "
            "8 bytes; `relay inspect` shows each column's alignment)"
        ), array
    return None, array


def explain(data: Column | Frame) -> str:
    """For each column, whether :func:`to_jax` hands it to JAX without a copy, and if not why."""
    columns = _columns_of(data)
    lines = []
    for column in columns:
        reason, _ = _column_plan(column)
        verdict = "zero-copy (DLPack view)" if reason is None else f"copy: {reason}"
        lines.append(f"{column.name} ({column.dtype}): {verdict}")
    return "\n".join(lines)


def to_jax(data: Column | Frame, device: Any = None) -> jax.Array | dict[str, jax.Array]:
    """A column as a JAX array, or a frame as a dict of them, by column name.

    Zero-copy on CPU where possible (see the module docs: a view, 64-byte aligned, a dtype of
    JAX's current mode), else one copy; :func:`explain` tells which. 64-bit columns follow the
    module's 32-bit rule. With ``device``, arrays are placed there (``jax.device_put``).

    Raises:
        RelayValueError: a 64-bit column does not fit 32 bits while JAX is in 32-bit mode.
        RelayTypeError: a column has no numeric array form (strings, nested types).
    """
    if isinstance(data, Frame):
        return {column.name: _column_to_jax(column, device) for column in _columns_of(data)}
    if isinstance(data, Column):
        return _column_to_jax(data, device)
    raise RelayTypeError(f"to_jax() takes a relay Column or Frame, got {type(data).__name__}")


def _column_to_jax(column: Column, device: Any) -> jax.Array:
    with needs("relay_ml.jax.to_jax"):
        import jax
        import jax.numpy as jnp

    reason, array = _column_plan(column)
    if reason is None:
        result = jnp.from_dlpack(column)
    else:
        if array is None:
            array = column.to_numpy()
            if array.dtype == object:
                raise RelayTypeError(
                    f"column {column.name!r} of type {column.dtype} has no JAX array form"
                )
        array, _ = narrow_for_jax(array, column.name)
        result = jnp.asarray(array)
    return result if device is None else jax.device_put(result, device)


def _columns_of(data: Column | Frame) -> list[Column]:
    if isinstance(data, Column):
        return [data]
    if isinstance(data, Frame):
        return [data[name] for name in data.columns]
    raise RelayTypeError(f"expected a relay Column or Frame, got {type(data).__name__}")


def iter_batches(
    frame: Frame,
    batch_size: int,
    shuffle: bool | str | None = False,
    seed: int = 0,
    sharding: jax.sharding.Sharding | None = None,
    *,
    columns: list[str] | None = None,
    epoch: int = 0,
    drop_last: bool = False,
) -> Iterator[dict[str, jax.Array]]:
    """Batches of ``frame`` as dicts of JAX arrays, by column name.

    Rows are gathered by relay (``relay_ml.batches``) into fresh host arrays and then put on
    the device: placed by ``sharding`` when given (``jax.device_put(array, sharding)``; a
    ``NamedSharding`` over a ``batch`` mesh axis splits each batch across devices, so
    ``batch_size`` must divide evenly among them: use ``drop_last=True`` for a short last
    batch), else on JAX's default device.

    Args:
        frame: the rows to iterate.
        batch_size: rows per batch (the last may be shorter unless ``drop_last``).
        shuffle: ``False`` for file order, ``"global"`` for a uniform shuffle, ``"block"`` for
            shuffled blocks of rows (faster on cold data; pieces, for Parquet / CSV / NDJSON read
            piece by piece), ``True`` for ``"global"`` where rows can be read by position and
            ``"block"`` otherwise.
        seed: the shuffle's seed; with ``epoch`` it fixes the order.
        sharding: where to place each array.
        columns: the columns to yield (all by default).
        epoch: a different order per epoch for the same seed.
        drop_last: drop a last batch shorter than ``batch_size``.

    64-bit columns follow the module's 32-bit rule (checked per batch).
    """
    with needs("relay_ml.jax.iter_batches"):
        import jax
        import jax.numpy as jnp

    mode = shuffle_mode(shuffle)
    x64 = _x64_enabled()
    batches = numpy_batches(
        frame,
        batch_size,
        columns=columns,
        shuffle=mode,
        seed=seed,
        epoch=epoch,
        drop_last=drop_last,
    )

    # The batches are made (and the arguments checked) here; the generator only places them.
    def placed() -> Iterator[dict[str, jax.Array]]:
        for batch in batches:
            out = {}
            for name, array in batch.items():
                array, _ = narrow_for_jax(array, name, x64)
                out[name] = (
                    jax.device_put(array, sharding) if sharding is not None else jnp.asarray(array)
                )
            yield out

    return placed()
