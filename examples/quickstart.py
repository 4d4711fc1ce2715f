"""End to end on a sample dataset: write an Arrow file, map it, hand columns to NumPy and
torch without copying, and train a small classifier on them.

    python examples/quickstart.py [--rows 2000000] [--out sample.arrow]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch

import relay_ml as relay
from relay_ml._relay import inspect_file
from relay_ml.cli import format_report


def make_sample(path: Path, rows: int, seed: int = 0) -> None:
    """A `tab`-like table: 8 float32 features, an int64 label that depends on them, a city."""
    rng = np.random.default_rng(seed)
    features = rng.standard_normal((rows, 8), dtype=np.float32)
    weights = rng.standard_normal((8, 4)).astype(np.float32)
    label = (features @ weights).argmax(axis=1).astype(np.int64)
    columns = {
        "id": np.arange(rows, dtype=np.int64),
        "age": rng.integers(0, 100, rows, dtype=np.int32),
    }
    columns |= {f"f{i}": features[:, i].copy() for i in range(8)}
    columns["label"] = label
    table = pa.table(columns)
    table = table.append_column(
        "city",
        pa.DictionaryArray.from_arrays(
            rng.integers(0, 4, rows, dtype=np.int32), ["oslo", "rome", "lima", "pune"]
        ),
    )
    tmp = path.with_suffix(".tmp")
    with pa.ipc.new_file(tmp, table.schema) as writer:
        writer.write_table(table, max_chunksize=rows)  # one record batch: every column is one view
    os.replace(tmp, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--out", type=Path, default=Path("sample.arrow"))
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()

    if not args.out.exists():
        started = time.perf_counter()
        make_sample(args.out, args.rows)
        print(
            f"wrote {args.out} ({args.out.stat().st_size / 2**20:.0f} MiB) in "
            f"{time.perf_counter() - started:.1f} s"
        )

    started = time.perf_counter()
    frame = relay.scan(args.out)
    opened_ms = (time.perf_counter() - started) * 1e3
    print(f"\nopened {len(frame):,} rows in {opened_ms:.3f} ms\n")
    print(frame.select(["id", "age", "f0", "f1", "label", "city"]))
    print()
    print(format_report(inspect_file(str(args.out))))

    # Each feature column is a read-only view of the mapped file; torch sees the same bytes.
    names = [f"f{i}" for i in range(8)]
    feature_views = [frame[name].to_numpy(zero_copy=True) for name in names]
    label = frame["label"].to_tensor()
    assert label.data_ptr() == frame["label"].to_numpy().ctypes.data
    print(f"\nlabel tensor shares the mapping: data_ptr {label.data_ptr():#x}")

    # The one copy: stack the 8 feature columns into a (rows, 8) training matrix.
    x = torch.from_numpy(np.stack(feature_views, axis=1))
    n_train = int(len(frame) * 0.8)
    model = torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.ReLU(), torch.nn.Linear(32, 4))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    generator = torch.Generator().manual_seed(0)
    started = time.perf_counter()
    for epoch in range(args.epochs):
        order = torch.randperm(n_train, generator=generator)
        for batch in order.split(4096):
            loss = torch.nn.functional.cross_entropy(model(x[batch]), label[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        print(f"epoch {epoch}: loss {loss.item():.4f}")
    with torch.no_grad():
        predicted = model(x[n_train:]).argmax(dim=1)
    accuracy = (predicted == label[n_train:]).float().mean().item()
    print(f"trained in {time.perf_counter() - started:.1f} s; held-out accuracy {accuracy:.3f}")


if __name__ == "__main__":
    main()
