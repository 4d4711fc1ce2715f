"""Malformed files: every bad file raises a RelayError subclass that names it, and nothing panics,
crashes or hangs.

Malformed files are derived from valid files written by pyarrow: truncations, a damaged footer
length, seeded bit flips in the footer, the message headers and the bodies, and hand edits of the
flatbuffers (block offsets, buffer offsets and lengths, node lengths, row counts) located with the
small flatbuffer reader below. Each case runs in-process (one test per case) and, once more, all
of them in a subprocess, so that a segfault or abort shows up as a failing test naming the case
instead of killing pytest.
"""

from __future__ import annotations

import json
import os
import random
import struct
import subprocess
import sys
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import relay_ml as relay

# --------------------------------------------------------------------------------------------
# Valid source files
# --------------------------------------------------------------------------------------------


def _multi_batch_table() -> pa.Table:
    rng = np.random.default_rng(1)
    n = 1000
    flags = [None if i % 7 == 0 else bool(i % 2) for i in range(n)]
    scores = rng.standard_normal(n)
    return pa.table(
        {
            "id": pa.array(np.arange(n, dtype=np.int64)),
            "x": pa.array(rng.standard_normal(n).astype(np.float32)),
            "flag": pa.array(flags, type=pa.bool_()),
            "score": pa.array([None if i % 11 == 0 else float(s) for i, s in enumerate(scores)]),
        }
    )


def _nested_table() -> pa.Table:
    n = 300
    cities = ["paris", "lima", "oslo", "quito", None]
    names = [None if i % 13 == 0 else f"name-{i}-" + "x" * (i % 5) for i in range(n)]
    tags = [None if i % 17 == 0 else list(range(i % 4)) for i in range(n)]
    points = [None if i % 19 == 0 else {"a": i, "b": f"p{i}"} for i in range(n)]
    return pa.table(
        {
            "city": pa.array([cities[i % len(cities)] for i in range(n)]).dictionary_encode(),
            "name": pa.array(names, type=pa.string()),
            "tags": pa.array(tags, type=pa.list_(pa.int32())),
            "point": pa.array(points, type=pa.struct([("a", pa.int32()), ("b", pa.string())])),
        }
    )


def _single_batch_table() -> pa.Table:
    rng = np.random.default_rng(2)
    n = 200
    return pa.table(
        {
            "id": pa.array(np.arange(n, dtype=np.int64)),
            "emb": pa.FixedSizeListArray.from_arrays(
                pa.array(rng.standard_normal(n * 4).astype(np.float32)), 4
            ),
            "when": pa.array(np.arange(n, dtype=np.int64), type=pa.timestamp("us")),
        }
    )


def _write_file(path: Path, table: pa.Table, batch_rows: int) -> None:
    with pa.ipc.new_file(path, table.schema) as writer:
        writer.write_table(table, max_chunksize=batch_rows)


def _write_stream(
    path: Path, table: pa.Table, batch_rows: int, compression: str | None = None
) -> None:
    with pa.ipc.new_stream(
        path, table.schema, options=pa.ipc.IpcWriteOptions(compression=compression)
    ) as writer:
        writer.write_table(table, max_chunksize=batch_rows)


def write_sources(directory: Path) -> dict[str, bytes]:
    """Valid IPC files (pa.ipc.new_file) and streams (pa.ipc.new_stream), plain and with
    compressed record batches, by name, as bytes."""
    directory.mkdir(parents=True, exist_ok=True)
    sources = {
        "multi": (_multi_batch_table(), 250),  # 4 record batches
        "nested": (_nested_table(), 100),  # dictionary, string, list, struct; 3 batches
        "single": (_single_batch_table(), 1000),  # one batch: zero-copy views of the mapping
    }
    out = {}
    for name, (table, batch_rows) in sources.items():
        path = directory / f"{name}.arrow"
        _write_file(path, table, batch_rows)
        out[name] = path.read_bytes()
        for codec in ["zstd", "lz4"]:
            path = directory / f"{codec}_{name}.arrow"
            with pa.ipc.new_file(
                path, table.schema, options=pa.ipc.IpcWriteOptions(compression=codec)
            ) as writer:
                writer.write_table(table, max_chunksize=batch_rows)
            out[f"{codec}_{name}"] = path.read_bytes()
        path = directory / f"stream_{name}.arrows"
        _write_stream(path, table, batch_rows)
        out[f"stream_{name}"] = path.read_bytes()
        path = directory / f"stream_zstd_{name}.arrows"
        _write_stream(path, table, batch_rows, "zstd")
        out[f"stream_zstd_{name}"] = path.read_bytes()
    return out


# --------------------------------------------------------------------------------------------
# A minimal flatbuffer reader, enough to find the bytes to damage
# --------------------------------------------------------------------------------------------


def _u16(data: bytes, pos: int) -> int:
    return struct.unpack_from("<H", data, pos)[0]


def _u32(data: bytes, pos: int) -> int:
    return struct.unpack_from("<I", data, pos)[0]


def _i32(data: bytes, pos: int) -> int:
    return struct.unpack_from("<i", data, pos)[0]


def _i64(data: bytes, pos: int) -> int:
    return struct.unpack_from("<q", data, pos)[0]


def _field(data: bytes, table: int, index: int) -> int | None:
    """Absolute position of field `index` of the flatbuffer table at `table`, None if absent."""
    vtable = table - _i32(data, table)
    vtable_len = _u16(data, vtable)
    slot = 4 + 2 * index
    if slot + 2 > vtable_len:
        return None
    offset = _u16(data, vtable + slot)
    return table + offset if offset else None


def _deref(data: bytes, pos: int) -> int:
    return pos + _u32(data, pos)


def _table(data: bytes, table: int, index: int) -> int:
    pos = _field(data, table, index)
    assert pos is not None, f"table field {index} absent"
    return _deref(data, pos)


def _vector(data: bytes, table: int, index: int) -> tuple[int, int, int]:
    """(position of the length word, element count, position of the first element)."""
    pos = _field(data, table, index)
    assert pos is not None, f"vector field {index} absent"
    start = _deref(data, pos)
    return start, _u32(data, start), start + 4


@dataclass(frozen=True)
class Block:
    entry: int  # position of the Block struct in the footer
    offset: int
    meta_len: int
    body_len: int


@dataclass(frozen=True)
class Layout:
    footer_start: int
    footer_len: int
    dictionaries: list[Block]
    batches: list[Block]

    def message_root(self, data: bytes, block: Block) -> int:
        prefix = 8 if data[block.offset : block.offset + 4] == b"\xff\xff\xff\xff" else 4
        base = block.offset + prefix
        return base + _u32(data, base)

    def record_batch(self, data: bytes, block: Block) -> int:
        """Position of the RecordBatch table of a record batch block."""
        return _table(data, self.message_root(data, block), 2)

    def dictionary_data(self, data: bytes, block: Block) -> int:
        """Position of the RecordBatch table inside a dictionary batch block."""
        dictionary_batch = _table(data, self.message_root(data, block), 2)
        return _table(data, dictionary_batch, 1)

    def body_start(self, block: Block) -> int:
        return block.offset + block.meta_len


def stream_layout(data: bytes) -> Layout:
    """The messages of an IPC stream, as blocks (`entry` is -1: a stream has no footer)."""
    batches, dictionaries = [], []
    pos = 0
    while True:
        prefix = 8 if data[pos : pos + 4] == b"\xff\xff\xff\xff" else 4
        meta = _i32(data, pos + prefix - 4)
        if meta == 0:
            break
        base = pos + prefix
        root = base + _u32(data, base)
        header_type = data[_field(data, root, 1)]
        body_pos = _field(data, root, 3)
        body_len = _i64(data, body_pos) if body_pos is not None else 0
        block = Block(-1, pos, prefix + meta, body_len)
        if header_type == 3:
            batches.append(block)
        elif header_type == 2:
            dictionaries.append(block)
        pos += prefix + meta + body_len
    return Layout(len(data), 0, dictionaries, batches)


def layout(data: bytes) -> Layout:
    if data[:4] == b"\xff\xff\xff\xff":
        return stream_layout(data)
    footer_len = _i32(data, len(data) - 10)
    footer_start = len(data) - 10 - footer_len
    root = footer_start + _u32(data, footer_start)

    def blocks(index: int) -> list[Block]:
        pos = _field(data, root, index)
        if pos is None:
            return []
        start = _deref(data, pos)
        count = _u32(data, start)
        out = []
        for i in range(count):
            entry = start + 4 + 24 * i
            out.append(
                Block(entry, _i64(data, entry), _i32(data, entry + 8), _i64(data, entry + 16))
            )
        return out

    return Layout(footer_start, footer_len, blocks(2), blocks(3))


def _put(data: bytearray, fmt: str, pos: int, value: int) -> bytearray:
    struct.pack_into(fmt, data, pos, value)
    return data


# --------------------------------------------------------------------------------------------
# Cases
# --------------------------------------------------------------------------------------------

MUST_FAIL = "error"  # some step must raise a RelayError that names the file
MAY_FAIL = "maybe"  # either reads fine or raises a RelayError that names the file


@dataclass(frozen=True)
class Case:
    name: str
    expect: str
    make: Callable[[dict[str, bytes], Path], Path]
    message_contains: str | None = None


def _bytes_case(
    name: str,
    expect: str,
    content: Callable[[dict[str, bytes]], bytes],
    contains: str | None = None,
) -> Case:
    def make(sources: dict[str, bytes], directory: Path) -> Path:
        path = directory / f"{name}.arrow"
        path.write_bytes(content(sources))
        return path

    return Case(name, expect, make, contains)


def _edit_case(
    name: str, expect: str, source: str, edit: Callable[[bytearray, Layout], bytearray]
) -> Case:
    def content(sources: dict[str, bytes]) -> bytes:
        data = bytearray(sources[source])
        return bytes(edit(data, layout(bytes(data))))

    return _bytes_case(name, expect, content)


def _flip_case(
    name: str,
    source: str,
    seed: int,
    region: Callable[[bytes, Layout, random.Random], tuple[int, int]],
    flips: int = 1,
) -> Case:
    """`flips` seeded bit flips inside the byte range that `region` picks."""

    def edit(data: bytearray, lay: Layout) -> bytearray:
        rng = random.Random(f"{name}:{seed}")
        start, end = region(bytes(data), lay, rng)
        for _ in range(flips):
            pos = rng.randrange(start, end)
            data[pos] ^= 1 << rng.randrange(8)
        return data

    return _edit_case(name, MAY_FAIL, source, edit)


def _random_bytes_case(
    name: str,
    source: str,
    seed: int,
    region: Callable[[bytes, Layout, random.Random], tuple[int, int]],
    count: int = 4,
) -> Case:
    def edit(data: bytearray, lay: Layout) -> bytearray:
        rng = random.Random(f"{name}:{seed}")
        start, end = region(bytes(data), lay, rng)
        for _ in range(count):
            data[rng.randrange(start, end)] = rng.randrange(256)
        return data

    return _edit_case(name, MAY_FAIL, source, edit)


def _footer_region(data: bytes, lay: Layout, rng: random.Random) -> tuple[int, int]:
    return lay.footer_start, lay.footer_start + lay.footer_len


def _batch_meta_region(data: bytes, lay: Layout, rng: random.Random) -> tuple[int, int]:
    block = rng.choice(lay.batches)
    return block.offset, block.offset + block.meta_len


def _dictionary_meta_region(data: bytes, lay: Layout, rng: random.Random) -> tuple[int, int]:
    block = rng.choice(lay.dictionaries)
    return block.offset, block.offset + block.meta_len


def _body_region(data: bytes, lay: Layout, rng: random.Random) -> tuple[int, int]:
    block = rng.choice(lay.batches + lay.dictionaries)
    return lay.body_start(block), lay.body_start(block) + block.body_len


def _whole_file_region(data: bytes, lay: Layout, rng: random.Random) -> tuple[int, int]:
    return 0, len(data)


def _parquet_bytes(sources: dict[str, bytes]) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(_multi_batch_table(), sink)
    return sink.getvalue().to_pybytes()


def _truncate_cases() -> list[Case]:
    cases = []
    for source in ["multi", "nested", "single"]:
        for percent in range(5, 100, 5):
            cases.append(
                _bytes_case(
                    f"truncate_{source}_{percent}pct",
                    MUST_FAIL,
                    lambda s, source=source, percent=percent: s[source][
                        : len(s[source]) * percent // 100
                    ],
                )
            )
        for cut in range(1, 13):
            cases.append(
                _bytes_case(
                    f"truncate_{source}_last_{cut}",
                    MUST_FAIL,
                    lambda s, source=source, cut=cut: s[source][:-cut],
                )
            )
    return cases


def _footer_length_cases() -> list[Case]:
    def with_footer_len(
        value: int | Callable[[int], int],
    ) -> Callable[[bytearray, Layout], bytearray]:
        def edit(data: bytearray, lay: Layout) -> bytearray:
            footer_len = value(len(data)) if callable(value) else value
            return _put(data, "<i", len(data) - 10, footer_len)

        return edit

    values: dict[str, int | Callable[[int], int]] = {
        "negative": -1,
        "most_negative": -(2**31),
        "huge": 2**31 - 1,
        "zero": 0,
        "one": 1,
        "whole_file": lambda size: size - 10,
        "one_too_many": lambda size: size - 18 + 1,
    }
    return [
        _edit_case(f"footer_length_{label}_{source}", MUST_FAIL, source, with_footer_len(value))
        for label, value in values.items()
        for source in ["multi", "nested"]
    ]


def _block_cases() -> list[Case]:
    """Footer blocks that point outside the file, into the footer, or at the wrong message."""

    def set_block(
        which: str, field: str, value: Callable[[bytearray, Layout], int], index: int = 0
    ):
        def edit(data: bytearray, lay: Layout) -> bytearray:
            block = (lay.batches if which == "batch" else lay.dictionaries)[index]
            pos, fmt = {"offset": (0, "<q"), "meta": (8, "<i"), "body": (16, "<q")}[field]
            return _put(data, fmt, block.entry + pos, value(data, lay))

        return edit

    cases = []
    spec: list[tuple[str, str, str, Callable[[bytearray, Layout], int], str]] = [
        ("batch_offset_beyond_file", "batch", "offset", lambda d, lay: len(d) + 4096, MUST_FAIL),
        ("batch_offset_negative", "batch", "offset", lambda d, lay: -8, MUST_FAIL),
        ("batch_offset_most_negative", "batch", "offset", lambda d, lay: -(2**63), MUST_FAIL),
        ("batch_offset_huge", "batch", "offset", lambda d, lay: 2**63 - 1, MUST_FAIL),
        ("batch_offset_zero", "batch", "offset", lambda d, lay: 0, MUST_FAIL),
        ("batch_offset_into_footer", "batch", "offset", lambda d, lay: lay.footer_start, MUST_FAIL),
        ("batch_offset_at_schema_message", "batch", "offset", lambda d, lay: 8, MUST_FAIL),
        (
            "batch_offset_off_by_8",
            "batch",
            "offset",
            lambda d, lay: lay.batches[0].offset + 8,
            MUST_FAIL,
        ),
        ("batch_meta_negative", "batch", "meta", lambda d, lay: -1, MUST_FAIL),
        ("batch_meta_zero", "batch", "meta", lambda d, lay: 0, MUST_FAIL),
        ("batch_meta_seven", "batch", "meta", lambda d, lay: 7, MUST_FAIL),
        ("batch_meta_huge", "batch", "meta", lambda d, lay: 2**31 - 1, MUST_FAIL),
        ("batch_meta_short", "batch", "meta", lambda d, lay: 16, MUST_FAIL),
        ("batch_body_negative", "batch", "body", lambda d, lay: -1, MUST_FAIL),
        ("batch_body_huge", "batch", "body", lambda d, lay: 2**62, MUST_FAIL),
        ("batch_body_past_footer", "batch", "body", lambda d, lay: lay.footer_start, MUST_FAIL),
        ("batch_body_zero", "batch", "body", lambda d, lay: 0, MUST_FAIL),
        (
            "batch_body_short",
            "batch",
            "body",
            lambda d, lay: lay.batches[0].body_len // 2,
            MUST_FAIL,
        ),
    ]
    for name, which, field, value, expect in spec:
        for source in ["multi", "nested"]:
            cases.append(
                _edit_case(f"{name}_{source}", expect, source, set_block(which, field, value))
            )
    # The last batch too (its body ends where the footer's padding starts).
    cases.append(
        _edit_case(
            "last_batch_body_past_footer_multi",
            MUST_FAIL,
            "multi",
            set_block("batch", "body", lambda d, lay: lay.batches[-1].body_len + 64, -1),
        )
    )
    # Dictionary blocks.
    dictionary_spec: list[tuple[str, str, Callable[[bytearray, Layout], int]]] = [
        ("dictionary_offset_beyond_file", "offset", lambda d, lay: len(d) + 1),
        ("dictionary_offset_negative", "offset", lambda d, lay: -1),
        ("dictionary_offset_into_footer", "offset", lambda d, lay: lay.footer_start),
        ("dictionary_offset_at_schema_message", "offset", lambda d, lay: 8),
        ("dictionary_offset_at_record_batch", "offset", lambda d, lay: lay.batches[0].offset),
        ("dictionary_meta_negative", "meta", lambda d, lay: -5),
        ("dictionary_meta_huge", "meta", lambda d, lay: 2**31 - 1),
        ("dictionary_body_huge", "body", lambda d, lay: 2**62),
        ("dictionary_body_negative", "body", lambda d, lay: -1),
        ("dictionary_body_short", "body", lambda d, lay: 8),
    ]
    for name, field, value in dictionary_spec:
        cases.append(
            _edit_case(name + "_nested", MUST_FAIL, "nested", set_block("dictionary", field, value))
        )

    # A record batch block that points at the dictionary batch (a message of the wrong type).
    def batch_at_dictionary(data: bytearray, lay: Layout) -> bytearray:
        dictionary = lay.dictionaries[0]
        _put(data, "<q", lay.batches[0].entry, dictionary.offset)
        _put(data, "<i", lay.batches[0].entry + 8, dictionary.meta_len)
        return _put(data, "<q", lay.batches[0].entry + 16, dictionary.body_len)

    cases.append(
        _edit_case("batch_block_at_dictionary_nested", MUST_FAIL, "nested", batch_at_dictionary)
    )

    # Every batch block points at the same batch: overlapping blocks.
    def all_batches_alike(data: bytearray, lay: Layout) -> bytearray:
        first = lay.batches[0]
        for block in lay.batches[1:]:
            data[block.entry : block.entry + 24] = data[first.entry : first.entry + 24]
        return data

    cases.append(_edit_case("all_batches_same_block_multi", MAY_FAIL, "multi", all_batches_alike))

    # A column name with a NUL byte: a valid flatbuffer, but no C string can carry it (the Arrow
    # C data interface spells names as C strings).
    def nul_in_name(data: bytearray, lay: Layout) -> bytearray:
        at = bytes(data).index(b"flag", lay.footer_start)
        data[at + 2] = 0
        return data

    cases.append(_edit_case("nul_byte_in_column_name_multi", MAY_FAIL, "multi", nul_in_name))
    return cases


def _batch_header_cases(kind: str = "") -> list[Case]:
    """Edits inside a RecordBatch (or DictionaryBatch) message: buffers, nodes, row counts.
    `kind` ("", "stream_", "zstd_", "stream_zstd_", ...) picks the sources the edits apply to and
    prefixes the case names."""

    def edit_case(
        name: str, expect: str, source: str, edit: Callable[[bytearray, Layout], bytearray]
    ) -> Case:
        return _edit_case(kind + name, expect, kind + source, edit)

    def batch_table(data: bytearray, lay: Layout, which: str, index: int) -> tuple[int, Block]:
        if which == "batch":
            block = lay.batches[index]
            return lay.record_batch(bytes(data), block), block
        block = lay.dictionaries[index]
        return lay.dictionary_data(bytes(data), block), block

    def set_buffer(
        which: str, index: int, buffer: int | str, field: str, value: Callable[[Block], int]
    ):
        def edit(data: bytearray, lay: Layout) -> bytearray:
            table, block = batch_table(data, lay, which, index)
            _, count, first = _vector(bytes(data), table, 2)
            targets = (
                range(count) if buffer == "all" else [buffer if buffer >= 0 else count + buffer]
            )
            for i in targets:
                _put(data, "<q", first + 16 * i + (0 if field == "offset" else 8), value(block))
            return data

        return edit

    def set_node(which: str, index: int, node: int, field: str, value: int):
        def edit(data: bytearray, lay: Layout) -> bytearray:
            table, _ = batch_table(data, lay, which, index)
            _, count, first = _vector(bytes(data), table, 1)
            return _put(
                data, "<q", first + 16 * (node % count) + (0 if field == "length" else 8), value
            )

        return edit

    def set_vector_count(which: str, index: int, vector: int, value: Callable[[int], int]):
        def edit(data: bytearray, lay: Layout) -> bytearray:
            table, _ = batch_table(data, lay, which, index)
            length_word, count, _ = _vector(bytes(data), table, vector)
            return _put(data, "<I", length_word, value(count))

        return edit

    def set_rows(which: str, indices: list[int] | None, value: int):
        def edit(data: bytearray, lay: Layout) -> bytearray:
            blocks = lay.batches if which == "batch" else lay.dictionaries
            for index in indices if indices is not None else range(len(blocks)):
                table, _ = batch_table(data, lay, which, index)
                pos = _field(bytes(data), table, 0)
                assert pos is not None, "row count absent"
                _put(data, "<q", pos, value)
            return data

        return edit

    def set_message_body_length(index: int, value: Callable[[Block], int]):
        def edit(data: bytearray, lay: Layout) -> bytearray:
            block = lay.batches[index]
            pos = _field(bytes(data), lay.message_root(bytes(data), block), 3)
            assert pos is not None, "message body length absent"
            return _put(data, "<q", pos, value(block))

        return edit

    def set_message_version(index: int, value: int):
        def edit(data: bytearray, lay: Layout) -> bytearray:
            pos = _field(bytes(data), lay.message_root(bytes(data), lay.batches[index]), 0)
            assert pos is not None, "message version absent"
            return _put(data, "<h", pos, value)

        return edit

    cases: list[Case] = []
    buffer_spec = [
        ("offset_past_body", "offset", lambda b: b.body_len + 8),
        ("offset_far_past_body", "offset", lambda b: 2**40),
        ("offset_negative", "offset", lambda b: -8),
        ("offset_most_negative", "offset", lambda b: -(2**63)),
        ("length_past_body", "length", lambda b: b.body_len + 1),
        ("length_huge", "length", lambda b: 2**62),
        ("length_max", "length", lambda b: 2**63 - 1),
        ("length_negative", "length", lambda b: -1),
    ]
    for label, field, value in buffer_spec:
        for source, which, index in [
            ("multi", "batch", 0),
            ("multi", "batch", -1),
            ("nested", "batch", 1),
            ("nested", "dictionary", 0),
        ]:
            for buffer in [1, -1]:
                name = f"{which}{index}_buffer{buffer}_{label}_{source}"
                cases.append(
                    edit_case(
                        name, MUST_FAIL, source, set_buffer(which, index, buffer, field, value)
                    )
                )

    # Offset + length both large: their sum overflows i64.
    def overflowing(data: bytearray, lay: Layout) -> bytearray:
        set_buffer("batch", 0, 1, "offset", lambda b: 2**62)(data, lay)
        return set_buffer("batch", 0, 1, "length", lambda b: 2**63 - 2**61)(data, lay)

    cases.append(
        edit_case(
            "batch0_buffer_offset_plus_length_overflows_multi", MUST_FAIL, "multi", overflowing
        )
    )
    # Every buffer spans the whole body: in range, but the wrong sizes for their arrays.
    for source, which in [
        ("multi", "batch"),
        ("nested", "batch"),
        ("nested", "dictionary"),
        ("single", "batch"),
    ]:
        cases.append(
            edit_case(
                f"{which}0_every_buffer_whole_body_{source}",
                MAY_FAIL,
                source,
                set_buffer(which, 0, "all", "length", lambda b: b.body_len),
            )
        )
        cases.append(
            edit_case(
                f"{which}0_every_buffer_empty_{source}",
                MUST_FAIL,
                source,
                set_buffer(which, 0, "all", "length", lambda b: 0),
            )
        )

    node_spec = [
        ("length_huge", "length", 2**40, MUST_FAIL),
        ("length_max", "length", 2**63 - 1, MUST_FAIL),
        ("length_negative", "length", -1, MUST_FAIL),
        ("null_count_above_length", "null_count", 10**6, MUST_FAIL),
        ("null_count_negative", "null_count", -1, MUST_FAIL),
        ("length_zero", "length", 0, MUST_FAIL),
    ]
    for label, field, value, expect in node_spec:
        for source, which, node in [
            ("multi", "batch", 0),
            ("multi", "batch", 2),
            ("nested", "batch", 2),
            ("nested", "batch", 4),
            ("nested", "dictionary", 0),
            ("single", "batch", 2),
        ]:
            cases.append(
                edit_case(
                    f"{which}_node{node}_{label}_{source}",
                    expect,
                    source,
                    set_node(which, 0, node, field, value),
                )
            )

    for source, which in [("multi", "batch"), ("nested", "batch"), ("nested", "dictionary")]:
        cases.append(
            edit_case(
                f"{which}_no_nodes_{source}",
                MUST_FAIL,
                source,
                set_vector_count(which, 0, 1, lambda n: 0),
            )
        )
        cases.append(
            edit_case(
                f"{which}_no_buffers_{source}",
                MUST_FAIL,
                source,
                set_vector_count(which, 0, 2, lambda n: 0),
            )
        )
        cases.append(
            edit_case(
                f"{which}_one_node_fewer_{source}",
                MUST_FAIL,
                source,
                set_vector_count(which, 0, 1, lambda n: n - 1),
            )
        )
        cases.append(
            edit_case(
                f"{which}_one_buffer_fewer_{source}",
                MUST_FAIL,
                source,
                set_vector_count(which, 0, 2, lambda n: n - 1),
            )
        )

    row_spec = [
        ("rows_huge", [0], 2**40, MUST_FAIL),
        ("rows_max", [0], 2**63 - 1, MUST_FAIL),
        ("rows_negative", [0], -1, MUST_FAIL),
        ("rows_zero", [0], 0, MUST_FAIL),
        ("rows_one_more", [0], None, MUST_FAIL),
        ("rows_max_every_batch", None, 2**63 - 1, MUST_FAIL),  # the total overflows u64
    ]
    for label, indices, value, expect in row_spec:
        for source in ["multi", "nested"]:
            if value is None:
                rows = 251 if source == "multi" else 101
                cases.append(
                    edit_case(
                        f"batch_{label}_{source}", expect, source, set_rows("batch", indices, rows)
                    )
                )
            else:
                cases.append(
                    edit_case(
                        f"batch_{label}_{source}", expect, source, set_rows("batch", indices, value)
                    )
                )
    cases.append(
        edit_case(
            "dictionary_rows_huge_nested", MUST_FAIL, "nested", set_rows("dictionary", [0], 2**40)
        )
    )
    cases.append(
        edit_case(
            "dictionary_rows_negative_nested", MUST_FAIL, "nested", set_rows("dictionary", [0], -1)
        )
    )

    cases.append(
        edit_case(
            "message_body_longer_than_block_multi",
            MUST_FAIL,
            "multi",
            set_message_body_length(0, lambda b: b.body_len + 8),
        )
    )
    cases.append(
        edit_case(
            "message_body_huge_multi",
            MUST_FAIL,
            "multi",
            set_message_body_length(0, lambda b: 2**62),
        )
    )
    cases.append(
        edit_case(
            "message_body_negative_multi",
            MAY_FAIL,
            "multi",
            set_message_body_length(0, lambda b: -1),
        )
    )
    cases.append(
        edit_case("message_version_v3_multi", MUST_FAIL, "multi", set_message_version(0, 2))
    )
    cases.append(
        edit_case("message_version_unknown_multi", MUST_FAIL, "multi", set_message_version(0, 77))
    )
    # pyarrow numbers dictionaries from 0, and flatbuffers leave a default 0 out, so a dictionary
    # id cannot be edited in place; the footer and dictionary flips change ids and flags instead.
    return cases


def _fuzz_cases() -> list[Case]:
    cases = []
    for seed in range(40):
        source = ["multi", "nested", "single"][seed % 3]
        cases.append(_flip_case(f"flip_footer_{seed}_{source}", source, seed, _footer_region))
        cases.append(
            _flip_case(f"flip_batch_meta_{seed}_{source}", source, seed, _batch_meta_region)
        )
        cases.append(_flip_case(f"flip_body_{seed}_{source}", source, seed, _body_region, flips=4))
    for seed in range(24):
        cases.append(
            _flip_case(
                f"flip_dictionary_meta_{seed}_nested", "nested", seed, _dictionary_meta_region
            )
        )
        source = ["multi", "nested", "single"][seed % 3]
        cases.append(
            _random_bytes_case(f"random_footer_bytes_{seed}_{source}", source, seed, _footer_region)
        )
        cases.append(
            _random_bytes_case(
                f"random_batch_meta_bytes_{seed}_{source}", source, seed, _batch_meta_region
            )
        )
        cases.append(
            _random_bytes_case(
                f"random_body_bytes_{seed}_{source}", source, seed, _body_region, count=16
            )
        )
        cases.append(
            _random_bytes_case(
                f"random_anywhere_{seed}_{source}", source, seed, _whole_file_region, count=8
            )
        )
    return cases


def _stream_cases() -> list[Case]:
    """Damage that only a stream can have: its framing (continuation markers, metadata
    lengths, the end-of-stream marker), found by walking the messages."""
    cases = []
    for source in ["stream_multi", "stream_nested", "stream_zstd_single"]:
        for percent in range(5, 100, 10):
            cases.append(
                _bytes_case(
                    f"truncate_{source}_{percent}pct",
                    MUST_FAIL,
                    lambda s, source=source, percent=percent: s[source][
                        : len(s[source]) * percent // 100
                    ],
                )
            )
        for cut in [1, 3, 4, 5, 8, 9, 16]:
            cases.append(
                _bytes_case(
                    f"truncate_{source}_last_{cut}",
                    MUST_FAIL,
                    lambda s, source=source, cut=cut: s[source][:-cut],
                )
            )

    def message_start(lay: Layout, index: int) -> int:
        blocks = sorted(lay.batches + lay.dictionaries, key=lambda b: b.offset)
        return blocks[index].offset

    def set_marker(index: int, marker: bytes):
        def edit(data: bytearray, lay: Layout) -> bytearray:
            pos = message_start(lay, index)
            data[pos : pos + 4] = marker
            return data

        return edit

    def set_meta_len(index: int, value: int):
        def edit(data: bytearray, lay: Layout) -> bytearray:
            return _put(data, "<i", message_start(lay, index) + 4, value)

        return edit

    for source in ["stream_multi", "stream_nested"]:
        for index in [0, 1, -1]:
            cases.append(
                _edit_case(
                    f"{source}_message{index}_bad_continuation",
                    MUST_FAIL,
                    source,
                    set_marker(index, b"\xfe\xff\xff\xff"),
                )
            )
            cases.append(
                _edit_case(
                    f"{source}_message{index}_zero_continuation",
                    MUST_FAIL,
                    source,
                    set_marker(index, b"\x00\x00\x00\x00"),
                )
            )
            cases.append(
                _edit_case(
                    f"{source}_message{index}_meta_len_huge",
                    MUST_FAIL,
                    source,
                    set_meta_len(index, 2**31 - 1),
                )
            )
            cases.append(
                _edit_case(
                    f"{source}_message{index}_meta_len_negative",
                    MUST_FAIL,
                    source,
                    set_meta_len(index, -8),
                )
            )
            cases.append(
                _edit_case(
                    f"{source}_message{index}_meta_len_short",
                    MUST_FAIL,
                    source,
                    set_meta_len(index, 8),
                )
            )
        cases.append(
            _bytes_case(
                f"{source}_bad_schema_marker",
                MUST_FAIL,
                lambda s, source=source: b"\xff\xff\xff\x00" + s[source][4:],
            )
        )
        cases.append(
            _bytes_case(
                f"{source}_no_end_marker",
                MUST_FAIL,
                lambda s, source=source: s[source][:-8],
                "end-of-stream",
            )
        )
        cases.append(
            _bytes_case(
                f"{source}_twice",
                MUST_FAIL,
                lambda s, source=source: s[source] + s[source],
                "end-of-stream",
            )
        )
        cases.append(
            _bytes_case(
                f"{source}_zero_padding_after_end",
                MAY_FAIL,
                lambda s, source=source: s[source] + b"\x00" * 16,
            )
        )
    cases.append(
        _bytes_case(
            "stream_only_end_marker", MUST_FAIL, lambda s: b"\xff\xff\xff\xff\x00\x00\x00\x00" * 4
        )
    )
    cases.append(
        _bytes_case(
            "stream_schema_only",
            MUST_FAIL,
            lambda s: s["stream_multi"][: stream_layout(s["stream_multi"]).batches[0].offset],
        )
    )
    for seed in range(12):
        source = ["stream_multi", "stream_nested", "stream_zstd_single"][seed % 3]
        cases.append(
            _flip_case(f"flip_stream_meta_{seed}_{source}", source, seed, _batch_meta_region)
        )
        cases.append(
            _flip_case(f"flip_stream_body_{seed}_{source}", source, seed, _body_region, flips=4)
        )
        cases.append(
            _random_bytes_case(
                f"random_stream_anywhere_{seed}_{source}", source, seed, _whole_file_region, count=8
            )
        )
    return cases


def _compression_cases() -> list[Case]:
    """Damaged compressed buffers: the 8-byte uncompressed-length prefix, and the codec's data."""

    def buffer_at(data: bytearray, lay: Layout, batch: int, buffer: int) -> tuple[int, int]:
        block = lay.batches[batch]
        table = lay.record_batch(bytes(data), block)
        _, _, first = _vector(bytes(data), table, 2)
        return lay.body_start(block) + _i64(data, first + 16 * buffer), _i64(
            data, first + 16 * buffer + 8
        )

    def set_prefix(batch: int, buffer: int, value: Callable[[int], int]):
        def edit(data: bytearray, lay: Layout) -> bytearray:
            start, _ = buffer_at(data, lay, batch, buffer)
            return _put(data, "<q", start, value(_i64(data, start)))

        return edit

    def scribble(batch: int, buffer: int, seed: int):
        def edit(data: bytearray, lay: Layout) -> bytearray:
            start, length = buffer_at(data, lay, batch, buffer)
            rng = random.Random(seed)
            for pos in range(start + 8, start + length):
                data[pos] = rng.randrange(256)
            return data

        return edit

    prefix_spec = [
        ("huge", lambda n: 2**62, MUST_FAIL),
        ("max", lambda n: 2**63 - 1, MUST_FAIL),
        ("negative", lambda n: -5, MUST_FAIL),
        ("one_more", lambda n: n + 1, MUST_FAIL),
        ("one_less", lambda n: n - 1, MUST_FAIL),
        ("zero", lambda n: 0, MUST_FAIL),
        ("times_1000", lambda n: n * 1000, MUST_FAIL),
    ]
    cases = []
    for codec in ["zstd", "lz4"]:
        for source, batch, buffer in [
            ("multi", 0, 1),
            ("multi", -1, 1),
            ("single", 0, 1),
            ("nested", 1, 2),
        ]:
            for label, value, expect in prefix_spec:
                name = f"{codec}_{source}_batch{batch}_buffer{buffer}_prefix_{label}"
                cases.append(
                    _edit_case(name, expect, f"{codec}_{source}", set_prefix(batch, buffer, value))
                )
            cases.append(
                _edit_case(
                    f"{codec}_{source}_batch{batch}_buffer{buffer}_garbage",
                    MUST_FAIL,
                    f"{codec}_{source}",
                    scribble(batch, buffer, 1),
                )
            )
        for seed in range(10):
            source = f"{codec}_" + ["multi", "nested", "single"][seed % 3]
            cases.append(
                _flip_case(
                    f"flip_compressed_body_{seed}_{source}", source, seed, _body_region, flips=4
                )
            )
            cases.append(
                _random_bytes_case(
                    f"random_compressed_body_bytes_{seed}_{source}",
                    source,
                    seed,
                    _body_region,
                    count=16,
                )
            )
        for percent in range(10, 100, 20):
            cases.append(
                _bytes_case(
                    f"truncate_{codec}_multi_{percent}pct",
                    MUST_FAIL,
                    lambda s, codec=codec, percent=percent: s[f"{codec}_multi"][
                        : len(s[f"{codec}_multi"]) * percent // 100
                    ],
                )
            )
    return cases


def _simple_cases() -> list[Case]:
    return [
        _bytes_case("empty", MUST_FAIL, lambda s: b"", "too small"),
        _bytes_case("one_byte", MUST_FAIL, lambda s: b"A"),
        _bytes_case("only_magic", MUST_FAIL, lambda s: b"ARROW1"),
        _bytes_case("magic_twice", MUST_FAIL, lambda s: b"ARROW1\x00\x00ARROW1"),
        _bytes_case(
            "magic_and_empty_footer",
            MUST_FAIL,
            lambda s: b"ARROW1\x00\x00" + struct.pack("<i", 0) + b"ARROW1",
        ),
        _bytes_case(
            "magic_and_tiny_footer",
            MUST_FAIL,
            lambda s: b"ARROW1\x00\x00" + b"\x00" * 8 + struct.pack("<i", 8) + b"ARROW1",
        ),
        _bytes_case("wrong_magic", MUST_FAIL, lambda s: b"ARROW2" + s["multi"][6:], "ARROW1"),
        _bytes_case("wrong_trailing_magic", MUST_FAIL, lambda s: s["multi"][:-6] + b"ARROW2"),
        # What an append interrupted by a crash leaves (its padding): opens at the last footer.
        _bytes_case("trailing_garbage", MAY_FAIL, lambda s: s["multi"] + b"\x00" * 7),
        _bytes_case("two_files_concatenated", MAY_FAIL, lambda s: s["multi"] + s["nested"]),
        _bytes_case("text_file", MUST_FAIL, lambda s: b"id,x\n1,2\n" * 20, "ARROW1"),
        _bytes_case("zeros", MUST_FAIL, lambda s: b"\x00" * 4096),
        _bytes_case("parquet", MUST_FAIL, _parquet_bytes, "Parquet"),
        _bytes_case(
            "footer_only_zeros",
            MUST_FAIL,
            lambda s: b"ARROW1\x00\x00" + b"\x00" * 64 + struct.pack("<i", 64) + b"ARROW1",
        ),
    ]


def all_cases() -> list[Case]:
    cases = (
        _simple_cases()
        + _truncate_cases()
        + _footer_length_cases()
        + _block_cases()
        + _batch_header_cases()
        + _batch_header_cases("stream_")
        + _batch_header_cases("zstd_")
        + _stream_cases()
        + _compression_cases()
        + _fuzz_cases()
    )
    names = [case.name for case in cases]
    assert len(names) == len(set(names)), "case names must be unique"
    return cases


CASES = all_cases()
CASES_BY_NAME = {case.name: case for case in CASES}

# --------------------------------------------------------------------------------------------
# Reading a file every way the API allows
# --------------------------------------------------------------------------------------------

# Exports that are not built yet raise a RelayError without a file name; those are fine here.
PLACEHOLDER = "not built yet"
# Errors that say the file is bad (as opposed to refusals such as ZeroCopyError, which valid
# files get too).
FILE_ERRORS = (
    relay.InvalidFileError,
    relay.FileChangedError,
    relay.RelayIOError,
    relay.RelayFileNotFoundError,
)


def _check_error(error: BaseException, path: str, step: str) -> None:
    if not isinstance(error, relay.RelayError):
        raise AssertionError(
            f"{step} raised {type(error).__name__} (not a RelayError): {error}"
        ) from error
    if path not in str(error) and PLACEHOLDER not in str(error):
        raise AssertionError(
            f"{step} raised {type(error).__name__} without naming {path}: {error}"
        ) from error


def read_everything(path: str) -> tuple[bool, list[str]]:
    """Opens `path` and reads every column every way. Returns (whether a FILE_ERRORS error came,
    the steps that ran, with the error of each step that failed). Raises AssertionError for an
    exception that is not a RelayError, or one that does not name the file."""
    steps: list[str] = []
    failed = False

    def attempt(step: str, action: Callable[[], object]) -> object:
        nonlocal failed
        steps.append(step)
        try:
            return action()
        except (KeyboardInterrupt, SystemExit):
            raise
        # The point is to see every exception (PanicException is a BaseException).
        except BaseException as error:
            _check_error(error, path, step)
            if isinstance(error, FILE_ERRORS):
                failed = True
                steps[-1] = f"{step}: {type(error).__name__}: {error}"
            return None

    try:
        frame = relay.scan(path)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as error:
        _check_error(error, path, "scan")
        return True, ["scan"]
    steps.append("scan")
    attempt(
        "schema", lambda: (frame.schema, frame.columns, frame.num_rows, len(frame), frame.shape)
    )

    def read_column(name: str, column: relay.Column) -> None:
        attempt(f"{name}.null_count", lambda: column.null_count)
        attempt(f"{name}.copy_reason", lambda: column.copy_reason)
        attempt(f"{name}.to_numpy", lambda: column.to_numpy())
        attempt(f"{name}.to_pylist", lambda: column.to_pylist())
        attempt(f"{name}.memoryview", lambda: memoryview(column).tobytes())
        attempt(f"{name}.to_arrow", lambda: column.to_arrow().validate(full=True))
        if len(frame) > 2:
            inner = column.slice(1, len(frame) - 2)
            attempt(f"{name}.slice.to_numpy", lambda: inner.to_numpy())

    for name in frame.columns:
        read_column(name, frame[name])
    attempt("frame.to_arrow", lambda: frame.to_arrow().validate(full=True))
    return failed, steps


def run_case(case: Case, sources: dict[str, bytes], directory: Path) -> None:
    path = case.make(sources, directory)
    failed, steps = read_everything(str(path))
    if case.expect == MUST_FAIL:
        assert failed, f"{case.name}: every step succeeded ({steps}) on a damaged file"
    if case.message_contains is not None:
        try:
            relay.scan(path)
        except relay.RelayError as error:
            assert case.message_contains in str(error), f"{case.name}: {error}"
        else:
            raise AssertionError(f"{case.name}: scan succeeded")


# --------------------------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    return write_sources(tmp_path_factory.mktemp("sources"))


def test_there_are_many_cases() -> None:
    assert len(CASES) >= 40


def test_sources_read_cleanly(sources: dict[str, bytes], tmp_path: Path) -> None:
    """The undamaged files read without any error but the placeholders'."""
    for name, data in sources.items():
        path = tmp_path / f"{name}.arrow"
        path.write_bytes(data)
        failed, steps = read_everything(str(path))
        assert not failed, (name, [step for step in steps if ": " in step])
        # and the flatbuffer reader finds what the cases edit
        lay = layout(data)
        assert lay.batches and all(block.body_len > 0 for block in lay.batches)
    for kind in ["", "stream_", "zstd_", "lz4_", "stream_zstd_"]:
        assert len(layout(sources[kind + "multi"]).batches) == 4
        assert len(layout(sources[kind + "nested"]).dictionaries) == 1
    assert relay.scan(tmp_path / "stream_multi.arrow")["x"].is_zero_copy is False  # 4 batches
    assert "ZSTD" in relay.scan(tmp_path / "zstd_single.arrow")["id"].copy_reason


@pytest.mark.parametrize("name", [case.name for case in CASES])
def test_malformed_file(name: str, sources: dict[str, bytes], tmp_path: Path) -> None:
    run_case(CASES_BY_NAME[name], sources, tmp_path)


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope" / "missing.arrow"
    with pytest.raises(relay.RelayFileNotFoundError, match=r"missing\.arrow") as info:
        relay.scan(path)
    assert isinstance(info.value, FileNotFoundError)
    assert isinstance(info.value, relay.RelayError)
    assert str(path) in str(info.value)


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(relay.NotArrowFileError) as info:
        relay.scan(tmp_path)
    assert str(tmp_path) in str(info.value)
    assert "directory" in str(info.value)


def test_fifo_does_not_hang(tmp_path: Path) -> None:
    """Opening a FIFO for reading blocks until a writer comes; scan must refuse it instead."""
    path = tmp_path / "pipe.arrow"
    os.mkfifo(path)
    code = f"""
        import relay_ml as relay
        try:
            relay.scan({str(path)!r})
        except relay.RelayError as error:
            assert {str(path)!r} in str(error), error
            print("refused")
        else:
            print("opened")
    """
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "refused"


def test_valid_file_without_batches(tmp_path: Path) -> None:
    path = tmp_path / "empty.arrow"
    schema = pa.schema([("x", pa.float32()), ("s", pa.string())])
    with pa.ipc.new_file(path, schema):
        pass
    frame = relay.scan(path)
    assert frame.num_rows == 0
    assert frame["x"].to_numpy().shape == (0,)


@pytest.mark.parametrize("new_size", ["half", "zero", "grown"])
def test_truncated_while_mapped(sources: dict[str, bytes], tmp_path: Path, new_size: str) -> None:
    """Shrinking the file in place under an open frame raises FileChangedError on the next read,
    never SIGBUS (run in a subprocess so a SIGBUS fails the test instead of pytest). A file that
    only grew (what `relay.append` does) still holds every mapped page: reads go on."""
    path = tmp_path / "shrinking.arrow"
    path.write_bytes(sources["multi"])
    size = len(sources["multi"])
    target = {"half": size // 2, "zero": 0, "grown": size + 4096}[new_size]
    code = f"""
        import os
        import relay_ml as relay
        path = {str(path)!r}
        frame = relay.scan(path)
        column = frame["x"]
        assert len(column.to_numpy()) == frame.num_rows
        os.truncate(path, {target})
        for read in (lambda: column.to_numpy(), lambda: frame["id"].to_numpy(),
                     lambda: column.null_count, lambda: frame.to_arrow()):
            try:
                read()
            except relay.FileChangedError as error:
                assert path in str(error), error
                assert isinstance(error, OSError)
            else:
                if {new_size != "grown"}:
                    raise AssertionError("read after truncation succeeded")
        print("ok")
    """
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, f"rc={result.returncode}\n{result.stdout}\n{result.stderr}"
    assert result.stdout.strip() == "ok"


_SUBPROCESS_RUNNER = """
import json, sys
from pathlib import Path
sys.path.insert(0, {tests_dir!r})
import test_malformed as m

directory = Path({directory!r})
sources = m.write_sources(directory / "sources")
for case in m.CASES:
    print("START " + case.name, flush=True)
    sys.stderr.write("START " + case.name + "\\n")
    sys.stderr.flush()
    case_dir = directory / case.name
    case_dir.mkdir()
    try:
        m.run_case(case, sources, case_dir)
    except AssertionError as error:
        print("FAIL " + case.name + " " + json.dumps(str(error)), flush=True)
    else:
        print("OK " + case.name, flush=True)
print("DONE", flush=True)
"""


def test_every_case_in_a_subprocess(tmp_path: Path) -> None:
    """All cases in one child process: a segfault, abort or hang fails here with the case name.
    Also checks that hand-crafted header damage is caught by relay's own validation, before
    arrow-rs could panic on it (a caught panic still prints 'panicked at' to stderr)."""
    script = _SUBPROCESS_RUNNER.format(
        tests_dir=str(Path(__file__).parent), directory=str(tmp_path)
    )
    try:
        result = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, timeout=600
        )
    except subprocess.TimeoutExpired as timeout:
        out = (
            timeout.stdout.decode() if isinstance(timeout.stdout, bytes) else (timeout.stdout or "")
        )
        started = [line[6:] for line in out.splitlines() if line.startswith("START ")]
        pytest.fail(f"hang: the subprocess timed out in case {started[-1] if started else '?'}")
    lines = result.stdout.splitlines()
    started = [line[6:] for line in lines if line.startswith("START ")]
    if result.returncode != 0 or "DONE" not in lines:
        last = started[-1] if started else "?"
        pytest.fail(
            f"the subprocess died (rc={result.returncode}) in case {last}:\n{result.stderr[-3000:]}"
        )
    failures = [line for line in lines if line.startswith("FAIL ")]
    assert not failures, "\n".join(failures)

    # Panics per case, from stderr.
    panics: dict[str, int] = {}
    current = None
    for line in result.stderr.splitlines():
        if line.startswith("START "):
            current = line[6:]
        elif "panicked at" in line and current is not None:
            panics[current] = panics.get(current, 0) + 1
    crafted = {name for name in panics if not name.startswith(("flip_", "random_"))}
    assert not crafted, (
        "arrow-rs panicked (caught) on hand-crafted damage relay should validate: "
        f"{json.dumps(panics, indent=1)}"
    )
