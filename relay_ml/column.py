"""Column: one column of a mapped Arrow file, exportable without copying."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from relay_ml._core import float_type_of, slice_offset, value_text
from relay_ml._optional import needs
from relay_ml._relay import ColumnBase
from relay_ml.errors import RelayTypeError, ZeroCopyError
from relay_ml.expr import Expr, IntoExpr, col

if TYPE_CHECKING:
    import jax
    import pyarrow
    import torch


class Column(ColumnBase):
    """One column of a :class:`~relay_ml.Frame`.

    A column is lazy: it holds the mapped file and a row range, and reads nothing until it is
    exported. A column of a fixed-width type (integers, floats, datetimes, durations, and
    ``fixed_size_list`` of those) that lies in one record batch and has no nulls is exported
    as a **read-only view of the mapped file**: to NumPy (:meth:`to_numpy`, ``np.asarray``,
    the buffer protocol), to torch and JAX (DLPack) and to Arrow (the PyCapsule interface).
    Anything else is copied once, and :attr:`copy_reason` says why.

    Exports keep the mapping alive on their own: the array stays valid after the column and
    its frame are gone. Writing into an exported tensor (torch ignores read-only flags)
    changes only this process's private copy of the page, never the file.
    """

    __slots__ = ()

    # -- description -------------------------------------------------------------------
    # Native attributes, documented here:
    #   name: str             the column name
    #   dtype: str            the Arrow type: "float32", "int64", "string", "timestamp[us]", ...
    #   path: str|None        the mapped file; None for a column of a frame in memory
    #   null_count: int       number of nulls (decodes the column's record batches)
    #   copy_reason: str|None why exports copy; None when they are views of the mapping
    #                         (decided from the plan, as explain() says it, without running it)

    @property
    def is_zero_copy(self) -> bool:
        """True when :meth:`to_numpy`, DLPack and the buffer protocol export a view of the file."""
        return self.copy_reason is None

    def __repr__(self) -> str:
        values = self._slice(0, 10).to_pylist()
        float_type = float_type_of(self.dtype)
        shown = ", ".join(value_text(v, float_type) for v in values)
        more = ", …" if len(self) > len(values) else ""
        return f"Column({self.name!r}, dtype={self.dtype}, len={len(self)}) [{shown}{more}]"

    def __getitem__(self, index: slice) -> Column:
        if not isinstance(index, slice) or index.step not in (None, 1):
            raise RelayTypeError(
                f"column {self.name!r}: only contiguous slices (col[a:b]) are supported, "
                f"got {index!r}; use to_numpy()[...] for other indexing"
            )
        start, stop, _ = index.indices(len(self))
        return self.slice(start, max(stop - start, 0))

    def slice(self, offset: int, length: int | None = None) -> Column:
        """Rows ``offset .. offset + length`` (clamped to the column), still a lazy view. A
        negative ``offset`` counts from the end."""
        offset = slice_offset(offset, length, lambda: len(self))
        return Column(self._slice(offset, length))

    # -- as an expression: frame["age"] > 30 is col("age") > 30 ---------------------------
    # (An operand may be anything the expression takes, so mypy sees each operation as Any;
    # `result: Expr` states what Expr's operators return.)
    def _expr(self) -> Expr:
        return col(self.name)

    def __eq__(self, other: IntoExpr) -> Expr:  # type: ignore[override]  # an expression, not a bool
        result: Expr = self._expr() == other
        return result

    def __ne__(self, other: IntoExpr) -> Expr:  # type: ignore[override]  # an expression, not a bool
        result: Expr = self._expr() != other
        return result

    def __lt__(self, other: IntoExpr) -> Expr:
        result: Expr = self._expr() < other
        return result

    def __le__(self, other: IntoExpr) -> Expr:
        result: Expr = self._expr() <= other
        return result

    def __gt__(self, other: IntoExpr) -> Expr:
        result: Expr = self._expr() > other
        return result

    def __ge__(self, other: IntoExpr) -> Expr:
        result: Expr = self._expr() >= other
        return result

    __hash__ = None  # type: ignore[assignment]

    def __add__(self, other: IntoExpr) -> Expr:
        result: Expr = self._expr() + other
        return result

    def __radd__(self, other: IntoExpr) -> Expr:
        result: Expr = other + self._expr()
        return result

    def __sub__(self, other: IntoExpr) -> Expr:
        result: Expr = self._expr() - other
        return result

    def __rsub__(self, other: IntoExpr) -> Expr:
        result: Expr = other - self._expr()
        return result

    def __mul__(self, other: IntoExpr) -> Expr:
        result: Expr = self._expr() * other
        return result

    def __rmul__(self, other: IntoExpr) -> Expr:
        result: Expr = other * self._expr()
        return result

    def __truediv__(self, other: IntoExpr) -> Expr:
        result: Expr = self._expr() / other
        return result

    def __floordiv__(self, other: IntoExpr) -> Expr:
        result: Expr = self._expr() // other
        return result

    def __rtruediv__(self, other: IntoExpr) -> Expr:
        result: Expr = other / self._expr()
        return result

    def __rfloordiv__(self, other: IntoExpr) -> Expr:
        result: Expr = other // self._expr()
        return result

    def __mod__(self, other: IntoExpr) -> Expr:
        result: Expr = self._expr() % other
        return result

    def __rmod__(self, other: IntoExpr) -> Expr:
        result: Expr = other % self._expr()
        return result

    def __abs__(self) -> Expr:
        return abs(self._expr())

    def __rand__(self, other: IntoExpr) -> Expr:
        result: Expr = other & self._expr()
        return result

    def __ror__(self, other: IntoExpr) -> Expr:
        result: Expr = other | self._expr()
        return result

    def __neg__(self) -> Expr:
        return -self._expr()

    def __and__(self, other: IntoExpr) -> Expr:
        result: Expr = self._expr() & other
        return result

    def __or__(self, other: IntoExpr) -> Expr:
        result: Expr = self._expr() | other
        return result

    def __invert__(self) -> Expr:
        return ~self._expr()

    def __getattr__(self, name: str) -> Any:
        # Expression methods (is_null, is_in, between, cast, alias, str, dt, ...) on a column.
        if name.startswith("_") or not hasattr(Expr, name):
            raise AttributeError(f"'Column' object has no attribute {name!r}")
        return getattr(self._expr(), name)

    # -- NumPy -----------------------------------------------------------------------------
    def to_numpy(self, zero_copy: bool | None = None) -> np.ndarray:
        """The column as a read-only NumPy array.

        Args:
            zero_copy: ``True`` to require a view of the mapped file and raise
                :class:`~relay_ml.ZeroCopyError` (naming the reason) when a copy is needed;
                ``None`` or ``False`` to copy when needed.

        Returns:
            A 1-D array, or 2-D ``(N, D)`` for ``fixed_size_list<_, D>``. Integers with nulls
            become float64 with NaN, floats with nulls get NaN, datetimes with nulls get NaT.
            Strings, decimals, booleans with nulls and nested types become object arrays.
        """
        return self._to_numpy(zero_copy)

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        if copy is False:
            try:
                array = self.to_numpy(zero_copy=True)
            except ZeroCopyError as error:
                raise ValueError(str(error)) from error
        else:
            array = self.to_numpy()
        if dtype is not None and np.dtype(dtype) != array.dtype:
            if copy is False:
                raise ValueError(f"column {self.name!r}: casting to {dtype} needs a copy")
            return array.astype(dtype)
        return array.copy() if copy else array

    def codes(self) -> np.ndarray:
        """The integer codes of a dictionary-encoded column: a view when in one record batch."""
        return self._codes()

    def __narwhals_series__(self) -> Any:
        """The column for narwhals (and so scikit-learn's row selection in
        ``train_test_split`` and cross-validation): picking rows stays a lazy take."""
        with needs("Column.to_narwhals"):
            from relay_ml._narwhals import RelayNarwhalsSeries

        return RelayNarwhalsSeries.of_column(self)

    # -- frameworks ------------------------------------------------------------------------
    def to_tensor(self) -> torch.Tensor:
        """The column as a torch tensor through DLPack: a view of the mapped file when
        :attr:`is_zero_copy`. The tensor is writable (torch has no read-only tensors), but
        writes stay in this process's private copy of the page."""
        with needs("Column.to_tensor"):
            from torch.utils.dlpack import from_dlpack  # torch.from_dlpack, by its own module

        return from_dlpack(self)

    def to_jax(self) -> jax.Array:
        """The column as a JAX array through DLPack. JAX copies buffers that are not 64-byte
        aligned and, unless ``jax_enable_x64`` is set, 64-bit types."""
        with needs("Column.to_jax"):
            import jax.numpy as jnp

        return jnp.from_dlpack(self)

    def to_arrow(self) -> pyarrow.ChunkedArray:
        """The column as a ``pyarrow.ChunkedArray`` sharing the mapped buffers."""
        with needs("Column.to_arrow"):
            import pyarrow as pa

        chunks = [
            pa.Array._import_from_c_capsule(schema, array) for schema, array in self._arrow_chunks()
        ]
        # Never empty: a column of zero rows still has one empty chunk carrying its type.
        return pa.chunked_array(chunks, type=chunks[0].type)
