"""Train a small MLP on a memory-mapped Arrow file through relay_ml.torch.loader.

Writes a sample dataset (features f0..f15, a 4-class label that depends on them, a split
column), then trains on the rows with split == "train" and reports accuracy on the others.
Nothing is loaded into memory up front: each batch is gathered from the mapped file by Rust
threads while the previous batch trains.

    python examples/train_torch.py [--rows 400000] [--epochs 3] [--out examples/train.arrow]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch
from torch import nn

import relay_ml as relay
from relay_ml.torch import loader

FEATURES = [f"f{i}" for i in range(16)]


def write_sample(path: Path, rows: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((rows, len(FEATURES))).astype(np.float32)
    weights = rng.standard_normal((len(FEATURES), 4)).astype(np.float32)
    logits = x @ weights + 0.5 * rng.standard_normal((rows, 4)).astype(np.float32)
    columns = {name: x[:, i] for i, name in enumerate(FEATURES)}
    columns["label"] = logits.argmax(axis=1).astype(np.int64)
    columns["split"] = pa.array(
        np.where(rng.random(rows) < 0.8, "train", "test")
    ).dictionary_encode()
    table = pa.table(columns)
    with pa.ipc.new_file(path, table.schema) as writer:
        writer.write_table(table, max_chunksize=rows)


def accuracy(model: nn.Module, frame: relay.Frame) -> float:
    correct = total = 0
    model.eval()
    with torch.no_grad():
        for x, y in loader(frame, 8192, features=FEATURES, target="label"):
            correct += int((model(x).argmax(dim=1) == y).sum())
            total += len(y)
    return correct / total


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=400_000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--out", type=Path, default=Path("examples/train.arrow"))
    args = parser.parse_args()

    write_sample(args.out, args.rows)
    frame = relay.scan(args.out)
    train = frame.filter(relay.col("split") == "train")
    test = frame.filter(relay.col("split") == "test")

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(len(FEATURES), 64), nn.ReLU(), nn.Linear(64, 4))
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    batches = loader(
        train, args.batch_size, features=FEATURES, target="label", shuffle="global", seed=0
    )
    print(
        f"{len(train):,} training rows, {len(test):,} test rows, {len(batches)} batches per epoch"
    )
    for epoch in range(args.epochs):
        model.train()
        started, seen, total_loss = time.perf_counter(), 0, 0.0
        for x, y in batches:
            optimizer.zero_grad()
            loss = nn.functional.cross_entropy(model(x), y)
            loss.backward()
            optimizer.step()
            seen += len(y)
            total_loss += loss.item() * len(y)
        elapsed = time.perf_counter() - started
        print(
            f"epoch {epoch}: loss {total_loss / seen:.4f}, {seen / elapsed:,.0f} rows/s (training "
            "included)"
        )
    final = accuracy(model, test)
    print(f"test accuracy: {final:.3f}")
    if final < 0.7:
        raise SystemExit(f"accuracy {final:.3f} is below 0.7: training did not work")


if __name__ == "__main__":
    main()
