"""A DataChunk frame split at its data is encode_reply's frame byte for byte, and the
client's head parser reads exactly those heads (anything else goes to the full decoder)."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.control.datachunk import HEAD_MAX, frame_head, parse_head
from protocol.control.replies import DataChunk, Done, ErrorReply, GetHeader, encode_reply
from protocol.net.wire import PREFIX_SIZE

# segments across msgpack's int widths; sizes across its bin8/16/32 headers
SEGMENTS = [0, 1, 127, 128, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**64 - 1]
SIZES = [0, 1, 255, 256, 65535, 65536, 1024 * 1024 + 16]


@pytest.mark.parametrize("segment", SEGMENTS)
@pytest.mark.parametrize("size", SIZES)
def test_head_then_data_is_the_whole_frame(segment: int, size: int) -> None:
    data = bytes([segment % 251]) * size
    frame = encode_reply(DataChunk(segment, data))
    head = frame_head(segment, size)
    assert head + data == frame
    payload = frame[PREFIX_SIZE:]
    assert parse_head(payload[:HEAD_MAX], len(payload)) == (segment, len(head) - PREFIX_SIZE)


def test_other_replies_are_not_taken_for_data() -> None:
    for reply in (Done(), ErrorReply("data"), GetHeader(5, 1, filename="data")):
        payload = encode_reply(reply)[PREFIX_SIZE:]
        assert parse_head(payload[:HEAD_MAX], len(payload)) is None


def test_a_head_whose_data_does_not_end_the_frame_is_left_to_the_decoder() -> None:
    payload = encode_reply(DataChunk(3, b"x" * 100))[PREFIX_SIZE:]
    assert parse_head(payload, len(payload)) == (3, len(payload) - 100)
    assert parse_head(payload, len(payload) + 1) is None  # a frame longer than its data says
    assert parse_head(payload, len(payload) - 1) is None


def test_other_encodings_of_a_data_chunk_go_to_the_full_decoder() -> None:
    """Valid msgpack the fast path does not read (a signed int, str data, other key
    order): None, so the schema decoder reads or refuses it as before."""
    for body in (
        ["data", {"segment": -1, "data": b"x"}],
        ["data", {"segment": 1, "data": "x"}],
        ["data", {"data": b"x", "segment": 1}],
    ):
        payload = msgpack.packb(body, use_bin_type=True)
        assert parse_head(payload[:HEAD_MAX], len(payload)) is None
    signed = b"\x92\xa4data\x82\xa7segment\xd0\x05\xa4data\xc4\x01x"
    assert parse_head(signed, len(signed)) is None


@given(st.binary(max_size=HEAD_MAX + 8), st.integers(min_value=0, max_value=2**40))
def test_garbage_heads_parse_to_none_or_a_consistent_head(head: bytes, size: int) -> None:
    found = parse_head(head, size)
    if found is not None:
        segment, length = found
        assert 0 <= segment < 2**64 and length <= min(len(head), HEAD_MAX) and length <= size


@given(st.integers(min_value=0, max_value=2**64 - 1), st.binary(max_size=300))
def test_every_head_parses_back(segment: int, data: bytes) -> None:
    frame = frame_head(segment, len(data)) + data
    payload = frame[PREFIX_SIZE:]
    assert parse_head(payload[:HEAD_MAX], len(payload)) == (segment, len(payload) - len(data))
