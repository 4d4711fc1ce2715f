"""relay_ml.torch across processes: forked workers on a 1 GB file, and torch.distributed ranks."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.utils.data import DataLoader

import relay_ml as relay
from conftest import rss_anon_bytes, write_arrow
from relay_ml.torch import RelayIterableDataset

EMB_ROWS = 4_000_000  # 4 M x 64 float32 = 1.0 GB
EMB_DIM = 64


@pytest.fixture(scope="module")
def big_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    values = np.empty(EMB_ROWS * EMB_DIM, dtype=np.float32)
    values.reshape(EMB_ROWS, EMB_DIM)[:] = np.arange(EMB_ROWS, dtype=np.float32)[:, None]
    table = pa.table(
        {
            "emb": pa.FixedSizeListArray.from_arrays(pa.array(values), EMB_DIM),
            "id": np.arange(EMB_ROWS, dtype=np.int64),
        }
    )
    del values
    return write_arrow(tmp_path_factory.mktemp("big") / "emb.arrow", table)


def _worker_memory(batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[int, int, int, bool]:
    """Runs in the worker: (pid, RssAnon now, rows, rows consistent) instead of the batch."""
    x, y = batch
    consistent = bool(torch.equal(x[:, 0], y.to(torch.float32)) and torch.equal(x[:, -1], x[:, 0]))
    return os.getpid(), rss_anon_bytes(), len(y), consistent


# The issue asks for four workers; this machine has two cores, which torch warns about.
@pytest.mark.filterwarnings("ignore:This DataLoader will create 4 worker processes:UserWarning")
def test_forked_workers_do_not_copy_the_mapping(big_file: Path) -> None:
    """Four forked workers read the whole 1 GB file: their anonymous memory stays flat (no
    copy-on-access of the mapping, no per-worker copy of the data)."""
    frame = relay.scan(big_file)
    frame["emb"].to_numpy()  # the parent has the file mapped and touched before forking
    ds = RelayIterableDataset(
        frame,
        8_192,
        features=["emb"],
        target="id",
        shuffle="global",
        seed=0,
        transform=_worker_memory,
    )
    reports = list(DataLoader(ds, batch_size=None, num_workers=4, multiprocessing_context="fork"))
    assert sum(rows for _, _, rows, _ in reports) == EMB_ROWS
    assert all(consistent for *_, consistent in reports)
    by_worker: dict[int, list[int]] = {}
    for pid, rss, _, _ in reports:
        by_worker.setdefault(pid, []).append(rss)
    assert len(by_worker) == 4
    for pid, samples in by_worker.items():
        growth = max(samples) - samples[0]
        # Each worker gathered 256 MB of rows; its heap may hold a few batches (2 MB each).
        assert growth < 48 * 2**20, (
            f"worker {pid} grew its anonymous memory by {growth / 2**20:.0f} MiB"
        )


def _rank_main(rank: int, world_size: int, path: str, init_file: str, out_dir: str) -> None:
    dist.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size
    )
    try:
        frame = relay.scan(path).filter(relay.col("id") % 3 != 0)
        ds = RelayIterableDataset(
            frame, 1_000, features=["emb"], target="id", shuffle="global", seed=1
        )
        ds.set_epoch(2)
        ids = torch.cat([y for _, y in DataLoader(ds, batch_size=None, num_workers=2)])
        gathered: list[list[int] | None] = [None] * world_size
        dist.all_gather_object(gathered, ids.tolist())
        if rank == 0:
            np.save(
                os.path.join(out_dir, "ids.npy"),
                np.array([np.array(g) for g in gathered], dtype=object),
                allow_pickle=True,
            )
    finally:
        dist.destroy_process_group()


def test_distributed_ranks_shard_disjointly(tmp_path: Path) -> None:
    n = 60_000
    table = pa.table(
        {
            "emb": pa.FixedSizeListArray.from_arrays(pa.array(np.zeros(n * 4, np.float32)), 4),
            "id": np.arange(n, dtype=np.int64),
        }
    )
    path = write_arrow(tmp_path / "d.arrow", table)
    mp.spawn(
        _rank_main, args=(2, str(path), str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True
    )
    per_rank = np.load(tmp_path / "ids.npy", allow_pickle=True)
    first, second = (set(ids.tolist()) for ids in per_rank)
    assert len(first) + len(second) == sum(len(ids) for ids in per_rank)  # no repeats within a rank
    assert not first & second
    assert first | second == {i for i in range(n) if i % 3 != 0}
    assert abs(len(first) - len(second)) <= 1


_EPOCH_MEMORY_SCRIPT = """
import json, sys
import torch
import relay_ml as relay
from relay_ml.torch import loader
from conftest import rss_anon_bytes

frame = relay.scan(sys.argv[1])
batches = iter(
    loader(frame, 8_192, features=["emb"], target="id", shuffle="global", seed=3, prefetch=2)
)
next(batches)  # the epoch's order (16 MB of positions) and the first batches exist from here on
start = rss_anon_bytes()
rows, quarter = 0, None
for k, (x, y) in enumerate(batches):
    rows += len(y)
    if k == 120:
        quarter = rss_anon_bytes()
print(json.dumps({"rows": rows, "start": start, "quarter": quarter, "end": rss_anon_bytes(),
                  "consistent": bool(torch.equal(x[:, 0], y.to(torch.float32)))}))
"""


def test_loader_epoch_keeps_anonymous_memory_flat(big_file: Path) -> None:
    """A whole shuffled epoch over the 1 GB file holds no more than a few batches: memory after
    a quarter of the epoch (the allocator has warmed up on batch-sized blocks) is what it is at
    the end, and never more than a handful of 2 MB batches above the start. Measured in a fresh
    process, so that nothing else this test session left running allocates meanwhile."""
    import json
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", _EPOCH_MEMORY_SCRIPT, str(big_file)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=Path(__file__).parent,
        check=True,
    )
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["rows"] == EMB_ROWS - 8_192 and report["consistent"]
    mib = 2**20
    late, total = report["end"] - report["quarter"], report["end"] - report["start"]
    assert late < 8 * mib, f"anonymous memory grew by {late / mib:.1f} MiB over 3/4 of the epoch"
    assert total < 48 * mib, f"anonymous memory grew by {total / mib:.1f} MiB over the epoch"
