"""Training on sources larger than memory: decoded files read piece by piece, keyed O(1)
orders, and the piece cache of map-style datasets. Rows are checked against pyarrow's reading
of the same files; memory claims are measured (RssAnon) in fresh interpreters."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import torch

import relay_ml as relay
from conftest import write_arrow
from relay_ml import col
from relay_ml.batches import BatchReader, iter_batches
from relay_ml.torch import RelayDataset, RelayIterableDataset, loader

FEATURES = ["f0", "f1"]


def _table(start: int, n: int) -> pa.Table:
    rng = np.random.default_rng(start)
    return pa.table(
        {
            "id": np.arange(start, start + n, dtype=np.int64),
            "age": rng.integers(0, 100, n).astype(np.int32),
            "f0": rng.standard_normal(n).astype(np.float32),
            "f1": rng.standard_normal(n).astype(np.float32),
            "emb": pa.FixedSizeListArray.from_arrays(
                pa.array(rng.standard_normal(n * 3).astype(np.float32)), 3
            ),
            "label": rng.integers(0, 10, n).astype(np.int64),
        }
    )


@pytest.fixture
def shards(tmp_path: Path) -> tuple[str, pa.Table]:
    """Three Parquet files of 7 row groups of 300 rows (the last one short) and a CSV-free
    pyarrow reading of all of them, in file order."""
    tables = []
    for index in range(3):
        table = _table(index * 2_000, 2_000)
        pq.write_table(table, tmp_path / f"part-{index}.parquet", row_group_size=300)
        tables.append(table)
    return str(tmp_path / "*.parquet"), pa.concat_tables(tables)


def _ids(batches) -> np.ndarray:
    return (
        np.concatenate([np.asarray(b["id"]) for b in batches]) if batches else np.empty(0, np.int64)
    )


def test_block_shuffle_visits_every_row_once_in_a_new_order_each_epoch(shards):
    source, table = shards
    frame = relay.scan(source)
    reader = BatchReader(frame, ["id"])
    assert reader.streamed and reader.known_num_rows == table.num_rows
    epochs = [
        _ids(
            list(
                iter_batches(
                    frame, 256, columns=["id"], shuffle="block", seed=3, epoch=e, shuffle_buffer=700
                )
            )
        )
        for e in range(2)
    ]
    for ids in epochs:
        assert sorted(ids) == list(range(6_000))
    assert not np.array_equal(epochs[0], epochs[1])
    again = _ids(
        list(
            iter_batches(
                frame, 256, columns=["id"], shuffle="block", seed=3, epoch=0, shuffle_buffer=700
            )
        )
    )
    np.testing.assert_array_equal(epochs[0], again)
    # Rows are shuffled within windows of at least 700 rows (three row groups or more): the
    # first rows come from several row groups, out of order.
    first = epochs[0][:300]
    assert len({(i // 2_000, (i % 2_000) // 300) for i in first}) >= 2
    assert not np.all(np.diff(first) > 0)


def test_unshuffled_stream_is_file_order_and_batches_span_pieces(shards):
    source, table = shards
    batches = list(iter_batches(relay.scan(source), 512, columns=["id", "f0", "emb", "label"]))
    assert [len(b["id"]) for b in batches] == [512] * 11 + [6_000 - 11 * 512]
    np.testing.assert_array_equal(_ids(batches), table["id"].to_numpy())
    np.testing.assert_array_equal(
        np.concatenate([b["f0"] for b in batches]), table["f0"].to_numpy()
    )
    emb = table["emb"].combine_chunks().flatten().to_numpy().reshape(-1, 3)
    np.testing.assert_array_equal(np.concatenate([b["emb"] for b in batches]), emb)


def test_filters_and_computed_columns_run_per_piece(shards):
    source, table = shards
    frame = relay.scan(source).filter(col("age") > 70).with_column("g", col("f0") * 2 + col("f1"))
    expected = table.filter(pc.greater(table["age"], 70))
    batches = list(
        iter_batches(frame, 100, columns=["id", "g"], shuffle="block", seed=1, shuffle_buffer=500)
    )
    ids = _ids(batches)
    order = np.argsort(ids)
    np.testing.assert_array_equal(ids[order], expected["id"].to_numpy())
    g = np.concatenate([b["g"] for b in batches])[order]
    want = expected["f0"].to_numpy() * 2 + expected["f1"].to_numpy()
    np.testing.assert_allclose(g, want, rtol=1e-6)
    reader = BatchReader(frame, ["id"])
    assert reader.known_num_rows is None and reader.num_rows == expected.num_rows


def test_shards_of_pieces_cover_every_row_once(shards):
    source, table = shards
    frame = relay.scan(source).filter(col("label") != 3)
    expected = set(table.filter(pc.not_equal(table["label"], 3))["id"].to_pylist())
    for world in (1, 2, 3, 5):
        seen: list[int] = []
        for rank in range(world):
            ids = _ids(
                list(
                    iter_batches(
                        frame,
                        64,
                        columns=["id"],
                        shuffle="block",
                        seed=9,
                        rank=rank,
                        world_size=world,
                    )
                )
            )
            seen.extend(ids.tolist())
        assert len(seen) == len(expected) and set(seen) == expected, world


def test_iterable_dataset_resumes_mid_epoch_exactly(shards):
    source, _ = shards
    for frame in (relay.scan(source), relay.scan(source).filter(col("age") < 50)):
        _assert_resumes_mid_epoch_exactly(frame)


def _assert_resumes_mid_epoch_exactly(frame: relay.Frame) -> None:
    def make() -> RelayIterableDataset:
        return RelayIterableDataset(
            frame,
            128,
            features=FEATURES,
            target="label",
            shuffle="block",
            seed=5,
            shuffle_buffer=650,
        )

    full = [y for _, y in make()]
    ds = make()
    it = iter(ds)
    head = [next(it)[1] for _ in range(7)]
    state = ds.state_dict()
    it.close()
    resumed = make()
    resumed.load_state_dict(state)
    rest = [y for _, y in resumed]
    assert len(head) + len(rest) == len(full)
    for a, b in zip(head + rest, full, strict=True):
        assert torch.equal(a, b)


def test_loader_trains_from_parquet_and_knows_its_length(shards):
    source, table = shards
    batches = loader(
        relay.scan(source), 500, features=FEATURES, target="label", shuffle="block", seed=0
    )
    assert len(batches) == 12
    xs, ys = zip(*batches, strict=True)
    assert sum(len(y) for y in ys) == table.num_rows
    assert xs[0].shape == (500, 2) and xs[0].dtype == torch.float32
    filtered = loader(
        relay.scan(source).filter(col("age") > 50), 500, features=FEATURES, shuffle="block"
    )
    with pytest.raises(TypeError, match="known only by reading"):
        len(filtered)
    assert sum(len(x) for x in filtered) == pc.sum(pc.greater(table["age"], 50)).as_py()


def test_global_shuffle_of_a_decoded_source_points_to_block(shards):
    source, _ = shards
    with pytest.raises(
        relay.RelayValueError, match=r"\*\.parquet: shuffle=\"global\".*shuffle=\"block\""
    ):
        next(iter(loader(relay.scan(source), 64, features=FEATURES, shuffle="global")))
    # Collected into memory, the same rows shuffle globally.
    collected = relay.scan(source).collect()
    assert (
        sum(len(x) for x in loader(collected, 1000, features=FEATURES, shuffle="global")) == 6_000
    )


def test_text_sources_stream_too(tmp_path: Path):
    table = _table(0, 3_000).drop_columns(["emb"])
    import pyarrow.csv as pacsv

    pacsv.write_csv(table, tmp_path / "a.csv")
    frame = relay.scan(str(tmp_path / "a.csv"))
    ids = _ids(
        list(iter_batches(frame, 128, columns=["id"], shuffle="block", seed=2, shuffle_buffer=200))
    )
    assert sorted(ids) == list(range(3_000))


def test_map_style_dataset_reads_through_a_bounded_piece_cache(shards):
    source, table = shards
    probe = RelayDataset(relay.scan(source), features=FEATURES, target="label")
    probe[0]
    piece_bytes = probe.profile()["bytes"]  # the decoded columns of one row group, as allocated
    assert probe.profile()["misses"] == 1 and piece_bytes >= 300 * (4 + 4 + 8)
    ds = RelayDataset(
        relay.scan(source), features=FEATURES, target="label", cache_bytes=4 * piece_bytes + 1024
    )
    assert len(ds) == 6_000
    rng = np.random.default_rng(0)
    f0 = table["f0"].to_numpy()
    label = table["label"].to_numpy()
    for _ in range(20):
        indices = rng.integers(0, 6_000, 64)
        x, y = ds.__getitems__(indices.tolist()).output
        np.testing.assert_array_equal(x[:, 0].numpy(), f0[indices])
        np.testing.assert_array_equal(y.numpy(), label[indices])
    stats = ds.profile()
    assert stats["misses"] > 0 and stats["bytes"] <= stats["budget"]
    # Rows near each other hit the cache.
    before = ds.profile()
    for start in range(0, 300, 50):
        ds.__getitems__(list(range(start, start + 50)))
    after = ds.profile()
    assert after["misses"] - before["misses"] <= 1 and after["hits"] - before["hits"] >= 5
    # A filtered source counts its rows once, and maps positions to the filtered rows.
    filtered = RelayDataset(
        relay.scan(source).filter(col("age") >= 90), features=["f0"], cache_bytes=0
    )
    expected = table.filter(pc.greater_equal(table["age"], 90))
    assert len(filtered) == expected.num_rows
    np.testing.assert_array_equal(
        filtered[len(filtered) - 1][0].numpy(), expected["f0"].to_numpy()[-1:]
    )


def test_dataloader_workers_shard_pieces(shards):
    source, _ = shards
    ds = RelayIterableDataset(relay.scan(source), 200, features=["id"], shuffle="block", seed=4)
    seen = torch.cat(
        [x[:, 0] for x in torch.utils.data.DataLoader(ds, batch_size=None, num_workers=2)]
    )
    assert sorted(seen.tolist()) == list(range(6_000))


def _run_isolated(code: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_streaming_a_parquet_file_holds_a_bounded_window(tmp_path: Path):
    """8 M rows (192 MiB of decoded selected columns) streamed with a block shuffle of 256 Ki-row
    windows: anonymous memory grows by the windows in flight, a quarter of the file at most."""
    path = tmp_path / "big.parquet"
    _run_isolated(
        f"""
        import numpy as np, pyarrow as pa, pyarrow.parquet as pq
        schema = pa.schema([("f0", pa.float32()), ("f1", pa.float32()), ("f2", pa.float32()),
                            ("f3", pa.float32()), ("label", pa.int64()), ("age", pa.int32())])
        rng = np.random.default_rng(0)
        with pq.ParquetWriter({str(path)!r}, schema, compression="zstd") as writer:
            for _ in range(8):
                n = 1 << 20
                columns = {{f"f{{i}}": rng.standard_normal(n).astype(np.float32) for i in range(4)}}
                columns["label"] = rng.integers(0, 10, n)
                columns["age"] = rng.integers(0, 100, n).astype(np.int32)
                writer.write_table(pa.table(columns, schema=schema), row_group_size=1 << 18)
        """
    )
    out = _run_isolated(
        f"""
        import sys; sys.path.insert(0, {str(Path(__file__).parent)!r})
        import threading, time
        import relay_ml as relay
        from relay_ml.torch import loader
        from conftest import rss_anon_bytes
        frame = relay.scan({str(path)!r}).with_column("f0", relay.col("f0") * 2)
        batches = loader(frame, 1024, features=["f0", "f1", "f2", "f3"], target="label",
                         shuffle="block", seed=0, shuffle_buffer=1 << 18)
        before = rss_anon_bytes()
        peak, rows = 0, 0
        for x, y in batches:
            rows += len(y)
            if rows % (1 << 16) < 1024:
                peak = max(peak, rss_anon_bytes() - before)
        assert rows == 8 << 20, rows
        print(peak)
        """
    )
    peak = int(out.strip().splitlines()[-1])
    decoded = (8 << 20) * (4 * 4 + 8)
    # Two windows of 256 Ki rows x 24 bytes (12 MiB) and the decoder's buffers: measured 19.5 MiB.
    assert peak < 48 * 2**20, (
        f"RssAnon grew by {peak / 2**20:.0f} MiB streaming {decoded / 2**20:.0f} MiB of columns"
    )


def test_global_shuffle_needs_no_permutation_in_memory(tmp_path: Path):
    """A global shuffle of 32 M rows with a computed column: a permutation array would take
    128 MB and the computed column 32 MB; the keyed order takes none, and the column is computed
    for each batch's rows only."""
    path = tmp_path / "wide.arrow"
    n = 1 << 25
    _run_isolated(
        f"""
        import numpy as np, pyarrow as pa
        with pa.ipc.new_file({str(path)!r}, pa.schema([("x", pa.int8())])) as w:
            w.write_table(pa.table({{"x": (np.arange({n}) % 100).astype(np.int8)}}))
        """
    )
    out = _run_isolated(
        f"""
        import sys; sys.path.insert(0, {str(Path(__file__).parent)!r})
        import relay_ml as relay
        from relay_ml.torch import loader
        from conftest import rss_anon_bytes
        frame = relay.scan({str(path)!r}).with_column("y", relay.col("x") + 1)
        before = rss_anon_bytes()
        batches = iter(loader(frame, 4096, features=["x", "y"], shuffle="global", seed=1))
        for _ in range(50):
            next(batches)
        print(rss_anon_bytes() - before)
        """
    )
    grown = int(out.strip().splitlines()[-1])
    assert grown < 24 * 2**20, (
        f"RssAnon grew by {grown / 2**20:.0f} MiB for a global shuffle of {n} rows"
    )


@pytest.mark.parametrize("batch_rows", [None, 700])
def test_computed_columns_of_a_mapped_file_are_computed_per_batch(tmp_path: Path, batch_rows):
    table = _table(0, 5_000)
    frame = relay.scan(write_arrow(tmp_path / "t.arrow", table, batch_rows=batch_rows))
    frame = frame.filter(col("age") > 30).with_column("g", col("f0") * 2 + col("f1"))
    expected = table.filter(pc.greater(table["age"], 30))
    want = dict(
        zip(
            expected["id"].to_pylist(),
            (expected["f0"].to_numpy() * 2 + expected["f1"].to_numpy()).tolist(),
            strict=True,
        )
    )
    batches = list(iter_batches(frame, 333, columns=["id", "g", "emb"], shuffle="global", seed=4))
    ids = _ids(batches)
    assert sorted(ids) == sorted(want)
    np.testing.assert_allclose(
        np.concatenate([b["g"] for b in batches]), [want[i] for i in ids], rtol=1e-6
    )
    emb = table["emb"].combine_chunks().flatten().to_numpy().reshape(-1, 3)
    np.testing.assert_array_equal(np.concatenate([b["emb"] for b in batches]), emb[ids])
    ds = RelayDataset(frame, features=["g"])
    assert len(ds) == expected.num_rows
    np.testing.assert_allclose(ds[5][0].numpy(), [want[expected["id"][5].as_py()]], rtol=1e-6)


def test_incremental_fitting_streams_parquet_with_the_shuffle_it_allows(shards):
    """``shuffle=True`` is a global shuffle where rows can be read by position, a block shuffle
    for a source read piece by piece: partial_fit over Parquet shards works by default."""
    from sklearn.linear_model import SGDClassifier

    from relay_ml.sklearn import partial_fit

    source, table = shards
    seen: list[int] = []

    class Recording(SGDClassifier):
        def partial_fit(self, X, y, classes=None, **kwargs):
            seen.append(len(y))
            return super().partial_fit(X, y, classes=classes, **kwargs)

    model = partial_fit(
        Recording(), relay.scan(source), features=FEATURES, target="label", batch_size=1000
    )
    assert sum(seen) == table.num_rows
    assert model.predict(relay.scan(source).head(3).select(*FEATURES)).shape == (3,)


def test_a_damaged_shard_is_named_and_nothing_hangs(shards):
    source, _ = shards
    folder = Path(source).parent
    damaged = folder / "part-1.parquet"
    data = bytearray(damaged.read_bytes())
    # The footer stays readable; the pages of the row groups do not.
    for offset in range(200, len(data) // 2, 97):
        data[offset] ^= 0xFF
    damaged.write_bytes(bytes(data))
    with pytest.raises(relay.RelayError, match=r"part-1\.parquet"):
        for _ in iter_batches(
            relay.scan(source), 256, columns=["id", "f0"], shuffle="block", seed=0
        ):
            pass
