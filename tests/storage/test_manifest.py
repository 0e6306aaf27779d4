from __future__ import annotations

import contextlib
import dataclasses
from typing import Any

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from storage.codec import canonical
from storage.codec.crypt import SegmentCipher
from storage.codec.manifest import (
    LEGACY_VERSION,
    MAX_MANIFEST_SIZE,
    MAX_METADATA_SIZE,
    Manifest,
    RecordMetadata,
    max_segments,
)
from storage.errors import DecryptionError, ManifestError

KEY = b"k" * 32
RID = b"r" * 32


def make_manifest(size: int = 2500, segment_size: int = 1000, k: int = 2, n: int = 3) -> Manifest:
    """A version 1 manifest (exact size): the old format, still read
    (tests/storage/test_padding.py covers version 2)."""
    cipher = SegmentCipher(KEY, RID)
    segments = max(1, -(-size // segment_size))
    return Manifest(
        record_id=RID,
        size=size,
        segment_size=segment_size,
        k=k,
        n=n,
        block_hashes=bytes(range(256)) * (segments * n * 32 // 256)
        + bytes(segments * n * 32 % 256),
        sealed_metadata=cipher.encrypt_metadata(
            RecordMetadata("application/pdf", "scan.pdf", "P-77", {"ward": "B"}).encode()
        ),
        version=LEGACY_VERSION,
    )


def raw_fields(m: Manifest) -> dict[str, Any]:
    value = msgpack.unpackb(m.encode(), raw=False)
    assert isinstance(value, dict)
    return value


def test_round_trip_and_geometry() -> None:
    m = make_manifest()
    again = Manifest.decode(m.encode())
    assert again == m
    assert again.digest() == m.digest()
    assert m.segment_count == 3
    assert [m.plain_size(s) for s in range(3)] == [1000, 1000, 500]
    assert m.cipher_size(2) == 516
    assert m.block_size(2) == 258
    assert m.is_last(2) and not m.is_last(1)
    assert m.stored_bytes == 3 * (508 + 508 + 258)
    assert m.block_hash(1, 2) == m.block_hashes[(1 * 3 + 2) * 32 : (1 * 3 + 3) * 32]


def test_empty_record_has_one_segment() -> None:
    m = make_manifest(size=0)
    assert m.segment_count == 1
    assert m.plain_size(0) == 0


def test_metadata_is_encrypted_and_recoverable() -> None:
    m = make_manifest()
    encoded = m.encode()
    assert b"scan.pdf" not in encoded and b"P-77" not in encoded
    meta = m.metadata(SegmentCipher(KEY, RID))
    assert meta == RecordMetadata("application/pdf", "scan.pdf", "P-77", {"ward": "B"})
    with pytest.raises(DecryptionError):
        m.metadata(SegmentCipher(b"x" * 32, RID))


def test_encoding_is_canonical_and_non_canonical_is_rejected() -> None:
    m = make_manifest()
    assert m.encode() == make_manifest().encode()
    fields = raw_fields(m)
    unsorted = msgpack.packb(dict(reversed(list(fields.items()))), use_bin_type=True)
    with pytest.raises(ManifestError, match="canonical"):
        Manifest.decode(unsorted)
    # An integer in a wider encoding than needed is also non-canonical.
    wide = canonical.pack(fields).replace(b"\xa1k\x02", b"\xa1k\xcd\x00\x02")
    with pytest.raises(ManifestError, match="canonical"):
        Manifest.decode(wide)


def test_oversized_input_is_rejected_before_parsing() -> None:
    with pytest.raises(ManifestError, match="over the"):
        Manifest.decode(b"\x00" * (MAX_MANIFEST_SIZE + 1))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"v": 4}, "unsupported manifest version"),
        ({"v": 0}, "unsupported manifest version"),
        ({"v": "1"}, "unsupported manifest version"),
        ({"extra": 1}, "differ from the version 1 set"),
        ({"k": "2"}, "'k' must be int"),
        ({"k": True}, "'k' must be int"),
        ({"k": 4}, "k <= n"),
        ({"n": 256, "k": 2}, "n <= 255"),
        ({"seg": 10}, "segment_size"),
        ({"id": b"short"}, "record id"),
        ({"size": -1}, "record size"),
        ({"hashes": b"x" * 31}, "block hashes"),
        ({"meta": b""}, "sealed metadata"),
    ],
)
def test_invalid_fields(change: dict[str, Any], message: str) -> None:
    fields = raw_fields(make_manifest()) | change
    with pytest.raises(ManifestError, match=message):
        Manifest.decode(canonical.pack(fields))


def test_missing_field() -> None:
    fields = raw_fields(make_manifest())
    del fields["meta"]
    with pytest.raises(ManifestError, match="differ"):
        Manifest.decode(canonical.pack(fields))


def test_not_a_map_and_garbage() -> None:
    with pytest.raises(ManifestError, match="not a map"):
        Manifest.decode(canonical.pack([1, 2]))
    with pytest.raises(ManifestError, match="not valid msgpack"):
        Manifest.decode(b"\xc1")
    with pytest.raises(ManifestError, match="not valid msgpack"):
        Manifest.decode(canonical.pack({"v": 1}) + b"\x00")  # trailing bytes


def test_extension_types_are_refused() -> None:
    data = msgpack.packb({"v": msgpack.ExtType(1, b"x")}, use_bin_type=True)
    with pytest.raises(ManifestError, match="not valid msgpack"):
        Manifest.decode(data)


def test_too_many_segments_for_the_cap() -> None:
    limit = max_segments(8)
    with pytest.raises(ManifestError, match="use a larger segment size"):
        dataclasses.replace(make_manifest(k=4, n=8), size=(limit + 1) * 1000)


@given(st.binary(max_size=400))
def test_arbitrary_bytes_raise_only_manifest_error(data: bytes) -> None:
    with contextlib.suppress(ManifestError):
        Manifest.decode(data)


@given(st.data())
def test_mutated_manifests_raise_only_manifest_error(draw: st.DataObject) -> None:
    encoded = bytearray(make_manifest().encode())
    for _ in range(draw.draw(st.integers(1, 4))):
        pos = draw.draw(st.integers(0, len(encoded) - 1))
        encoded[pos] = draw.draw(st.integers(0, 255))
    cut = draw.draw(st.integers(0, len(encoded)))
    with contextlib.suppress(ManifestError):
        Manifest.decode(bytes(encoded[:cut]))


def test_metadata_limits_and_types() -> None:
    big = RecordMetadata(extra={"x": "y" * MAX_METADATA_SIZE})
    with pytest.raises(ManifestError, match="over"):
        big.encode()
    with pytest.raises(ManifestError, match="text to text"):
        RecordMetadata(extra={"x": 1}).encode()  # type: ignore[dict-item]
    with pytest.raises(ManifestError, match="wrong fields"):
        RecordMetadata.decode(canonical.pack({"type": "x"}))
    bad = {"type": 1, "name": "", "patient": "", "extra": {}}
    with pytest.raises(ManifestError, match="wrong types"):
        RecordMetadata.decode(canonical.pack(bad))
