"""Encoding a message for sending leaves no reference cycle holding its blocks (issue 17)."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from protocol.net.messages import (
    LARGE_BYTES,
    Envelope,
    Kind,
    decode_envelope,
    encode_envelope_parts,
)
from protocol.records.messages import StoreShards


class Block(bytearray):
    """A block whose end the test can see (bytearray subclasses take weak references)."""


@pytest.fixture
def no_cyclic_gc() -> Iterator[None]:
    """Only reference counting frees objects: what a cycle holds stays."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def test_sent_blocks_are_freed_by_reference_counting_alone(no_cyclic_gc: None) -> None:
    blocks = [Block(bytes([i]) * (LARGE_BYTES + 1)) for i in range(3)]
    watched = [weakref.ref(block) for block in blocks]
    message = StoreShards(b"r" * 32, None, 2, 0, tuple(blocks), False)  # type: ignore[arg-type]
    parts = encode_envelope_parts(Envelope(Kind.REQUEST, 1, message))
    decoded = decode_envelope(b"".join(parts))
    assert isinstance(decoded.message, StoreShards)
    assert decoded.message.blocks == tuple(bytes(b) for b in blocks)  # still the same encoding
    del blocks, message, parts, decoded
    assert [ref() for ref in watched] == [None, None, None]
