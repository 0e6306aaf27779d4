"""Cutting an upload into segments, without trio."""

from __future__ import annotations

import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.records.upload import Pieces, UploadSegments


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
