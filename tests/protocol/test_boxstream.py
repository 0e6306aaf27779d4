from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.errors import LocalProtocolError, RemoteProtocolError
from protocol.net.boxstream import (
    HEADER_SIZE,
    IDLE_SPACE,
    MAX_BODY,
    RECEIVE_SPACE,
    BoxReader,
    BoxWriter,
)
from tests.protocol.keys import seed

KEY = seed("box key")
NONCE = seed("box nonce")[:24]


def pair() -> tuple[BoxWriter, BoxReader]:
    return BoxWriter(KEY, NONCE), BoxReader(KEY, NONCE)


def test_round_trip_and_framing() -> None:
    writer, reader = pair()
    frames = writer.seal(b"hello") + writer.seal(b"world!")
    assert len(frames) == 2 * HEADER_SIZE + 11
    assert b"hello" not in frames
    assert reader.feed(frames) == [b"hello", b"world!"]


def test_large_data_splits_into_max_bodies() -> None:
    writer, reader = pair()
    data = bytes(range(256)) * 600  # 153600 bytes: 3 frames
    sealed = writer.seal(data)
    assert len(sealed) == len(data) + 3 * HEADER_SIZE
    bodies = reader.feed(sealed)
    assert [len(b) for b in bodies] == [MAX_BODY, MAX_BODY, len(data) - 2 * MAX_BODY]
    assert b"".join(bodies) == data


def test_byte_at_a_time_delivery() -> None:
    writer, reader = pair()
    sealed = writer.seal(b"slow") + writer.goodbye()
    out = []
    for byte in sealed:
        out += reader.feed(bytes([byte]))
    assert out == [b"slow"] and reader.closed


def test_goodbye_closes_cleanly_and_nothing_may_follow() -> None:
    writer, reader = pair()
    assert reader.feed(writer.seal(b"last words") + writer.goodbye()) == [b"last words"]
    assert reader.closed
    with pytest.raises(RemoteProtocolError, match="after the box-stream goodbye"):
        reader.feed(b"x")
    with pytest.raises(LocalProtocolError):
        writer.seal(b"more")


def test_data_after_goodbye_in_the_same_read() -> None:
    writer, reader = pair()
    with pytest.raises(RemoteProtocolError, match="after the box-stream goodbye"):
        reader.feed(writer.goodbye() + b"trailing")


def test_tampering_any_byte_fails() -> None:
    writer, _ = pair()
    sealed = writer.seal(b"integrity matters")
    for position in range(len(sealed)):
        _, reader = pair()
        tampered = bytearray(sealed)
        tampered[position] ^= 0x01
        with pytest.raises(RemoteProtocolError, match="failed authentication"):
            reader.feed(bytes(tampered))


def test_replayed_frame_fails() -> None:
    writer, reader = pair()
    first = writer.seal(b"pay 10")
    assert reader.feed(first) == [b"pay 10"]
    with pytest.raises(RemoteProtocolError, match="failed authentication"):
        reader.feed(first)


def test_reordered_frames_fail() -> None:
    writer, reader = pair()
    first, second = writer.seal(b"one"), writer.seal(b"two")
    with pytest.raises(RemoteProtocolError):
        reader.feed(second + first)


def test_truncation_is_visible_as_no_goodbye() -> None:
    writer, reader = pair()
    sealed = writer.seal(b"cut short")
    assert reader.feed(sealed[:-3]) == []
    assert not reader.closed
    assert reader.buffered > 0


def test_other_direction_key_cannot_read() -> None:
    writer = BoxWriter(KEY, NONCE)
    reader = BoxReader(seed("other key"), NONCE)
    with pytest.raises(RemoteProtocolError):
        reader.feed(writer.seal(b"secret"))


def test_local_misuse() -> None:
    with pytest.raises(LocalProtocolError):
        BoxWriter(b"short", NONCE)
    with pytest.raises(LocalProtocolError):
        BoxReader(KEY, b"short")
    with pytest.raises(LocalProtocolError):
        BoxWriter(KEY, NONCE).seal(b"")


def test_nonce_wraps_around() -> None:
    top = b"\xff" * 24
    writer, reader = BoxWriter(KEY, top), BoxReader(KEY, top)
    assert reader.feed(writer.seal(b"a") + writer.seal(b"b")) == [b"a", b"b"]


@given(st.lists(st.binary(max_size=300), max_size=8))
def test_arbitrary_bytes_raise_only_remote_errors(chunks: list[bytes]) -> None:
    _, reader = pair()
    try:
        for chunk in chunks:
            reader.feed(chunk)
    except RemoteProtocolError:
        pass


@given(st.lists(st.integers(0, 70_000), min_size=1, max_size=6))
def test_parts_are_sealed_as_if_joined(sizes: list[int]) -> None:
    parts = [bytes([i + 1]) * size for i, size in enumerate(sizes)]
    joined = b"".join(parts)
    if not joined:
        return
    writer, reader = pair()
    separate, together = writer.seal(*parts), BoxWriter(KEY, NONCE).seal(joined)
    assert separate == together  # same frames, however the message was split
    assert b"".join(reader.feed(bytes(separate))) == joined


@given(st.lists(st.integers(1, 20_000), min_size=1, max_size=5), st.integers(1, 70_000))
def test_any_delivery_split_yields_the_same_bodies(sizes: list[int], cut: int) -> None:
    writer, reader = pair()
    messages = [bytes([i % 251]) * size for i, size in enumerate(sizes)]
    stream = b"".join(bytes(writer.seal(m)) for m in messages)
    out: list[bytes | bytearray] = []
    for start in range(0, len(stream), cut):
        out += reader.feed(stream[start : start + cut])
    assert b"".join(out) == b"".join(messages) and reader.buffered == 0


# -- receiving straight into the reader's buffer (a socket's recv_into) ---------------


class Collect:
    """A sink that keeps each body (never has room: the reader's scratch path)."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []

    def reserve(self, size: int) -> memoryview | None:
        return None

    def commit(self, size: int) -> None:  # pragma: no cover - reserve gives no room
        raise AssertionError

    def take(self, data: bytes | bytearray | memoryview) -> None:
        self.bodies.append(bytes(data))


def receive_in_pieces(reader: BoxReader, stream: bytes, sizes: list[int]) -> list[bytes]:
    """What a socket does: write into `space`, release it, say how much came."""
    sink = Collect()
    at = 0
    for size in sizes:
        piece = stream[at : at + size]
        with reader.space() as room:
            room[: len(piece)] = piece
        reader.received(len(piece), sink)
        at += len(piece)
    return sink.bodies


@given(st.lists(st.integers(min_value=1, max_value=300_000), min_size=1, max_size=40))
def test_receiving_into_the_space_in_any_pieces_opens_what_feeding_opens(
    sizes: list[int],
) -> None:
    writer = BoxWriter(KEY, NONCE)
    messages = [bytes([i]) * n for i, n in enumerate((5, MAX_BODY, 200_000, 1, 70_000))]
    stream = b"".join(bytes(writer.seal(m)) for m in messages)
    reader = BoxReader(KEY, NONCE)
    pieces: list[int] = []
    at = 0
    while at < len(stream):  # each receive at most the space offered (RECEIVE_SPACE)
        step = min(sizes[len(pieces) % len(sizes)], RECEIVE_SPACE, len(stream) - at)
        pieces.append(step)
        at += step
    bodies = receive_in_pieces(reader, stream, pieces)
    assert b"".join(bodies) == b"".join(messages) and reader.buffered == 0


def test_a_receive_larger_than_its_space_is_refused() -> None:
    reader = BoxReader(KEY, NONCE)
    with reader.space(100) as room:
        room[:] = bytes(100)
    with pytest.raises(LocalProtocolError, match="cannot have been received"):
        reader.received(101, Collect())


def test_bytes_received_after_the_goodbye_are_refused() -> None:
    writer, reader = pair()
    assert receive_in_pieces(reader, bytes(writer.goodbye()), [HEADER_SIZE]) == []
    assert reader.closed
    with pytest.raises(RemoteProtocolError, match="after the box-stream goodbye"):
        receive_in_pieces(reader, b"x", [1])


def test_a_tampered_body_received_into_the_space_fails() -> None:
    writer, reader = pair()
    sealed = bytearray(writer.seal(b"payload" * 100))
    sealed[-1] ^= 1
    with pytest.raises(RemoteProtocolError, match="body failed authentication"):
        receive_in_pieces(reader, bytes(sealed), [len(sealed)])


def test_a_rare_huge_feed_does_not_keep_its_buffer() -> None:
    writer, reader = pair()
    reader.feed(writer.seal(bytes(3 * 1024 * 1024)))
    assert reader.buffered == 0 and len(reader._buffer) == 0
    reader.feed(writer.seal(b"small"))
    assert len(reader._buffer) < 2 * MAX_BODY  # an ordinary size is kept for reuse


def test_a_receive_asks_for_what_the_message_under_way_still_needs() -> None:
    """Between messages a receive brings IDLE_SPACE (an idle connection keeps a small
    buffer); inside a large one up to RECEIVE_SPACE, its rest and its frame headers."""
    reader = BoxReader(KEY, NONCE)
    assert reader.receive_size(0) == IDLE_SPACE
    assert reader.receive_size(100) == IDLE_SPACE
    assert reader.receive_size(100_000) == 100_000 + 2 * HEADER_SIZE
    assert reader.receive_size(4 * 1024 * 1024) == RECEIVE_SPACE
