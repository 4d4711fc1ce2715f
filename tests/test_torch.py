"""relay_ml.torch: datasets and loader, checked against the same rows read with pyarrow."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch
from torch.utils.data import DataLoader

import relay_ml as relay
from conftest import write_arrow
from relay_ml.batches import BatchReader, epoch_order, iter_batches
from relay_ml.torch import RelayDataset, RelayIterableDataset, loader

N = 5_000


def _table(n: int = N, nulls: bool = False) -> pa.Table:
    rng = np.random.default_rng(7)
    f = rng.standard_normal((n, 3)).astype(np.float32)
    emb = rng.standard_normal(n * 4).astype(np.float32)
    lengths = rng.integers(0, 6, n)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    tokens = rng.integers(0, 1000, int(offsets[-1])).astype(np.int64)
    age = pa.array(
        rng.integers(0, 100, n).astype(np.int32), mask=(np.arange(n) % 97 == 5) if nulls else None
    )
    return pa.table(
        {
            "id": np.arange(n, dtype=np.int64),
            "f0": f[:, 0],
            "f1": f[:, 1],
            "f2": f[:, 2],
            "age": age,
            "emb": pa.FixedSizeListArray.from_arrays(pa.array(emb), 4),
            "city": pa.array(rng.choice(["Lima", "Oslo", "Pune"], n)).dictionary_encode(),
            "flag": pa.array(rng.integers(0, 2, n).astype(bool)),
            "tokens": pa.ListArray.from_arrays(pa.array(offsets), pa.array(tokens)),
            "label": rng.integers(0, 10, n).astype(np.int64),
        }
    )


@pytest.fixture(params=[None, 1_234], ids=["one-batch", "many-batches"])
def data(tmp_path: Path, request: pytest.FixtureRequest) -> tuple[relay.Frame, pa.Table]:
    table = _table()
    path = write_arrow(tmp_path / "train.arrow", table, batch_rows=request.param)
    return relay.scan(path), table


def _expected_x(
    table: pa.Table, rows: np.ndarray, features: list[str], dtype: np.dtype
) -> np.ndarray:
    parts = []
    for name in features:
        column = table.column(name).combine_chunks()
        if pa.types.is_fixed_size_list(column.type):
            parts.append(column.flatten().to_numpy().reshape(len(column), -1)[rows])
        else:
            parts.append(column.to_numpy(zero_copy_only=False)[rows].reshape(-1, 1))
    return np.hstack(parts).astype(dtype)


def test_dataset_xy_matches_pyarrow(data: tuple[relay.Frame, pa.Table]) -> None:
    frame, table = data
    ds = RelayDataset(frame, features=["f0", "emb", "f2"], target="label")
    assert len(ds) == N
    rows = np.array([4_999, 0, 1_234, 1_233, 77, 77])
    x, y = ds.__getitems__(rows).output
    assert x.shape == (6, 6) and x.dtype == torch.float32
    np.testing.assert_array_equal(
        x.numpy(), _expected_x(table, rows, ["f0", "emb", "f2"], np.float32)
    )
    np.testing.assert_array_equal(y.numpy(), table.column("label").to_numpy()[rows])
    x3, y3 = ds[3]
    np.testing.assert_array_equal(
        x3.numpy(), _expected_x(table, np.array([3]), ["f0", "emb", "f2"], np.float32)[0]
    )
    assert y3.item() == table.column("label")[3].as_py()
    assert ds[-1][1].item() == table.column("label")[N - 1].as_py()


def test_dict_output_every_kind(data: tuple[relay.Frame, pa.Table]) -> None:
    frame, table = data
    ds = RelayDataset(frame)
    rows = np.array([10, 3, 4_000, 2_500])
    batch = ds.__getitems__(rows).output
    assert batch["id"].tolist() == rows.tolist()
    assert batch["age"].dtype == torch.int32
    assert batch["city"].dtype == torch.int64  # dictionary codes
    codes = table.column("city").combine_chunks()
    codes = pa.chunked_array([c.indices for c in table.column("city").chunks]).to_numpy()
    np.testing.assert_array_equal(batch["city"].numpy(), codes[rows])
    assert batch["flag"].dtype == torch.bool
    np.testing.assert_array_equal(batch["flag"].numpy(), table.column("flag").to_numpy()[rows])
    assert batch["emb"].shape == (4, 4)
    tokens = table.column("tokens").to_pylist()
    lengths = [len(tokens[r]) for r in rows]
    assert batch["tokens_lengths"].tolist() == lengths
    assert batch["tokens"].shape == (4, max(lengths))
    for i, r in enumerate(rows):
        assert batch["tokens"][i, : lengths[i]].tolist() == tokens[r]
        assert batch["tokens"][i, lengths[i] :].eq(0).all()


def test_ragged_as_nested_tensor(data: tuple[relay.Frame, pa.Table]) -> None:
    frame, table = data
    ds = RelayDataset(frame.select("tokens"), ragged="nested")
    rows = [1, 2, 3, 500]
    nested = ds.__getitems__(rows).output["tokens"]
    assert nested.is_nested
    tokens = table.column("tokens").to_pylist()
    assert [t.tolist() for t in nested.unbind()] == [tokens[r] for r in rows]


def test_filtered_frame_rows(data: tuple[relay.Frame, pa.Table]) -> None:
    frame, table = data
    filtered = frame.filter(relay.col("f0") > 0.5)
    ids = table.column("id").to_numpy()[table.column("f0").to_numpy() > 0.5]
    ds = RelayDataset(filtered, features=["f1"], target="id")
    assert len(ds) == len(ids)
    _, y = ds.__getitems__(np.arange(len(ids))[::-1]).output
    np.testing.assert_array_equal(y.numpy(), ids[::-1])


def test_dtype_overrides_and_promotion(data: tuple[relay.Frame, pa.Table]) -> None:
    frame, table = data
    ds = RelayDataset(
        frame.filter(relay.col("age").is_not_null()), features=["age", "f0"], target="label"
    )
    assert ds[0][0].dtype == torch.float32  # torch promotes int32 with float32 to float32
    ds = RelayDataset(frame, features=["f0", "f1"], target="label", dtype=torch.float64)
    assert ds[0][0].dtype == torch.float64
    ds = RelayDataset(frame, dtype={"label": torch.int32, "f0": torch.float16})
    sample = ds[9]
    assert sample["label"].dtype == torch.int32 and sample["f0"].dtype == torch.float16
    assert sample["f0"].item() == pytest.approx(table.column("f0")[9].as_py(), rel=1e-3)
    with pytest.raises(relay.RelayTypeError, match="bfloat16"):
        RelayDataset(frame, features=["f0"], dtype=torch.bfloat16)


def test_nulls_raise_naming_the_column_unless_filled(tmp_path: Path) -> None:
    table = _table(nulls=True)
    frame = relay.scan(write_arrow(tmp_path / "nulls.arrow", table))
    ds = RelayDataset(frame, features=["age"], target="label")
    assert ds[4][0].item() == table.column("age")[4].as_py()
    with pytest.raises(relay.RelayValueError, match=r"column 'age' has a null at row 5"):
        ds[5]
    filled = RelayDataset(frame, features=["age"], target="label", fill_null=-1)
    assert filled[5][0].item() == -1
    assert filled[4][0].item() == table.column("age")[4].as_py()


def test_unsupported_columns_and_arguments(tmp_path: Path) -> None:
    frame = relay.scan(
        write_arrow(tmp_path / "s.arrow", pa.table({"name": ["a", "b"], "x": [1.0, 2.0]}))
    )
    with pytest.raises(relay.RelayTypeError, match="column 'name' of type string"):
        RelayDataset(frame, features=["name"], target="x")
    with pytest.raises(relay.ColumnNotFoundError, match="nope"):
        RelayDataset(frame, features=["nope"])
    with pytest.raises(relay.RelayValueError, match="shuffle must be"):
        list(RelayIterableDataset(frame.select("x"), 1, shuffle="sideways"))
    with pytest.raises(IndexError):
        RelayDataset(frame.select("x"))[2]


def test_default_dataloader_gives_the_loader_batches(data: tuple[relay.Frame, pa.Table]) -> None:
    frame, _ = data
    ds = RelayDataset(frame, features=["f0", "f1"], target="label")
    order = epoch_order(len(ds), "global", seed=5, epoch=0)
    via_sampler = list(DataLoader(ds, batch_size=256, sampler=order.tolist()))
    via_loader = list(
        loader(frame, 256, features=["f0", "f1"], target="label", shuffle="global", seed=5)
    )
    assert len(via_sampler) == len(via_loader) == 20
    for (xa, ya), (xb, yb) in zip(via_sampler, via_loader, strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    # shuffle=True with the default collate works and covers every row once.
    ids = torch.cat(
        [
            y
            for _, y in DataLoader(
                RelayDataset(frame, features=["f0"], target="id"), batch_size=300, shuffle=True
            )
        ]
    )
    assert torch.equal(ids.sort().values, torch.arange(N))


def test_custom_collate_sees_rows(data: tuple[relay.Frame, pa.Table]) -> None:
    frame, _ = data
    ds = RelayDataset(frame, features=["f0"], target="id")
    batches = list(
        DataLoader(ds, batch_size=4, collate_fn=lambda rows: [int(r.sample()[1]) for r in rows])
    )
    assert batches[0] == [0, 1, 2, 3]


@pytest.mark.parametrize("shuffle", [None, "global", "block"])
def test_iterable_epochs_cover_every_row_once(
    data: tuple[relay.Frame, pa.Table], shuffle: str | None
) -> None:
    frame, _ = data
    ds = RelayIterableDataset(
        frame,
        512,
        features=["f0"],
        target="id",
        shuffle=shuffle,
        seed=3,
        block_size=100,
        shuffle_buffer=700,
    )
    first = torch.cat([y for _, y in ds])
    assert torch.equal(first.sort().values, torch.arange(N))
    again = torch.cat([y for _, y in ds])
    assert torch.equal(first, again)  # same epoch, same order
    ds.set_epoch(1)
    second = torch.cat([y for _, y in ds])
    assert torch.equal(second.sort().values, torch.arange(N))
    assert torch.equal(first, second) == (shuffle is None)
    np.testing.assert_array_equal(first.numpy(), epoch_order(N, shuffle, 3, 0, 100, 700))


def test_ranks_and_workers_shard_disjointly(data: tuple[relay.Frame, pa.Table]) -> None:
    frame, _ = data
    seen = []
    for rank in range(3):
        ds = RelayIterableDataset(
            frame,
            100,
            features=["f0"],
            target="id",
            shuffle="global",
            seed=1,
            rank=rank,
            world_size=3,
        )
        loader_ = DataLoader(ds, batch_size=None, num_workers=2)
        ids = torch.cat([y for _, y in loader_])
        assert len(ds) * 100 >= len(ids) > 0
        seen.append(ids)
    all_ids = torch.cat(seen)
    assert len(all_ids) == N
    assert torch.equal(all_ids.sort().values, torch.arange(N))


@pytest.mark.parametrize("context", ["fork", "spawn", "forkserver"])
def test_workers_under_each_start_method(data: tuple[relay.Frame, pa.Table], context: str) -> None:
    frame, table = data
    frame = frame.filter(relay.col("label") < 5)
    ds = RelayIterableDataset(
        frame, 256, features=["f0", "emb"], target="id", shuffle="global", seed=2
    )
    got = list(DataLoader(ds, batch_size=None, num_workers=2, multiprocessing_context=context))
    ids = torch.cat([y for _, y in got]).sort().values
    expected = table.column("id").to_numpy()[table.column("label").to_numpy() < 5]
    np.testing.assert_array_equal(ids.numpy(), expected)
    x, y = got[0]
    np.testing.assert_array_equal(
        x.numpy(), _expected_x(table, y.numpy(), ["f0", "emb"], np.float32)
    )
    map_style = list(
        DataLoader(
            RelayDataset(frame, features=["f0"], target="id"),
            batch_size=128,
            num_workers=2,
            multiprocessing_context=context,
        )
    )
    assert torch.equal(
        torch.cat([y for _, y in map_style]).sort().values, torch.from_numpy(expected)
    )


def test_datasets_pickle_as_path_and_plan(data: tuple[relay.Frame, pa.Table]) -> None:
    frame, _ = data
    ds = RelayIterableDataset(frame.filter(relay.col("f0") > 0), 64, features=["f0"], target="id")
    blob = pickle.dumps(ds)
    assert len(blob) < 8_000  # the plan, not the data
    clone = pickle.loads(blob)
    assert [torch.equal(a[1], b[1]) for a, b in zip(ds, clone, strict=True)] == [True] * len(ds)


def _remaining_after_resume(make, consumed: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    full = [y for _, y in make()]
    source = make()
    iterator = iter(source)
    for _ in range(consumed):
        next(iterator)
    state = source.state_dict()
    resumed = make()
    resumed.load_state_dict(state)
    return full[consumed:], [y for _, y in resumed]


def test_state_dict_resumes_mid_epoch(data: tuple[relay.Frame, pa.Table]) -> None:
    frame, _ = data

    def make_dataset():
        ds = RelayIterableDataset(
            frame,
            300,
            features=["f0"],
            target="id",
            shuffle="block",
            seed=11,
            block_size=64,
            shuffle_buffer=512,
        )
        ds.set_epoch(4)
        return ds

    expected, resumed = _remaining_after_resume(make_dataset, 7)
    assert len(resumed) == len(expected) == 10
    assert all(torch.equal(a, b) for a, b in zip(expected, resumed, strict=True))

    def make_loader():
        return loader(frame, 300, features=["f0"], target="id", shuffle="global", seed=11)

    expected, resumed = _remaining_after_resume(make_loader, 3)
    assert (
        all(torch.equal(a, b) for a, b in zip(expected, resumed, strict=True))
        and len(resumed) == 14
    )


# torchdata 0.11 calls torch.set_vital, which torch 2.15 deprecates.
@pytest.mark.filterwarnings("ignore:'set_vital' is deprecated:UserWarning")
def test_stateful_dataloader_resumes_across_workers(data: tuple[relay.Frame, pa.Table]) -> None:
    from torchdata.stateful_dataloader import StatefulDataLoader

    frame, _ = data

    def make():
        ds = RelayIterableDataset(
            frame, 200, features=["f0"], target="id", shuffle="global", seed=9
        )
        return StatefulDataLoader(ds, batch_size=None, num_workers=2, snapshot_every_n_steps=1)

    full = [y for _, y in make()]
    source = make()
    iterator = iter(source)
    taken = [next(iterator)[1] for _ in range(7)]
    state = source.state_dict()
    del iterator
    resumed = make()
    resumed.load_state_dict(state)
    rest = [y for _, y in resumed]
    assert all(torch.equal(a, b) for a, b in zip(taken, full[:7], strict=True))
    assert len(rest) == len(full) - 7
    assert all(torch.equal(a, b) for a, b in zip(rest, full[7:], strict=True))


def test_loader_advances_epochs_and_tensors_are_the_gathered_buffers(
    data: tuple[relay.Frame, pa.Table],
) -> None:
    frame, table = data
    allocated: list[int] = []
    import relay_ml.torch as rt

    run = loader(
        frame,
        1000,
        features=["f0", "f1", "f2"],
        target="label",
        shuffle="global",
        seed=0,
        prefetch=3,
    )
    # The stream gathers into NumPy arrays of its own; each becomes a tensor without a copy.
    plain = rt._tensor

    def recording(value):
        assert isinstance(value, np.ndarray)
        allocated.append(value.ctypes.data)
        return plain(value)

    rt._tensor = recording  # type: ignore[assignment]
    try:
        epoch0 = list(run)
    finally:
        rt._tensor = plain  # type: ignore[assignment]
    # Every yielded tensor is memory the gather wrote into: no copy after the gather.
    assert {t.data_ptr() for batch in epoch0 for t in batch} <= set(allocated)
    assert run.epoch == 1
    epoch1 = list(run)
    assert not torch.equal(torch.cat([y for _, y in epoch0]), torch.cat([y for _, y in epoch1]))
    x, _y = epoch0[0]
    rows = epoch_order(N, "global", 0, 0)[:1000]
    np.testing.assert_array_equal(
        x.numpy(), _expected_x(table, rows, ["f0", "f1", "f2"], np.float32)
    )
    assert rt.RelayLoader is type(run)


def test_numpy_iter_batches(data: tuple[relay.Frame, pa.Table]) -> None:
    frame, table = data
    batches = list(
        iter_batches(frame, 700, columns=["id", "emb"], shuffle="global", seed=4, drop_last=True)
    )
    assert len(batches) == N // 700
    rows = epoch_order(N, "global", 4)[: 700 * len(batches)]
    np.testing.assert_array_equal(np.concatenate([b["id"] for b in batches]), rows)
    emb = table.column("emb").combine_chunks().flatten().to_numpy().reshape(N, 4)
    np.testing.assert_array_equal(batches[1]["emb"], emb[rows[700:1400]])
    halves = [
        np.concatenate(
            [
                b["id"]
                for b in iter_batches(
                    frame, 512, columns=["id"], shuffle="block", seed=4, rank=r, world_size=2
                )
            ]
        )
        for r in range(2)
    ]
    assert sorted(np.concatenate(halves).tolist()) == list(range(N))


def test_reader_rejects_bad_buffers(data: tuple[relay.Frame, pa.Table]) -> None:
    frame, _ = data
    reader = BatchReader(frame, ["f0", "label"])
    out = reader.output("x", ["f0", "label"], np.float32)
    with pytest.raises(relay.RelayValueError, match="out of range"):
        reader.gather([out], [N])
    with pytest.raises(relay.RelayValueError, match="dtype"):
        reader.gather([out], [1], allocate=lambda shape, dtype: (None, np.empty(shape, np.float64)))
    readonly = np.empty((1, 2), np.float32)
    readonly.flags.writeable = False
    with pytest.raises(relay.RelayValueError, match="writable"):
        reader.gather([out], [1], allocate=lambda shape, dtype: (None, readonly))
    mixed = BatchReader(frame, ["flag", "f0"])
    with pytest.raises(relay.RelayTypeError, match="booleans"):
        mixed.gather([mixed.output("x", ["flag", "f0"], np.bool_)], [0])


def test_batch_arguments_are_checked_when_the_loader_is_made(
    data: tuple[relay.Frame, pa.Table],
) -> None:
    frame, _ = data
    xy = {"features": ["f0"], "target": "label"}
    cases = [
        (lambda: loader(frame, 0, **xy), "batch_size must be positive, not 0"),
        (lambda: len(loader(frame, 0, **xy)), "batch_size must be positive, not 0"),
        (lambda: loader(frame, 8, shuffle="random", **xy), "shuffle must be None"),
        (lambda: loader(frame, 8, prefetch=-1, **xy), "prefetch must be non-negative"),
        (lambda: loader(frame, 8, shuffle_buffer=0, **xy), "shuffle_buffer must be positive"),
        (lambda: RelayIterableDataset(frame, -2, **xy), "batch_size must be positive, not -2"),
        # Checked by the call, before any batch is asked for.
        (lambda: iter_batches(frame, 0), "batch_size must be positive"),
        (lambda: iter_batches(frame, 8, shuffle="random"), "shuffle must be None"),
    ]
    for make, message in cases:
        with pytest.raises(relay.RelayValueError, match=message):
            make()
    with pytest.raises(relay.RelayValueError, match="not both"):
        iter_batches(frame, 8, columns=["f0"], features=["f1"])
    with pytest.raises(relay.RelayTypeError, match="target must be a column name"):
        iter_batches(frame, 8, target=["label"])  # type: ignore[arg-type]


def test_numpy_batches_are_the_loaders_batches(data: tuple[relay.Frame, pa.Table]) -> None:
    frame, _ = data
    for shuffle in (None, "global", "block"):
        args = {"features": ["f0", "f2", "age"], "target": "label", "shuffle": shuffle, "seed": 3}
        from_loader = list(loader(frame, 512, **args))
        from_numpy = list(iter_batches(frame, 512, **args))
        assert len(from_numpy) == len(from_loader) == -(-N // 512)
        for (x, y), (xt, yt) in zip(from_numpy, from_loader, strict=True):
            assert isinstance(x, np.ndarray) and isinstance(y, np.ndarray)
            assert x.shape == tuple(xt.shape) and x.dtype == np.float64  # float32 with int32
            np.testing.assert_array_equal(x, xt.numpy())
            np.testing.assert_array_equal(y, yt.numpy())
    xs = list(iter_batches(frame, 1000, features="f1", dtype=np.float16))
    assert xs[0].shape == (1000, 1) and xs[0].dtype == np.float16
