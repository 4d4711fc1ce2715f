"""GPU check for relay_ml.torch.loader on the `emb` workload (needs CUDA).

Compares, in one run on the same machine:
- relay: ``loader(frame, 1024, features=["emb"], target="label", shuffle="global",
  pin_memory=True, device="cuda")``;
- hand-written: NumPy fancy indexing of the mapped buffers into a pinned buffer
  (``np.take(..., out=pinned.numpy())``), then ``copy_(non_blocking=True)`` to the device;
and checks that relay's device batches equal the CPU path's batches.

Usage: python benchmarks/gpu_loader_check.py [--data benchmarks/data] [--batches 3000]
(generates ``emb.arrow`` with make_data.py when missing).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import make_data  # noqa: E402
import relay_ml as relay  # noqa: E402
from relay_ml.batches import epoch_order  # noqa: E402
from relay_ml.torch import loader  # noqa: E402

BATCH = 1024


def relay_rate(frame: relay.Frame, batches: int) -> float:
    run = iter(
        loader(
            frame,
            BATCH,
            features=["emb"],
            target="label",
            shuffle="global",
            seed=0,
            pin_memory=True,
            device="cuda",
        )
    )
    next(run)
    torch.cuda.synchronize()
    started = time.perf_counter()
    rows = 0
    for k, (_x, y) in enumerate(run):
        rows += len(y)
        if k + 1 == batches:
            break
    torch.cuda.synchronize()
    return rows / (time.perf_counter() - started)


def hand_written_rate(path: Path, batches: int) -> float:
    batch = pa.ipc.open_file(pa.memory_map(str(path))).get_batch(0)
    n = batch.num_rows
    emb = batch.column("emb").flatten().to_numpy().reshape(n, -1)
    label = batch.column("label").to_numpy()
    order = epoch_order(n, "global", 0, 0).astype(np.int64)
    pinned = [
        (
            torch.empty((BATCH, emb.shape[1]), dtype=torch.float32, pin_memory=True),
            torch.empty(BATCH, dtype=torch.int64, pin_memory=True),
        )
        for _ in range(2)
    ]
    copied = [torch.cuda.Event() for _ in range(2)]
    started = None
    rows = 0
    for k in range(batches + 1):
        if k == 1:
            torch.cuda.synchronize()
            started = time.perf_counter()
        x_host, y_host = pinned[k % 2]
        copied[k % 2].synchronize()  # the pinned buffer's previous copy has finished
        idx = order[k * BATCH : (k + 1) * BATCH]
        np.take(emb, idx, axis=0, out=x_host.numpy())
        np.take(label, idx, out=y_host.numpy())
        # Held until the next step, like a training step holds its input.
        _x = torch.empty_like(x_host, device="cuda").copy_(x_host, non_blocking=True)
        y = torch.empty_like(y_host, device="cuda").copy_(y_host, non_blocking=True)
        copied[k % 2].record()
        if k:
            rows += len(y)
    torch.cuda.synchronize()
    assert started is not None
    return rows / (time.perf_counter() - started)


def check_equal(frame: relay.Frame, batches: int = 20) -> None:
    cpu = loader(frame, BATCH, features=["emb"], target="label", shuffle="global", seed=0)
    gpu = loader(
        frame,
        BATCH,
        features=["emb"],
        target="label",
        shuffle="global",
        seed=0,
        pin_memory=True,
        device="cuda",
    )
    for k, ((xc, yc), (xg, yg)) in enumerate(zip(cpu, gpu, strict=True)):
        assert xg.is_cuda and torch.equal(xc, xg.cpu()) and torch.equal(yc, yg.cpu()), (
            f"batch {k} differs"
        )
        if k + 1 == batches:
            break


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=HERE / "data")
    parser.add_argument("--batches", type=int, default=3000)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("CUDA is not available: nothing to check")
        return 1
    path = make_data.make(args.data, "emb")
    frame = relay.scan(path)
    check_equal(frame)
    hand = hand_written_rate(path, args.batches)
    ours = relay_rate(frame, args.batches)
    print(f"device: {torch.cuda.get_device_name()}")
    print(f"hand-written gather + pinned copy: {hand / 1e6:.2f} M rows/s")
    print(f"relay loader (pin_memory, device): {ours / 1e6:.2f} M rows/s ({ours / hand:.2f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
