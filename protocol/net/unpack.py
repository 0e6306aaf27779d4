"""A msgpack reader that leaves large byte strings where they lie.

msgpack's own unpacker copies every bin value into a new bytes object (and
its streaming Unpacker first copies the whole input into its buffer), so a
4 MiB batch of shard blocks was copied twice just to be decoded. This reader
walks the same encoding in Python and returns a `memoryview` into the
payload for each bin of at least `view_from` bytes; smaller values are built
as msgpack builds them. It is meant for messages of few, large items: it
stops with `TooManyItems` after `budget` values, and any defect raises
ValueError, so the caller falls back to msgpack itself for the exact verdict
and for messages of many small items (where msgpack's C code is faster).

Settings match `msgpack.unpackb(raw=False, strict_map_key=True,
use_list=True)` with extension types refused.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

Buffer = bytes | bytearray | memoryview


class TooManyItems(ValueError):
    """More values than the budget: decode with msgpack instead."""


_FIXED = {
    0xCC: (1, ">B"),
    0xCD: (2, ">H"),
    0xCE: (4, ">I"),
    0xCF: (8, ">Q"),
    0xD0: (1, ">b"),
    0xD1: (2, ">h"),
    0xD2: (4, ">i"),
    0xD3: (8, ">q"),
    0xCA: (4, ">f"),
    0xCB: (8, ">d"),
}
_LENGTHS = {0xC4: 1, 0xC5: 2, 0xC6: 4, 0xD9: 1, 0xDA: 2, 0xDB: 4, 0xDC: 2, 0xDD: 4, 0xDE: 2}
_LENGTHS[0xDF] = 4
_CONSTANTS: dict[int, Any] = {0xC0: None, 0xC2: False, 0xC3: True}
_MAX_DEPTH = 32


class _Reader:
    def __init__(self, view: memoryview, view_from: int, budget: int) -> None:
        self.view = view
        self.at = 0
        self.view_from = view_from
        self.left = budget

    def take(self, size: int) -> memoryview:
        end = self.at + size
        if end > len(self.view):
            raise ValueError("the message ends early")
        piece = self.view[self.at : end]
        self.at = end
        return piece

    def length(self, code: int) -> int:
        size = _LENGTHS[code]
        return int.from_bytes(self.take(size), "big")

    def value(self, depth: int) -> Any:
        self.left -= 1
        if self.left < 0:
            raise TooManyItems("too many values for the view reader")
        if depth > _MAX_DEPTH:
            raise ValueError("nested too deeply")
        code = self.take(1)[0]
        return _READ[code](self, code, depth)

    def fixed(self, code: int, depth: int) -> Any:
        size, form = _FIXED[code]
        return struct.unpack(form, self.take(size))[0]

    def binary(self, code: int, depth: int) -> bytes | memoryview:
        piece = self.take(self.length(code))
        return piece if len(piece) >= self.view_from else bytes(piece)

    def text(self, code: int, depth: int) -> str:
        size = code & 0x1F if code <= 0xBF else self.length(code)
        return str(self.take(size), "utf-8")

    def sequence(self, code: int, depth: int) -> list[Any]:
        return self.array(code & 0x0F if code <= 0x9F else self.length(code), depth)

    def mapping(self, code: int, depth: int) -> dict[Any, Any]:
        return self.map(code & 0x0F if code <= 0x8F else self.length(code), depth)

    def array(self, count: int, depth: int) -> list[Any]:
        if count > self.left:
            raise TooManyItems("too many values for the view reader")
        return [self.value(depth + 1) for _ in range(count)]

    def map(self, count: int, depth: int) -> dict[Any, Any]:
        if 2 * count > self.left:
            raise TooManyItems("too many values for the view reader")
        out: dict[Any, Any] = {}
        for _ in range(count):
            key = self.value(depth + 1)
            if type(key) is memoryview:
                key = bytes(key)
            if type(key) not in (str, bytes):
                raise ValueError("map keys must be text or bytes")
            out[key] = self.value(depth + 1)
        return out


def _refuse(reader: _Reader, code: int, depth: int) -> Any:
    raise ValueError(f"msgpack type byte 0x{code:02x} is not allowed")  # ext, 0xc1


def _constant(reader: _Reader, code: int, depth: int) -> Any:
    return _CONSTANTS[code]


def _positive(reader: _Reader, code: int, depth: int) -> int:
    return code


def _negative(reader: _Reader, code: int, depth: int) -> int:
    return code - 0x100


def _table() -> list[Callable[[_Reader, int, int], Any]]:
    """The reader of each type byte."""
    table: list[Callable[[_Reader, int, int], Any]] = [_refuse] * 256
    spans = [
        (0x00, 0x7F, _positive),
        (0x80, 0x8F, _Reader.mapping),
        (0x90, 0x9F, _Reader.sequence),
        (0xA0, 0xBF, _Reader.text),
        (0xE0, 0xFF, _negative),
    ]
    for first, last, read in spans:
        table[first : last + 1] = [read] * (last - first + 1)
    for code in _CONSTANTS:
        table[code] = _constant
    for code in _FIXED:
        table[code] = _Reader.fixed
    for codes, read in (
        ((0xC4, 0xC5, 0xC6), _Reader.binary),
        ((0xD9, 0xDA, 0xDB), _Reader.text),
        ((0xDC, 0xDD), _Reader.sequence),
        ((0xDE, 0xDF), _Reader.mapping),
    ):
        for code in codes:
            table[code] = read
    return table


_READ = _table()


def unpack_views(payload: Buffer, *, view_from: int, budget: int) -> Any:
    """The value `payload` encodes; bins of `view_from` bytes or more as views into it.

    Raises TooManyItems past `budget` values and ValueError on anything msgpack
    (with this module's settings) would refuse, or might read differently.
    """
    reader = _Reader(memoryview(payload).cast("B"), view_from, budget)
    value = reader.value(0)
    if reader.at != len(reader.view):
        raise ValueError("extra bytes after the message")
    return value
