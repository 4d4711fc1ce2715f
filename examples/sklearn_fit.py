"""scikit-learn on a memory-mapped Arrow file: fit on frames, cross-validate, and train an
incremental model batch by batch.

    python examples/sklearn_fit.py [--rows 200000] [--out sklearn_sample.arrow]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import SGDClassifier
from sklearn.model_selection import cross_val_score, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import relay_ml as relay
from relay_ml.sklearn import partial_fit, predict_batches

FEATURES = [f"f{i}" for i in range(8)]


def make_sample(path: Path, rows: int, seed: int = 0) -> None:
    """8 float32 features, an int32 age, and an int64 label that depends on the features."""
    rng = np.random.default_rng(seed)
    features = rng.standard_normal((rows, 8), dtype=np.float32)
    weights = rng.standard_normal((8, 4)).astype(np.float32)
    label = (features @ weights).argmax(axis=1).astype(np.int64)
    columns = {f"f{i}": features[:, i].copy() for i in range(8)}
    columns |= {"age": rng.integers(0, 100, rows, dtype=np.int32), "label": label}
    table = pa.table(columns)
    with pa.ipc.new_file(path, table.schema) as writer:
        writer.write_table(table, max_chunksize=rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        path = args.out or Path(scratch) / "sklearn_sample.arrow"
        make_sample(path, args.rows)
        run(path)


def run(path: Path) -> None:
    df = relay.scan(path)
    adults = df.filter(relay.col("age") >= 18)  # lazy: a selection of rows, no copy yet
    print(f"{path.name}: {df.num_rows:,} rows, {adults.num_rows:,} with age >= 18")

    # The seed example: a frame of features and a column target, as scikit-learn takes arrays.
    start = time.perf_counter()
    model = RandomForestClassifier(n_estimators=20, max_depth=8, n_jobs=-1, random_state=0)
    model.fit(adults.select(FEATURES), adults["label"])
    print(
        f"random forest fitted in {time.perf_counter() - start:.2f} s on "
        f"{list(model.feature_names_in_)}"
    )

    # The same estimator on NumPy arrays of the same rows gives the same model.
    x, y = adults.select(FEATURES).to_numpy(), adults["label"].to_numpy()
    reference = RandomForestClassifier(n_estimators=20, max_depth=8, n_jobs=-1, random_state=0).fit(
        x, y
    )
    assert np.array_equal(model.predict(adults.select(FEATURES)), reference.predict(x))

    # Splits and cross-validation keep frames and columns (rows are picked lazily).
    x_train, x_test, y_train, y_test = train_test_split(
        adults.select(FEATURES), adults["label"], random_state=0
    )
    pipeline = make_pipeline(StandardScaler(), SGDClassifier(random_state=0)).fit(x_train, y_train)
    print(f"pipeline test accuracy: {pipeline.score(x_test, y_test):.3f}")
    scores = cross_val_score(
        make_pipeline(StandardScaler(), SGDClassifier(random_state=0)),
        adults.select(FEATURES),
        adults["label"],
        cv=3,
    )
    print(f"cross-validation accuracy: {scores.mean():.3f} ± {scores.std():.3f}")

    # Larger than memory: stream shuffled batches through partial_fit, predict batch by batch.
    start = time.perf_counter()
    incremental = partial_fit(
        SGDClassifier(random_state=0), df, FEATURES, "label", batch_size=16_384, epochs=2
    )
    predictions = predict_batches(incremental, df, FEATURES, batch_size=65_536)
    accuracy = float((predictions == df["label"].to_numpy()).mean())
    print(
        f"partial_fit over {df.num_rows:,} rows (2 epochs) in {time.perf_counter() - start:.2f} s, "
        f"accuracy {accuracy:.3f}"
    )
    assert accuracy > 0.6, accuracy


if __name__ == "__main__":
    main()
