"""Expressions: `col`, `lit`, `when`, and the operators and functions on them.

Expressions are lazy descriptions checked against a frame's schema when the frame is built
(``frame.filter(col("city") > 3)`` raises a TypeError naming the column and both types) and
evaluated by the engine, in parallel and without the GIL, when the frame is exported.
"""

from __future__ import annotations

import builtins
import datetime as _dt
from collections.abc import Iterable
from typing import Any

import numpy as np

from relay_ml._core import dtype_name
from relay_ml._relay import ColumnBase, NativeExpr
from relay_ml.errors import RelayTypeError, RelayValueError

IntoExpr = Any  # an Expr, a Column, or a Python / NumPy scalar


class Expr:
    """A column expression: ``col("age") > 30``, ``(col("x") * 2).alias("x2")``, ...

    Comparisons and arithmetic follow Polars: literal numbers take the type of the column they
    meet when the value fits; ``/`` is true division (a float), ``//`` and ``%`` round toward
    negative infinity as in Python, integer division by zero gives null; ``&``, ``|`` and ``~``
    use three-valued logic with null.
    """

    __slots__ = ("_native", "_recipe")
    _native: NativeExpr
    _recipe: tuple[Any, ...]  # how to rebuild this expression: for pickling

    def __init__(self, native: NativeExpr, recipe: tuple[Any, ...]) -> None:
        self._native = native
        self._recipe = recipe

    # -- construction helpers ------------------------------------------------------------
    def _binary(self, op: str, other: IntoExpr, reflected: bool = False) -> Expr:
        other = to_expr(other)
        if reflected:
            return Expr(other._native.binary(op, self._native), ("binary", op, other, self))
        return Expr(self._native.binary(op, other._native), ("binary", op, self, other))

    def _unary(self, op: str) -> Expr:
        return Expr(self._native.unary(op), ("unary", op, self))

    # -- comparisons ---------------------------------------------------------------------
    def __eq__(self, other: IntoExpr) -> Expr:  # type: ignore[override]
        return self._binary("==", other)

    def __ne__(self, other: IntoExpr) -> Expr:  # type: ignore[override]
        return self._binary("!=", other)

    def __lt__(self, other: IntoExpr) -> Expr:
        return self._binary("<", other)

    def __le__(self, other: IntoExpr) -> Expr:
        return self._binary("<=", other)

    def __gt__(self, other: IntoExpr) -> Expr:
        return self._binary(">", other)

    def __ge__(self, other: IntoExpr) -> Expr:
        return self._binary(">=", other)

    __hash__ = None  # type: ignore[assignment]  # == builds an expression

    def __bool__(self) -> bool:
        raise RelayTypeError(
            "an expression has no truth value; combine conditions with & | ~ instead of and / or / "
            "not"
        )

    # -- arithmetic ----------------------------------------------------------------------
    def __add__(self, other: IntoExpr) -> Expr:
        return self._binary("+", other)

    def __radd__(self, other: IntoExpr) -> Expr:
        return self._binary("+", other, reflected=True)

    def __sub__(self, other: IntoExpr) -> Expr:
        return self._binary("-", other)

    def __rsub__(self, other: IntoExpr) -> Expr:
        return self._binary("-", other, reflected=True)

    def __mul__(self, other: IntoExpr) -> Expr:
        return self._binary("*", other)

    def __rmul__(self, other: IntoExpr) -> Expr:
        return self._binary("*", other, reflected=True)

    def __truediv__(self, other: IntoExpr) -> Expr:
        return self._binary("/", other)

    def __rtruediv__(self, other: IntoExpr) -> Expr:
        return self._binary("/", other, reflected=True)

    def __floordiv__(self, other: IntoExpr) -> Expr:
        return self._binary("//", other)

    def __rfloordiv__(self, other: IntoExpr) -> Expr:
        return self._binary("//", other, reflected=True)

    def __mod__(self, other: IntoExpr) -> Expr:
        return self._binary("%", other)

    def __rmod__(self, other: IntoExpr) -> Expr:
        return self._binary("%", other, reflected=True)

    def __neg__(self) -> Expr:
        return self._unary("neg")

    def __abs__(self) -> Expr:
        return self._unary("abs")

    def abs(self) -> Expr:
        """Absolute value."""
        return self._unary("abs")

    # -- logic -----------------------------------------------------------------------------
    def __and__(self, other: IntoExpr) -> Expr:
        return self._binary("&", other)

    def __rand__(self, other: IntoExpr) -> Expr:
        return self._binary("&", other, reflected=True)

    def __or__(self, other: IntoExpr) -> Expr:
        return self._binary("|", other)

    def __ror__(self, other: IntoExpr) -> Expr:
        return self._binary("|", other, reflected=True)

    def __invert__(self) -> Expr:
        return self._unary("not")

    # -- nulls, membership, conversion -------------------------------------------------------
    def is_null(self) -> Expr:
        """True where the value is null."""
        return self._unary("is_null")

    def is_not_null(self) -> Expr:
        """True where the value is not null."""
        return self._unary("is_not_null")

    def is_in(self, values: Iterable[Any]) -> Expr:
        """True where the value equals one of ``values`` (a list, tuple, set or NumPy array of
        scalars). A null value gives null; null candidates match nothing; candidates that do not
        convert exactly to the column's type (1000 for int8) match nothing either. As in Polars
        2, float candidates for an integer column are a type error: cast one side first."""
        if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
            raise RelayTypeError(
                f"is_in() takes a collection of values, got {type(values).__name__}"
            )
        values = list(values.tolist() if isinstance(values, np.ndarray) else values)
        return Expr(self._native.is_in(values), ("is_in", self, values))

    def between(self, lower: IntoExpr, upper: IntoExpr) -> Expr:
        """``lower <= self <= upper`` (both ends included)."""
        at_least: Expr = self >= lower
        at_most: Expr = self <= upper
        return at_least & at_most

    def fill_null(self, value: IntoExpr) -> Expr:
        """Nulls replaced by ``value``."""
        value = to_expr(value)
        return Expr(self._native.fill_null(value._native), ("fill_null", self, value))

    def cast(self, dtype: Any) -> Expr:
        """Values converted to ``dtype`` (a name such as ``"float32"``, a NumPy dtype, a
        pyarrow type or ``int`` / ``float`` / ``bool`` / ``str``). Strict: a value that does not
        convert (``-1`` to ``"uint8"``, ``"x"`` to ``"int32"``, NaN to an integer) raises
        :class:`~relay_ml.RelayError` when the frame is evaluated; floats to integers truncate."""
        name = dtype_name(dtype)
        return Expr(self._native.cast(name), ("cast", self, name))

    def alias(self, name: str) -> Expr:
        """The same expression under another output name."""
        if not isinstance(name, str):
            raise RelayTypeError(f"alias() takes a str, got {type(name).__name__}")
        return Expr(self._native.alias(name), ("alias", self, name))

    @property
    def str(self) -> _StringFunctions:
        """String functions: ``starts_with``, ``ends_with``, ``contains``, ``len``."""
        return _StringFunctions(self)

    @property
    def dt(self) -> _DateFunctions:
        """Date parts: ``year``, ``month``, ``day``."""
        return _DateFunctions(self)

    @property
    def output_name(self) -> builtins.str:  # `str` is the property above in this class
        """The name of the column this expression produces."""
        return self._native.output_name

    # -- aggregations: for ``frame.group_by(keys).agg([...])`` ---------------------------
    def sum(self) -> AggExpr:
        """The sum of each group's non-null values (0 for a group without any); numbers only."""
        return AggExpr(self, "sum")

    def mean(self) -> AggExpr:
        """The mean of each group's non-null values (null for a group without any), a float64."""
        return AggExpr(self, "mean")

    def min(self) -> AggExpr:
        """Each group's smallest non-null value (numbers, strings, dates, ...)."""
        return AggExpr(self, "min")

    def max(self) -> AggExpr:
        """Each group's largest non-null value."""
        return AggExpr(self, "max")

    def std(self) -> AggExpr:
        """The sample standard deviation of each group's non-null values (null with fewer
        than two), a float64; numbers only."""
        return AggExpr(self, "std")

    def var(self) -> AggExpr:
        """The sample variance of each group's non-null values (null with fewer than two)."""
        return AggExpr(self, "var")

    def median(self) -> AggExpr:
        """The middle of each group's sorted non-null values (the mean of the two middle ones
        for an even count; null for a group without any); numbers only. float32 stays float32,
        every other type gives float64."""
        return AggExpr(self, "median")

    def quantile(self, quantile: float, interpolation: builtins.str = "nearest") -> AggExpr:
        """The value ``quantile`` (between 0 and 1) of the way through each group's sorted
        non-null values, as in Polars: the position ``quantile * (n - 1)`` rounded
        (``"nearest"``, halves away from zero), its ``"lower"`` or ``"higher"`` neighbour,
        their ``"midpoint"``, or ``"linear"`` interpolation between them. Types as in
        :meth:`median`."""
        if isinstance(quantile, bool) or not isinstance(quantile, (int, float)):
            raise RelayTypeError(
                f"quantile() takes a float between 0 and 1, got {type(quantile).__name__}"
            )
        if not 0.0 <= quantile <= 1.0:
            raise RelayValueError(f"quantile() takes a float between 0 and 1, got {quantile!r}")
        if not isinstance(interpolation, str):
            raise RelayTypeError(
                f"quantile(): interpolation must be a str, got {type(interpolation).__name__}"
            )
        if interpolation not in _INTERPOLATIONS:
            raise RelayValueError(
                f"quantile(): interpolation must be one of {list(_INTERPOLATIONS)}, got "
                f"{interpolation!r}"
            )
        return AggExpr(self, "quantile", None, (float(quantile), interpolation))

    def count(self) -> AggExpr:
        """How many of each group's values are not null."""
        return AggExpr(self, "count")

    def len(self) -> AggExpr:
        """How many rows each group has, nulls included."""
        return AggExpr(self, "len")

    def n_unique(self) -> AggExpr:
        """How many distinct values each group has, null counting as one."""
        return AggExpr(self, "n_unique")

    def first(self) -> AggExpr:
        """Each group's value in its first row (null when that value is null)."""
        return AggExpr(self, "first")

    def last(self) -> AggExpr:
        """Each group's value in its last row."""
        return AggExpr(self, "last")

    def __repr__(self) -> builtins.str:
        return f"<Expr {self._native}>"

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (self._recipe,))


_INTERPOLATIONS = ("nearest", "lower", "higher", "midpoint", "linear")


class AggExpr:
    """An aggregation, ``col("x").sum()``, for :meth:`Frame.group_by(...).agg([...])
    <relay_ml.frame.GroupBy.agg>`: one value per group, in a column named after the input
    expression (``"x"``) unless renamed with :meth:`alias`. It is not a row-wise expression:
    ``filter`` and ``select`` do not take it."""

    __slots__ = ("_function", "_input", "_name", "_quantile")
    _input: Expr
    _function: str
    _name: str | None
    _quantile: tuple[float, str] | None  # (quantile, interpolation) of a quantile

    def __init__(
        self,
        input: Expr,
        function: str,
        name: str | None = None,
        quantile: tuple[float, str] | None = None,
    ) -> None:
        self._input = input
        self._function = function
        self._name = name
        self._quantile = quantile

    def alias(self, name: str) -> AggExpr:
        """The same aggregation, output as the column ``name``."""
        if not isinstance(name, str):
            raise RelayTypeError(f"alias() takes a str, got {type(name).__name__}")
        return AggExpr(self._input, self._function, name, self._quantile)

    @property
    def output_name(self) -> str:
        """The name of the column this aggregation produces."""
        return self._name if self._name is not None else self._input.output_name

    def _parts(self) -> tuple[str, NativeExpr, str | None, tuple[float, str] | None]:
        return (self._function, self._input._native, self._name, self._quantile)

    def __repr__(self) -> str:
        alias = f".alias({self._name!r})" if self._name is not None else ""
        args = f"{self._quantile[0]!r}, {self._quantile[1]!r}" if self._quantile is not None else ""
        return f"<AggExpr {self._input._native}.{self._function}({args}){alias}>"

    def __reduce__(self) -> tuple[Any, ...]:
        return (AggExpr, (self._input, self._function, self._name, self._quantile))


class _StringFunctions:
    __slots__ = ("_expr",)
    _expr: Expr

    def __init__(self, expr: Expr) -> None:
        self._expr = expr

    def _match(self, kind: str, pattern: str) -> Expr:
        if not isinstance(pattern, str):
            raise RelayTypeError(f"str.{kind}() takes a str pattern, got {type(pattern).__name__}")
        return Expr(
            self._expr._native.string_match(kind, pattern),
            ("string_match", self._expr, kind, pattern),
        )

    def starts_with(self, prefix: str) -> Expr:
        return self._match("starts_with", prefix)

    def ends_with(self, suffix: str) -> Expr:
        return self._match("ends_with", suffix)

    def contains(self, literal: str) -> Expr:
        """True where the string contains ``literal`` (a plain substring, not a pattern)."""
        return self._match("contains", literal)

    def len(self) -> Expr:
        """Length in characters."""
        return self._expr._unary("str.len")


class _DateFunctions:
    __slots__ = ("_expr",)
    _expr: Expr

    def __init__(self, expr: Expr) -> None:
        self._expr = expr

    def year(self) -> Expr:
        return self._expr._unary("dt.year")

    def month(self) -> Expr:
        return self._expr._unary("dt.month")

    def day(self) -> Expr:
        return self._expr._unary("dt.day")


def col(name: str) -> Expr:
    """The column called ``name``."""
    if not isinstance(name, str):
        raise RelayTypeError(f"col() takes a column name (str), got {type(name).__name__}")
    return Expr(NativeExpr.col(name), ("col", name))


def lit(value: Any) -> Expr:
    """A literal: bool, int, float, str, bytes, date, datetime, NumPy scalar or None."""
    if isinstance(value, Expr):
        return value
    if isinstance(value, np.generic):
        value = value.item()
    return Expr(NativeExpr.lit(value), ("lit", value))


def to_expr(value: IntoExpr) -> Expr:
    """``value`` as an expression: an Expr as it is, a Column as ``col(name)``, a Python or
    NumPy scalar (or None) as ``lit(value)``; anything else is a RelayTypeError."""
    if isinstance(value, Expr):
        return value
    if isinstance(value, ColumnBase):  # a Column: relay_ml.column builds on this module
        return col(value.name)
    if isinstance(value, (bool, int, float, str, bytes, _dt.date, np.generic)) or value is None:
        return lit(value)
    raise RelayTypeError(
        f"cannot use a {type(value).__name__} in an expression; use col(), lit() or a scalar"
    )


class When:
    """``when(condition).then(value)``, continued with ``.when(...)`` or ``.otherwise(...)``."""

    __slots__ = ("_branches", "_condition")
    _branches: list[tuple[Expr, Expr]]
    _condition: Expr

    def __init__(self, branches: list[tuple[Expr, Expr]], condition: Expr) -> None:
        self._branches = branches
        self._condition = condition

    def then(self, value: IntoExpr) -> Then:
        return Then([*self._branches, (self._condition, to_expr(value))])


class Then(Expr):
    """``when(c).then(a)``: already an expression (null where no condition holds, as in
    Polars), continued with ``.when(...)`` or finished with ``.otherwise(...)``."""

    __slots__ = ("_branches",)
    _branches: list[tuple[Expr, Expr]]

    def __init__(self, branches: list[tuple[Expr, Expr]]) -> None:
        self._branches = branches
        without_otherwise = _case(branches, lit(None))
        super().__init__(without_otherwise._native, without_otherwise._recipe)

    def when(self, condition: IntoExpr) -> When:
        return When(self._branches, to_expr(condition))

    def otherwise(self, value: IntoExpr) -> Expr:
        return _case(self._branches, to_expr(value))


def _case(branches: list[tuple[Expr, Expr]], otherwise: Expr) -> Expr:
    natives = [(w._native, t._native) for w, t in branches]
    return Expr(NativeExpr.case(natives, otherwise._native), ("case", branches, otherwise))


def when(condition: IntoExpr) -> When:
    """Start a conditional: ``when(c).then(a).when(d).then(b).otherwise(e)``; the first true
    condition wins, a null condition counts as false, and without ``otherwise`` rows where no
    condition holds are null. Branches meet at their common type, literals taking the type of
    the other branches when they fit (``.then(col("int8")).otherwise(-1)`` is int8)."""
    return When([], to_expr(condition))


def _rebuild(recipe: tuple[Any, ...]) -> Expr:
    kind, *args = recipe
    subject: Expr  # the expression a method was called on, for the kinds that have one
    if kind == "col":
        return col(args[0])
    if kind == "lit":
        return lit(args[0])
    if kind == "binary":
        op, left, right = args
        return Expr(left._native.binary(op, right._native), recipe)
    if kind == "unary":
        op, subject = args
        return subject._unary(op)
    if kind == "is_in":
        subject, values = args
        return subject.is_in(values)
    if kind == "fill_null":
        subject, value = args
        return subject.fill_null(value)
    if kind == "cast":
        subject, dtype = args
        return subject.cast(dtype)
    if kind == "alias":
        subject, name = args
        return subject.alias(name)
    if kind == "string_match":
        subject, match, pattern = args
        return subject.str._match(match, pattern)
    if kind == "case":
        branches, otherwise = args
        return _case(branches, otherwise)
    raise ValueError(f"unknown expression recipe {kind!r}")
