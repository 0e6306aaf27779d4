from __future__ import annotations

import contextlib
import typing
from dataclasses import dataclass
from typing import ClassVar

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.dht.messages import ProvidersFound
from protocol.errors import LocalProtocolError, RemoteProtocolError
from protocol.ledger.messages import LedgerHeads
from protocol.net.messages import (
    LARGE_BYTES,
    UNPACK_PIECE,
    BadMessage,
    Echo,
    Envelope,
    ErrorCode,
    Kind,
    Message,
    Ping,
    UnknownMessageType,
    UnsupportedVersion,
    decode_envelope,
    encode_envelope,
    encode_envelope_parts,
    register,
    registered,
)
from protocol.net.rpc import RequestTracker
from protocol.net.wire import FrameDecoder, encode_frame
from protocol.records.messages import MAX_FETCH_REFS, FetchBlocks, StoreShards
from protocol.schema import MaxItems


def test_frames_round_trip_across_chunk_boundaries() -> None:
    stream = encode_frame(b"one") + encode_frame(b"two" * 100) + encode_frame(b"3")
    decoder = FrameDecoder()
    out = []
    for i in range(0, len(stream), 7):
        out += decoder.feed(stream[i : i + 7])
    assert out == [b"one", b"two" * 100, b"3"]
    assert decoder.buffered == 0


def test_cap_is_checked_before_buffering() -> None:
    decoder = FrameDecoder(max_size=1000)
    with pytest.raises(RemoteProtocolError, match="over the 1000-byte cap"):
        decoder.feed((1001).to_bytes(4, "big"))
    with pytest.raises(LocalProtocolError, match="exceeds"):
        encode_frame(b"x" * 1001, max_size=1000)


def test_empty_frames_are_refused() -> None:
    with pytest.raises(RemoteProtocolError, match="empty"):
        FrameDecoder().feed(bytes(4))
    with pytest.raises(LocalProtocolError):
        encode_frame(b"")


def test_envelope_round_trip() -> None:
    for envelope in (
        Envelope(Kind.REQUEST, 7, Ping(nonce=99)),
        Envelope(Kind.RESPONSE, 2**32 - 1, Echo(data=b"\x00" * 10)),
    ):
        assert decode_envelope(encode_envelope(envelope)) == envelope


def envelope_bytes(*fields: object) -> bytes:
    return msgpack.packb(list(fields), use_bin_type=True)  # type: ignore[no-any-return]


def test_unknown_type_keeps_the_request_id() -> None:
    with pytest.raises(UnknownMessageType) as caught:
        decode_envelope(envelope_bytes(1, 0, 42, "teleport", {}))
    assert caught.value.request_id == 42
    assert caught.value.code == ErrorCode.UNKNOWN_TYPE
    assert caught.value.kind == Kind.REQUEST


def test_unsupported_version_is_named() -> None:
    with pytest.raises(UnsupportedVersion, match="version 9 is not supported") as caught:
        decode_envelope(envelope_bytes(9, 0, 5, "ping", {"nonce": 1}))
    assert caught.value.request_id == 5


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"\xc1", "not valid msgpack"),
        (envelope_bytes(1, 0, 1), "5-field envelope"),
        (envelope_bytes(1, 0, -1, "ping", {"nonce": 1}), "request id"),
        (envelope_bytes(1, 7, 1, "ping", {"nonce": 1}), "unknown message kind"),
        (envelope_bytes(1, 0, 1, "ping", {"nonce": "1"}), "expected an integer"),
        (envelope_bytes(1, 0, 1, "ping", {"nonce": True}), "expected an integer"),
        (envelope_bytes(1, 0, 1, "ping", {}), "differ"),
        (envelope_bytes(1, 0, 1, "ping", {"nonce": 1, "x": 2}), "differ"),
        (envelope_bytes(1, 0, 1, "ping", [1]), "must be a map"),
        (envelope_bytes(1, 0, 1, "echo", {"data": "text"}), "expected bytes"),
    ],
)
def test_malformed_envelopes(payload: bytes, message: str) -> None:
    with pytest.raises(BadMessage, match=message):
        decode_envelope(payload)


@register
@dataclass(frozen=True)
class _Nested(Message):
    TYPE: ClassVar[str] = "test_nested"
    items: tuple[Ping, ...]
    labels: dict[str, int]
    maybe: bytes | None


def test_nested_and_optional_fields() -> None:
    original = _Nested(items=(Ping(1), Ping(2)), labels={"a": 1}, maybe=None)
    assert decode_envelope(encode_envelope(Envelope(Kind.REQUEST, 1, original))).message == original
    bad = envelope_bytes(
        1, 0, 1, "test_nested", {"items": [{"nonce": "x"}], "labels": {}, "maybe": None}
    )
    with pytest.raises(BadMessage, match=r"items\[0\]\.nonce"):
        decode_envelope(bad)


def test_encoding_unregistered_or_bad_ids_is_local_error() -> None:
    @dataclass(frozen=True)
    class Stray(Message):
        TYPE: ClassVar[str] = "stray"

    with pytest.raises(LocalProtocolError):
        encode_envelope(Envelope(Kind.REQUEST, 1, Stray()))
    with pytest.raises(LocalProtocolError):
        encode_envelope(Envelope(Kind.REQUEST, -1, Ping(1)))


def test_registration_rules() -> None:
    with pytest.raises(TypeError, match="already registered"):
        register(dataclass(frozen=True)(type("Dup", (Message,), {"TYPE": "ping"})))


@given(st.binary(max_size=300))
def test_arbitrary_payloads_raise_only_remote_errors(payload: bytes) -> None:
    with contextlib.suppress(RemoteProtocolError):
        decode_envelope(payload)


@given(st.lists(st.binary(max_size=100), max_size=10))
def test_arbitrary_stream_into_frame_decoder(chunks: list[bytes]) -> None:
    decoder = FrameDecoder(max_size=64)
    with contextlib.suppress(RemoteProtocolError):
        for chunk in chunks:
            for payload in decoder.feed(chunk):
                assert 0 < len(payload) <= 64


def test_tracker_ids_deadlines_and_late_responses() -> None:
    tracker = RequestTracker(max_outstanding=3)
    a = tracker.open(now=0.0, timeout=5.0)
    b = tracker.open(now=1.0, timeout=1.0)
    assert a != b and len(tracker) == 2
    assert tracker.deadline(a) == 5.0 and tracker.deadline(b) == 2.0
    assert tracker.close(b) is True
    assert tracker.close(b) is False  # a late or repeated response: not delivered
    assert tracker.deadline(b) is None
    assert tracker.close(a) is True and len(tracker) == 0


def test_tracker_limits_and_wraparound() -> None:
    tracker = RequestTracker(max_outstanding=2)
    tracker.open(0, 1)
    tracker.open(0, 1)
    with pytest.raises(LocalProtocolError, match="outstanding"):
        tracker.open(0, 1)
    with pytest.raises(LocalProtocolError, match="positive"):
        RequestTracker().open(0, 0)
    wrapping = RequestTracker(first_id=2**32 - 1)
    assert wrapping.open(0, 1) == 2**32 - 1
    assert wrapping.open(0, 1) == 1


def test_frames_from_views_and_one_copy_per_payload() -> None:
    decoder = FrameDecoder()
    payload = bytes(range(256)) * 50
    stream = bytearray(encode_frame(payload) + encode_frame(b"tail"))
    view = memoryview(stream)
    out = decoder.feed(view[:3]) + decoder.feed(view[3:9000]) + decoder.feed(view[9000:])
    assert out == [payload, b"tail"] and all(type(p) is bytes for p in out)


def test_envelope_parts_leave_large_blocks_in_place() -> None:
    blocks = (bytes(range(256)) * 200, b"small", memoryview(b"\x07" * LARGE_BYTES))
    message = StoreShards(b"r" * 32, None, 3, 17, blocks, False)
    envelope = Envelope(Kind.REQUEST, 9, message)
    parts = encode_envelope_parts(envelope)
    assert any(part is blocks[0] for part in parts) and any(part is blocks[2] for part in parts)
    decoded = decode_envelope(b"".join(parts))
    assert decoded.request_id == 9 and decoded.message == StoreShards(
        b"r" * 32, None, 3, 17, (blocks[0], b"small", bytes(blocks[2])), False
    )
    # Without large strings, the parts are the ordinary encoding.
    small = Envelope(Kind.RESPONSE, 1, Echo(b"x" * 100))
    assert b"".join(encode_envelope_parts(small)) == encode_envelope(small)


def test_a_list_over_its_cap_is_refused_before_its_items_are_decoded() -> None:
    refs = [{"segment": 0, "index": 0}] * (MAX_FETCH_REFS + 1)
    body = {"record_id": b"r" * 32, "permit": None, "proof": None}
    bad = envelope_bytes(1, 0, 1, "fetch_blocks", {**body, "wanted": refs})
    with pytest.raises(BadMessage, match=rf"wanted: {MAX_FETCH_REFS + 1} items, at most"):
        decode_envelope(bad)
    ok = envelope_bytes(1, 0, 1, "fetch_blocks", {**body, "wanted": refs[:-1]})
    message = decode_envelope(ok).message
    assert isinstance(message, FetchBlocks) and len(message.wanted) == MAX_FETCH_REFS


def test_every_list_a_peer_sends_has_a_cap() -> None:
    # A list without a cap lets one message make a node walk millions of items.
    uncapped = []
    assert {ProvidersFound, LedgerHeads, FetchBlocks} <= set(registered())  # all imported
    for cls in registered():
        if cls.__module__.startswith("tests."):
            continue
        for name, hint in typing.get_type_hints(cls, include_extras=True).items():
            if name == "TYPE":
                continue
            if typing.get_origin(hint) is tuple or typing.get_origin(hint) is dict:
                uncapped.append(f"{cls.__name__}.{name}")
            if typing.get_origin(hint) is typing.Annotated:
                assert any(isinstance(m, MaxItems) for m in typing.get_args(hint)[1:])
    assert uncapped == []


def test_a_large_envelope_is_unpacked_in_pieces_exactly_as_a_small_one() -> None:
    # Over UNPACK_PIECE the msgpack is read a piece at a time (so a worker thread
    # decoding it lets the event loop run): the same value, the same refusals.
    data = bytes(range(256)) * (3 * UNPACK_PIECE // 256)
    envelope = Envelope(Kind.REQUEST, 5, Echo(data))
    payload = encode_envelope(envelope)
    assert len(payload) > 2 * UNPACK_PIECE
    assert decode_envelope(payload) == envelope
    nested = _Nested(items=tuple(Ping(i) for i in range(30_000)), labels={"a": 1}, maybe=b"m")
    assert decode_envelope(encode_envelope(Envelope(Kind.RESPONSE, 6, nested))).message == nested
    with pytest.raises(BadMessage, match="not valid msgpack"):
        decode_envelope(payload[:-1])  # ends early
    with pytest.raises(BadMessage, match="not valid msgpack"):
        decode_envelope(payload + b"\x00")  # extra bytes
    with pytest.raises(BadMessage, match="not valid msgpack"):
        decode_envelope(payload[: UNPACK_PIECE + 10])
