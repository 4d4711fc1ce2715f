"""Train a softmax classifier in JAX on shuffled batches of a memory-mapped Arrow file.

    python examples/jax_train.py [--rows 200000] [--epochs 3] [--out jax_sample.arrow]

Batches are gathered by relay (one parallel gather per column, no worker processes) and put
on JAX's device; with several devices, pass a ``jax.sharding.NamedSharding`` to split each
batch across them (see ``relay_ml.jax.iter_batches``).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pyarrow as pa

import relay_ml as relay
from relay_ml.jax import explain, iter_batches, to_jax

FEATURES = [f"f{i}" for i in range(8)]
CLASSES = 4


def make_sample(path: Path, rows: int, seed: int = 0) -> None:
    """One fixed_size_list<float32, 8> feature column and an int64 label that depends on it."""
    rng = np.random.default_rng(seed)
    features = rng.standard_normal((rows, 8), dtype=np.float32)
    weights = rng.standard_normal((8, CLASSES)).astype(np.float32)
    label = (features @ weights).argmax(axis=1).astype(np.int64)
    table = pa.table(
        {"x": pa.FixedSizeListArray.from_arrays(pa.array(features.ravel()), 8), "label": label}
    )
    with pa.ipc.new_file(path, table.schema) as writer:
        writer.write_table(table, max_chunksize=rows)


def loss_fn(params: dict[str, jax.Array], x: jax.Array, label: jax.Array) -> jax.Array:
    logits = x @ params["w"] + params["b"]
    return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), label[:, None], axis=1))


@jax.jit
def step(
    params: dict[str, jax.Array], x: jax.Array, label: jax.Array
) -> tuple[dict[str, jax.Array], jax.Array]:
    loss, grads = jax.value_and_grad(loss_fn)(params, x, label)
    return jax.tree_util.tree_map(lambda p, g: p - 0.5 * g, params, grads), loss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        path = args.out or Path(scratch) / "jax_sample.arrow"
        make_sample(path, args.rows)
        run(path, args.epochs, args.batch_size)


def run(path: Path, epochs: int, batch_size: int) -> None:
    frame = relay.scan(path)
    # How each column reaches JAX: a DLPack view when 64-byte aligned, else one copy, and why.
    print(explain(frame))
    params = {"w": jnp.zeros((8, CLASSES)), "b": jnp.zeros(CLASSES)}
    for epoch in range(epochs):
        start, losses, rows = time.perf_counter(), [], 0
        for batch in iter_batches(
            frame, batch_size, shuffle=True, seed=0, epoch=epoch, drop_last=True
        ):
            params, loss = step(params, batch["x"], batch["label"])
            losses.append(loss)
            rows += batch_size
        seconds = time.perf_counter() - start
        print(
            f"epoch {epoch}: loss {float(jnp.mean(jnp.stack(losses))):.4f}, {rows / seconds:,.0f} "
            "rows/s"
        )
    # Whole columns at once for evaluation (int64 labels become int32 under JAX's 32-bit mode).
    columns = to_jax(frame)
    accuracy = float(
        jnp.mean((columns["x"] @ params["w"] + params["b"]).argmax(axis=1) == columns["label"])
    )
    print(f"accuracy: {accuracy:.3f}")
    assert accuracy > 0.8, accuracy


if __name__ == "__main__":
    main()
