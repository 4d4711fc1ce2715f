"""Reading and rewriting the thrift footer of a Parquet file, to make files that no writer makes.

The footer is a thrift `FileMetaData` struct in the compact protocol. `decode` turns a struct into
a list of `[field id, type, value]` (in file order, so that `encode` writes the same bytes back),
where a struct's value is such a list again and a list's value is `(element type, [values])`.
"""

from __future__ import annotations

import struct
from pathlib import Path

STOP, TRUE, FALSE, BYTE, I16, I32, I64, DOUBLE, BINARY, LIST, SET, MAP, STRUCT = range(13)


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.at = 0

    def byte(self) -> int:
        value = self.data[self.at]
        self.at += 1
        return value

    def varint(self) -> int:
        value = shift = 0
        while True:
            byte = self.byte()
            value |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                return value

    def zigzag(self) -> int:
        raw = self.varint()
        return (raw >> 1) ^ -(raw & 1)

    def value(self, kind: int, in_list: bool = False):
        if kind in (TRUE, FALSE):
            return self.byte() == 1 if in_list else kind == TRUE
        if kind == BYTE:
            return self.byte()
        if kind in (I16, I32, I64):
            return self.zigzag()
        if kind == DOUBLE:
            self.at += 8
            return struct.unpack("<d", self.data[self.at - 8 : self.at])[0]
        if kind == BINARY:
            length = self.varint()
            self.at += length
            return self.data[self.at - length : self.at]
        if kind in (LIST, SET):
            header = self.byte()
            size = header >> 4
            if size == 15:
                size = self.varint()
            element = header & 0x0F
            return (element, [self.value(element, in_list=True) for _ in range(size)])
        if kind == STRUCT:
            fields, last = [], 0
            while True:
                header = self.byte()
                if header & 0x0F == STOP:
                    return fields
                delta = header >> 4
                field_id = last + delta if delta else self.zigzag()
                fields.append([field_id, header & 0x0F, self.value(header & 0x0F)])
                last = field_id
        raise ValueError(f"thrift type {kind} is not used in Parquet footers")


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        if value < 0x80:
            out.append(value)
            return bytes(out)
        out.append(value & 0x7F | 0x80)
        value >>= 7


def _zigzag(value: int) -> bytes:
    return _varint((value << 1) ^ (value >> 63))


def _encode_value(kind: int, value, in_list: bool = False) -> bytes:
    if kind in (TRUE, FALSE):
        return bytes([1 if value else 2]) if in_list else b""
    if kind == BYTE:
        return bytes([value])
    if kind in (I16, I32, I64):
        return _zigzag(value)
    if kind == DOUBLE:
        return struct.pack("<d", value)
    if kind == BINARY:
        return _varint(len(value)) + bytes(value)
    if kind in (LIST, SET):
        element, items = value
        header = (
            bytes([len(items) << 4 | element])
            if len(items) < 15
            else bytes([0xF0 | element]) + _varint(len(items))
        )
        return header + b"".join(_encode_value(element, item, in_list=True) for item in items)
    if kind == STRUCT:
        return encode(value)
    raise ValueError(f"thrift type {kind} is not used in Parquet footers")


def encode(fields: list) -> bytes:
    """The compact encoding of a struct given as `[field id, type, value]` entries."""
    out, last = bytearray(), 0
    for field_id, kind, value in fields:
        if kind in (TRUE, FALSE):
            kind = TRUE if value else FALSE
        if 0 < field_id - last <= 15:
            out.append((field_id - last) << 4 | kind)
        else:
            out.append(kind)
            out += _zigzag(field_id)
        out += _encode_value(kind, value)
        last = field_id
    out.append(STOP)
    return bytes(out)


def field(fields: list, field_id: int) -> list:
    """The `[field id, type, value]` entry of `field_id` (it must be there)."""
    return next(entry for entry in fields if entry[0] == field_id)


def read_footer(path: Path) -> tuple[bytes, list]:
    """The bytes before the footer, and the footer decoded."""
    data = Path(path).read_bytes()
    assert data[-4:] == b"PAR1"
    length = int.from_bytes(data[-8:-4], "little")
    start = len(data) - 8 - length
    footer = _Reader(data[start:-8]).value(STRUCT)
    return data[:start], footer


def write_footer(path: Path, head: bytes, footer: list) -> Path:
    """Writes `head` followed by `footer` encoded, its length and the magic."""
    encoded = encode(footer)
    Path(path).write_bytes(head + encoded + len(encoded).to_bytes(4, "little") + b"PAR1")
    return Path(path)
