"""scikit-learn integration: frames and columns as estimator inputs, incremental fitting.

Frames and columns go straight into scikit-learn::

    model = RandomForestClassifier().fit(frame.select(features), frame["target"])

A :class:`~relay_ml.Frame` becomes the 2-D array estimators need in one parallel gather
(``np.asarray(frame)``, :meth:`Frame.to_numpy`), and its column names reach
``feature_names_in_``. ``train_test_split``, ``cross_val_score``, ``Pipeline`` and
``ColumnTransformer`` (columns chosen by name) work on frames and columns too: scikit-learn
reads names and picks rows and columns through narwhals, which relay frames answer with lazy
relay operations (``take``, ``select``). A column target is a view of the file where it can be.

For data larger than memory, :func:`partial_fit` streams a frame through an estimator's
``partial_fit`` (``SGDClassifier``, ``MiniBatchKMeans``, ``IncrementalPCA``, ...) in batches,
and :func:`predict_batches` predicts batch by batch; both hold one batch at a time.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from relay_ml._core import check_batch_size
from relay_ml._optional import needs
from relay_ml.errors import RelayTypeError, RelayValueError
from relay_ml.frame import Frame
from relay_ml.interop import from_numpy, numpy_batches, shuffle_mode

__all__ = ["partial_fit", "predict_batches"]


def partial_fit(
    estimator: Any,
    frame: Frame,
    features: list[str],
    target: str | None = None,
    batch_size: int = 65_536,
    epochs: int = 1,
    shuffle: bool | str | None = True,
    classes: Any = None,
    *,
    seed: int = 0,
    progress: bool = False,
) -> Any:
    """Fits ``estimator`` on ``frame`` batch by batch through its ``partial_fit``.

    Each batch holds ``features`` (and ``target``) for ``batch_size`` rows, gathered by relay
    (``relay_ml.batches``), and is passed as a small frame so that the estimator records
    ``feature_names_in_`` as with ``fit``. Memory stays at about one batch, whatever the size
    of the frame.

    Args:
        estimator: an estimator with ``partial_fit`` (``SGDClassifier``, ``SGDRegressor``,
            ``MiniBatchKMeans``, ``IncrementalPCA``, ``MultinomialNB``, ...).
        frame: the training rows.
        features: the feature column names, in order.
        target: the target column; None for unsupervised estimators.
        batch_size: rows per ``partial_fit`` call.
        epochs: passes over the frame; each epoch is shuffled differently (same ``seed``).
        shuffle: ``"global"`` for a uniform shuffle per epoch, ``"block"`` for shuffled blocks
            of rows (pieces, for Parquet / CSV / NDJSON read piece by piece in bounded memory),
            ``True`` for the first where rows can be read by position and the second otherwise,
            ``False`` / None for file order.
        classes: all class labels, which classifiers need on the first call. When None and
            the estimator is a classifier, they are read from the target column first (one
            pass over that column).
        seed: the shuffle's seed.
        progress: show a tqdm progress bar (needs ``tqdm``).

    Returns:
        The estimator, fitted.
    """
    if not hasattr(estimator, "partial_fit"):
        raise RelayTypeError(
            f"{type(estimator).__name__} has no partial_fit(); use "
            "estimator.fit(frame.select(features), ...) or an incremental estimator "
            "(SGDClassifier, MiniBatchKMeans, IncrementalPCA, ...)"
        )
    check_batch_size(batch_size)
    if not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 1:
        raise RelayValueError(f"epochs must be an int >= 1, got {epochs!r}")
    features = _feature_list(frame, features)
    columns = features + ([target] if target is not None else [])
    for name in columns:
        frame[name]  # raises ColumnNotFoundError naming the frame's columns
    mode = shuffle_mode(shuffle)
    extra: dict[str, Any] = {}
    if target is not None and _is_classifier(estimator):
        if classes is None:
            classes = np.unique(np.asarray(frame[target]))
        extra["classes"] = np.asarray(classes)
    total = -(-frame.num_rows // batch_size) * epochs
    bar = _progress(total, progress, f"partial_fit {type(estimator).__name__}")
    try:
        for epoch in range(epochs):
            for batch in numpy_batches(
                frame, batch_size, columns=columns, shuffle=mode, seed=seed, epoch=epoch
            ):
                x = from_numpy({name: batch[name] for name in features})
                if target is None:
                    estimator.partial_fit(x, **extra)
                else:
                    estimator.partial_fit(x, batch[target], **extra)
                extra.pop("classes", None)  # only the first call needs them
                if bar is not None:
                    bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    return estimator


def predict_batches(
    estimator: Any,
    frame: Frame,
    features: list[str] | None = None,
    batch_size: int = 65_536,
    *,
    method: str = "predict",
    progress: bool = False,
) -> np.ndarray:
    """``estimator.<method>`` over ``frame`` in batches of rows, in order, concatenated.

    Each batch is a slice of the frame (a view of the mapped file for a scan), so memory holds
    one batch of features plus the results. ``method`` may be ``"predict"``,
    ``"predict_proba"``, ``"decision_function"``, ``"transform"``, ``"score_samples"``, ...

    Returns:
        The results of all batches, concatenated along the first axis.
    """
    check_batch_size(batch_size)
    predict = getattr(estimator, method, None)
    if predict is None:
        raise RelayTypeError(f"{type(estimator).__name__} has no method {method}()")
    source = frame.select(_feature_list(frame, features)) if features is not None else frame
    batches = source.iter_batches(batch_size)
    bar = _progress(len(batches), progress, f"{method} {type(estimator).__name__}")
    results = []
    try:
        for batch in batches:
            results.append(np.asarray(predict(batch)))
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    if not results:
        return np.asarray(predict(source.head(0))) if source.num_rows == 0 else np.empty(0)
    return np.concatenate(results, axis=0)


def _feature_list(frame: Frame, features: Iterable[str] | str) -> list[str]:
    if isinstance(features, str):
        return [features]
    names = list(features)
    for name in names:
        if not isinstance(name, str):
            raise RelayTypeError(f"features are column names (str), got {type(name).__name__}")
    return names


def _is_classifier(estimator: Any) -> bool:
    with needs("relay_ml.sklearn"):
        from sklearn.base import is_classifier

    return bool(is_classifier(estimator))


def _progress(total: int, enabled: bool, description: str) -> Any:
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError as error:
        raise ImportError("progress=True needs tqdm: pip install tqdm") from error
    return tqdm(total=total, desc=description, unit="batch")
