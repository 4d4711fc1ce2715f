"""Optional dependencies: an import that fails says which package to install, and how."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

#: Distribution names of the optional imports (where they differ from the module name), and
#: the extra of pyproject.toml that brings each.
_PACKAGES = {
    "torch": ("torch", "torch"),
    "torchdata": ("torchdata", "torch"),
    "jax": ("jax", "jax"),
    "jaxlib": ("jax", "jax"),
    "sklearn": ("scikit-learn", "sklearn"),
    "narwhals": ("narwhals", "sklearn"),
    "pyarrow": ("pyarrow", "arrow"),
    "pandas": ("pandas", "pandas"),
    "tqdm": ("tqdm", "cli"),
}


@contextmanager
def needs(feature: str) -> Iterator[None]:
    """Turns a ModuleNotFoundError of an optional dependency raised inside the block into one
    that names ``feature`` (what needed it), the package and the commands that install it."""
    try:
        yield
    except ModuleNotFoundError as error:
        top = (error.name or "").split(".")[0]
        if top not in _PACKAGES:
            raise
        package, extra = _PACKAGES[top]
        raise ModuleNotFoundError(
            f"{feature} needs {package}, which is not installed: pip install {package} "
            f"(or, in a clone of relay_ml, pip install -e '.[{extra}]')",
            name=error.name,
        ) from error
