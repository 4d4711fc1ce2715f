"""scikit-learn on relay frames: every result is compared with the same estimator fitted on
NumPy arrays of the same data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

import relay_ml as relay
from conftest import address_in_file_mapping, write_arrow

pytest.importorskip("sklearn")

from sklearn.cluster import MiniBatchKMeans
from sklearn.compose import ColumnTransformer
from sklearn.decomposition import IncrementalPCA
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression, SGDClassifier
from sklearn.model_selection import cross_val_score, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from relay_ml.interop import numpy_batches
from relay_ml.sklearn import partial_fit, predict_batches

FEATURES = ["f0", "f1", "f2", "f3"]


@pytest.fixture
def tab(tmp_path: Path) -> tuple[Path, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    n = 600
    x = rng.standard_normal((n, 4)).astype(np.float32)
    target = ((x[:, 0] + 0.5 * x[:, 1] - x[:, 3]) > 0).astype(np.int64) + (x[:, 2] > 1).astype(
        np.int64
    )
    table = pa.table(
        {
            **{name: x[:, j] for j, name in enumerate(FEATURES)},
            "age": rng.integers(0, 99, n).astype(np.int32),
            "target": target,
        }
    )
    return write_arrow(tmp_path / "tab.arrow", table), x, target


def test_seed_example_random_forest(tab: tuple[Path, np.ndarray, np.ndarray]) -> None:
    path, x, target = tab
    df = relay.scan(path)
    model = RandomForestClassifier(n_estimators=20, random_state=0)
    model.fit(df.select(FEATURES), df["target"])
    reference = RandomForestClassifier(n_estimators=20, random_state=0).fit(x, target)
    assert list(model.feature_names_in_) == FEATURES
    np.testing.assert_array_equal(model.predict(df.select(FEATURES)), reference.predict(x))
    np.testing.assert_array_equal(
        model.predict_proba(df.select(FEATURES)), reference.predict_proba(x)
    )


def test_frame_becomes_one_2d_array_and_target_a_view(
    tab: tuple[Path, np.ndarray, np.ndarray],
) -> None:
    path, x, _target = tab
    df = relay.scan(path)
    matrix = np.asarray(df.select(FEATURES))
    assert matrix.shape == (600, 4) and matrix.dtype == np.float32
    np.testing.assert_array_equal(matrix, x)
    y = np.asarray(df["target"])
    assert address_in_file_mapping(y.ctypes.data, path)
    with pytest.raises(ValueError, match="copying"):
        np.asarray(df.select(FEATURES), copy=False)


def test_feature_names_are_checked_at_predict(tab: tuple[Path, np.ndarray, np.ndarray]) -> None:
    path, _, _ = tab
    df = relay.scan(path)
    model = LogisticRegression().fit(df.select(FEATURES), df["target"])
    with pytest.raises(ValueError, match="feature names"):
        model.predict(df.select(list(reversed(FEATURES))))


def test_pipeline_equals_numpy(tab: tuple[Path, np.ndarray, np.ndarray]) -> None:
    path, x, target = tab
    df = relay.scan(path)
    pipeline = make_pipeline(StandardScaler(), LogisticRegression()).fit(
        df.select(FEATURES), df["target"]
    )
    reference = make_pipeline(StandardScaler(), LogisticRegression()).fit(x, target)
    np.testing.assert_allclose(pipeline[-1].coef_, reference[-1].coef_, rtol=1e-6)
    np.testing.assert_array_equal(pipeline.predict(df.select(FEATURES)), reference.predict(x))
    assert list(pipeline.feature_names_in_) == FEATURES


def test_column_transformer_selects_by_name(tab: tuple[Path, np.ndarray, np.ndarray]) -> None:
    path, x, target = tab
    df = relay.scan(path)
    transformer = ColumnTransformer(
        [("scaled", StandardScaler(), ["f0", "f1"]), ("kept", "passthrough", ["f3"])]
    )
    model = make_pipeline(transformer, LogisticRegression()).fit(df, df["target"])
    reference = make_pipeline(
        ColumnTransformer([("scaled", StandardScaler(), [0, 1]), ("kept", "passthrough", [3])]),
        LogisticRegression(),
    ).fit(x, target)
    np.testing.assert_allclose(model[-1].coef_, reference[-1].coef_, rtol=1e-6)
    assert list(transformer.get_feature_names_out()) == ["scaled__f0", "scaled__f1", "kept__f3"]
    np.testing.assert_array_equal(model.predict(df), reference.predict(x))


def test_train_test_split_keeps_frames_and_columns(
    tab: tuple[Path, np.ndarray, np.ndarray],
) -> None:
    path, x, target = tab
    df = relay.scan(path)
    x_train, x_test, y_train, y_test = train_test_split(
        df.select(FEATURES), df["target"], random_state=1
    )
    expected = train_test_split(x, target, random_state=1)
    assert isinstance(x_train, relay.Frame) and isinstance(y_train, relay.Column)
    for got, want in zip((x_train, x_test, y_train, y_test), expected, strict=True):
        np.testing.assert_array_equal(np.asarray(got), want)


def test_cross_val_score_equals_numpy(tab: tuple[Path, np.ndarray, np.ndarray]) -> None:
    path, x, target = tab
    df = relay.scan(path).filter(relay.col("age") >= 10)  # a filtered frame: rows by selection
    keep = pa.ipc.open_file(path).read_all()["age"].to_numpy() >= 10
    scores = cross_val_score(LogisticRegression(), df.select(FEATURES), df["target"], cv=4)
    reference = cross_val_score(LogisticRegression(), x[keep], target[keep], cv=4)
    np.testing.assert_allclose(scores, reference)


def test_in_memory_frames_fit_too() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((200, 3))
    y = (x[:, 0] > 0).astype(np.int64)
    frame = relay.from_numpy(
        {"a": x[:, 0].copy(), "b": x[:, 1].copy(), "c": x[:, 2].copy(), "y": y}
    )
    model = LogisticRegression().fit(frame.select("a", "b", "c"), frame["y"])
    np.testing.assert_allclose(model.coef_, LogisticRegression().fit(x, y).coef_, rtol=1e-6)


# -- incremental fitting --------------------------------------------------------------------


def _manual_partial_fit(
    estimator, frame, target, batch_size, epochs, shuffle, classes=None, seed=0
):  # type: ignore[no-untyped-def]
    columns = FEATURES + ([target] if target else [])
    first = True
    for epoch in range(epochs):
        for batch in numpy_batches(
            frame, batch_size, columns=columns, shuffle=shuffle, seed=seed, epoch=epoch
        ):
            x = np.column_stack([batch[name] for name in FEATURES])
            kwargs = {"classes": classes} if first and classes is not None else {}
            if target:
                estimator.partial_fit(x, batch[target], **kwargs)
            else:
                estimator.partial_fit(x, **kwargs)
            first = False
    return estimator


@pytest.mark.parametrize("shuffle", [False, True])
def test_partial_fit_sgd_equals_numpy_batches(
    tab: tuple[Path, np.ndarray, np.ndarray], shuffle: bool
) -> None:
    path, _, target = tab
    df = relay.scan(path)
    model = partial_fit(
        SGDClassifier(random_state=0),
        df,
        FEATURES,
        "target",
        batch_size=128,
        epochs=3,
        shuffle=shuffle,
    )
    reference = _manual_partial_fit(
        SGDClassifier(random_state=0),
        df,
        "target",
        128,
        3,
        "global" if shuffle else None,
        classes=np.unique(target),
    )
    np.testing.assert_allclose(model.coef_, reference.coef_)
    assert list(model.feature_names_in_) == FEATURES
    np.testing.assert_array_equal(model.classes_, np.unique(target))
    predictions = predict_batches(model, df, FEATURES, batch_size=100)
    np.testing.assert_array_equal(predictions, reference.predict(np.asarray(df.select(FEATURES))))


def test_partial_fit_unsupervised(tab: tuple[Path, np.ndarray, np.ndarray]) -> None:
    path, x, _ = tab
    df = relay.scan(path)
    kmeans = partial_fit(
        MiniBatchKMeans(n_clusters=3, random_state=0, n_init=1),
        df,
        FEATURES,
        batch_size=150,
        shuffle=False,
    )
    reference = _manual_partial_fit(
        MiniBatchKMeans(n_clusters=3, random_state=0, n_init=1), df, None, 150, 1, None
    )
    np.testing.assert_allclose(kmeans.cluster_centers_, reference.cluster_centers_, rtol=1e-5)
    pca = partial_fit(IncrementalPCA(n_components=2), df, FEATURES, batch_size=200, shuffle=False)
    np.testing.assert_allclose(
        np.abs(predict_batches(pca, df, FEATURES, batch_size=128, method="transform")),
        np.abs(IncrementalPCA(n_components=2, batch_size=200).fit(x).transform(x)),
        rtol=1e-4,
        atol=1e-5,
    )


def test_partial_fit_checks_its_arguments(tab: tuple[Path, np.ndarray, np.ndarray]) -> None:
    path, _, _ = tab
    df = relay.scan(path)
    with pytest.raises(relay.RelayTypeError, match="partial_fit"):
        partial_fit(RandomForestClassifier(), df, FEATURES, "target")
    with pytest.raises(relay.ColumnNotFoundError):
        partial_fit(SGDClassifier(), df, ["nope"], "target")
    with pytest.raises(relay.RelayValueError, match="shuffle"):
        partial_fit(SGDClassifier(), df, FEATURES, "target", shuffle="sideways")


def test_partial_fit_progress_bar(
    tab: tuple[Path, np.ndarray, np.ndarray], capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("tqdm")
    path, _, _ = tab
    partial_fit(
        SGDClassifier(random_state=0),
        relay.scan(path),
        FEATURES,
        "target",
        batch_size=200,
        progress=True,
    )
    assert "3/3" in capsys.readouterr().err


def test_example_runs() -> None:
    import subprocess
    import sys

    example = Path(__file__).resolve().parent.parent / "examples" / "sklearn_fit.py"
    result = subprocess.run(
        [sys.executable, "-W", "error", str(example), "--rows", "20000"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    assert "partial_fit over 20,000 rows" in result.stdout
