"""Cutting an upload into segments, without trio."""

from __future__ import annotations

import os
import tracemalloc

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.records.upload import COALESCE, Pieces, UploadSegments


@given(st.lists(st.integers(0, 300), max_size=8), st.integers(1, 100))
def test_pieces_take_returns_the_bytes_in_order(sizes: list[int], take: int) -> None:
    pieces = Pieces()
    data = os.urandom(sum(sizes))
    at = 0
    for size in sizes:
        pieces.add(data[at : at + size])
        at += size
    out = b""
    while pieces.size >= take:
        out += pieces.take(take)
    out += pieces.take(pieces.size)
    assert out == data and pieces.size == 0


@given(st.lists(st.binary(max_size=300), max_size=8), st.integers(1, 100))
def test_any_chunks_make_full_segments_then_one_last(chunks: list[bytes], size: int) -> None:
    segments = UploadSegments(size)
    out = []
    for i, chunk in enumerate(chunks):
        out += segments.add(chunk, i == len(chunks) - 1)
    if not chunks:
        out = segments.add(b"", True)
    assert b"".join(s for s, _ in out) == b"".join(chunks)
    assert [last for _, last in out] == [False] * (len(out) - 1) + [True]
    assert all(len(s) == size for s, _ in out[:-1]) and len(out[-1][0]) <= size
    assert segments.finished and segments.buffered == 0
    with pytest.raises(ValueError, match="already ended"):
        segments.add(b"x", True)


@given(
    st.lists(st.integers(0, 3 * COALESCE), max_size=8),
    st.integers(1, 2 * COALESCE),
)
def test_chunks_around_the_coalescing_size_keep_their_order(sizes: list[int], size: int) -> None:
    data = os.urandom(sum(sizes))
    segments = UploadSegments(size)
    out, at = [], 0
    for chunk_size in sizes:
        out += segments.add(data[at : at + chunk_size], False)
        at += chunk_size
    out += segments.add(b"", True)
    assert b"".join(s for s, _ in out) == data
    assert all(len(s) == size for s, _ in out[:-1])


def test_a_chunk_of_exactly_one_segment_passes_through_uncopied() -> None:
    segments = UploadSegments(COALESCE * 2)
    first, second = os.urandom(COALESCE * 2), os.urandom(10)
    assert segments.add(first, False) == []
    ((segment, last),) = segments.add(second, False)
    assert segment is first and not last


def test_a_body_sent_a_few_bytes_at_a_time_is_held_at_about_its_size() -> None:
    """A client may send its body in 2-byte pieces; the node must not keep an object for each
    (that was about twenty times the segment in memory, and a view of each when joined)."""
    size = 1024 * 1024
    data = os.urandom(size + 10)
    segments = UploadSegments(size)
    tracemalloc.start()
    try:
        out = []
        for at in range(0, len(data), 2):
            out += segments.add(data[at : at + 2], False)  # a new object, as off the network
        out += segments.add(b"", True)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert b"".join(s for s, _ in out) == data
    assert peak < 3 * size, f"{peak / size:.1f} times the segment"
