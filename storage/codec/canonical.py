"""Canonical msgpack: one byte string per value, so hashes of encodings agree.

Maps are written with sorted keys, binary as bin, text as str; decoding
checks the size cap before parsing, refuses extension types and anything
that does not re-encode to the very same bytes.
"""

from __future__ import annotations

from typing import Any

import msgpack

from storage.errors import ManifestError


def _sorted(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _sorted(value[key]) for key in sorted(value)}
    if isinstance(value, list | tuple):
        return [_sorted(item) for item in value]
    return value


def pack(value: Any) -> bytes:
    """Canonical encoding of a tree of dicts, lists, str, bytes, ints, bools, None."""
    return msgpack.packb(_sorted(value), use_bin_type=True)  # type: ignore[no-any-return]


def _no_ext(code: int, data: bytes) -> Any:
    raise ValueError(f"extension type {code} is not allowed")


def unpack(data: bytes, *, max_size: int, what: str) -> Any:
    """Decode `data` strictly; any defect raises ManifestError naming `what`."""
    if len(data) > max_size:
        raise ManifestError(f"{what} is {len(data)} bytes, over the {max_size}-byte limit")
    try:
        value = msgpack.unpackb(
            data,
            raw=False,
            strict_map_key=True,
            use_list=True,
            ext_hook=_no_ext,
        )
    except Exception as exc:  # msgpack raises many types for malformed input
        raise ManifestError(f"{what} is not valid msgpack: {exc}") from None
    try:
        canonical = pack(value) == data
    except TypeError:  # e.g. str and bytes keys mixed in one map
        canonical = False
    if not canonical:
        raise ManifestError(f"{what} is not in canonical encoding")
    return value
