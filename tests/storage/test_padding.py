"""Padded records (manifest version 2): what members see is the Padmé size only,
the reader gets exactly the record back, and version 1 records still read."""

from __future__ import annotations

import dataclasses
import io
import os

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from storage.codec import canonical
from storage.codec.crypt import MAC_SIZE, SegmentCipher
from storage.codec.decoder import RecordDecoder
from storage.codec.encoder import RecordEncoder
from storage.codec.manifest import (
    BLAKE3_VERSION,
    LEGACY_VERSION,
    MANIFEST_VERSION,
    MIN_SEALED_PLAIN,
    Manifest,
    RecordMetadata,
    open_contents,
    seal_contents,
    sealed_plain_size,
)
from storage.codec.padme import is_padded, padme
from storage.errors import DecryptionError, ManifestError

KEY = b"K" * 32
RID = b"I" * 32
Blocks = dict[tuple[int, int], bytes]


def encode(
    data: bytes,
    *,
    segment_size: int = 256,
    metadata: RecordMetadata | None = None,
    version: int = MANIFEST_VERSION,
) -> tuple[Manifest, Blocks]:
    encoder = RecordEncoder(
        record_id=RID,
        record_key=KEY,
        k=2,
        n=4,
        segment_size=segment_size,
        metadata=metadata or RecordMetadata("text/plain", "a.txt", "P-1"),
        version=version,
    )
    blocks: Blocks = {}
    for segment in encoder.encode(io.BytesIO(data)):
        for index, block in enumerate(segment.blocks):
            blocks[segment.index, index] = bytes(block)
    return encoder.manifest(), blocks


def decode(manifest: Manifest, blocks: Blocks) -> bytes:
    out = io.BytesIO()
    RecordDecoder(manifest, KEY).decode_to(out, lambda s, i: blocks.get((s, i)))
    return out.getvalue()


def public_view(manifest: Manifest) -> tuple[object, ...]:
    """Everything a holder sees of a manifest but the hashes (which look random)."""
    m = manifest
    return (
        m.version,
        m.size,
        m.segment_count,
        tuple(m.block_size(s) for s in range(m.segment_count)),
        m.stored_bytes,
        len(m.sealed_metadata),
        len(m.encode()),
    )


def test_the_writer_pads_and_the_reader_gets_exactly_the_record() -> None:
    data = os.urandom(1000)
    manifest, blocks = encode(data)
    assert manifest.version == BLAKE3_VERSION == MANIFEST_VERSION  # padded, like 2
    assert manifest.size == padme(1000) == 1024
    assert RecordDecoder(manifest, KEY).size == 1000
    assert manifest.contents(SegmentCipher(KEY, RID)).size == 1000
    assert decode(manifest, blocks) == data


@given(st.binary(max_size=3000), st.sampled_from([64, 100, 256]))
@settings(max_examples=60, deadline=None)
def test_any_record_round_trips_padded(data: bytes, segment_size: int) -> None:
    manifest, blocks = encode(data, segment_size=segment_size)
    assert manifest.size == padme(len(data))
    assert is_padded(len(manifest.sealed_metadata) - MAC_SIZE)
    assert decode(manifest, blocks) == data


def test_padding_spans_whole_segments_for_large_records() -> None:
    data = os.urandom(4097)  # pads to 4352: 255 bytes, three whole 64-byte segments more
    manifest, blocks = encode(data, segment_size=64)
    assert manifest.size == 4352
    assert manifest.segment_count == 68  # 65 would hold the record alone
    assert decode(manifest, blocks) == data
    decoder = RecordDecoder(manifest, KEY)
    source = lambda s, i: blocks.get((s, i))  # noqa: E731
    assert decoder.decode_segment(64, source) == data[4096:]
    assert decoder.decode_segment(65, source) == b""  # padding only


def test_padding_segments_share_one_buffer() -> None:
    encoder = RecordEncoder(record_id=RID, record_key=KEY, k=2, n=4, segment_size=64)
    for _ in range(64):
        encoder.claim(bytes(64), last=False)
    jobs = encoder.claim(b"x", last=True)  # 4097 bytes in all, padded to 4352 = 68 * 64
    assert [len(j.plaintext) for j in jobs] == [64, 64, 64, 64]
    assert jobs[0].plaintext == b"x" + bytes(63)
    assert jobs[1].plaintext is jobs[2].plaintext  # one buffer of zeros, not one per segment
    assert [j.last for j in jobs] == [False, False, False, True]
    assert [j.index for j in jobs] == [64, 65, 66, 67]


def test_records_of_one_padded_size_look_alike() -> None:
    """A curious holder cannot tell 1000 from 1024 bytes, nor a long name from a short one."""
    sizes = [1000, 1009, 1024]
    names = ["a.pdf", "discharge-summary-" + "x" * 60 + ".pdf"]
    views = {
        public_view(encode(os.urandom(size), metadata=RecordMetadata("x/y", name, "P"))[0])
        for size in sizes
        for name in names
    }
    assert len(views) == 1
    assert len({padme(s) for s in (1000, 1025)}) == 2  # across a Padmé step sizes differ


def test_old_format_records_stay_readable() -> None:
    data = os.urandom(1000)
    manifest, blocks = encode(data, version=LEGACY_VERSION)
    assert manifest.version == LEGACY_VERSION and manifest.size == 1000
    again = Manifest.decode(manifest.encode())
    assert again == manifest and msgpack.unpackb(manifest.encode())["v"] == 1
    assert decode(again, blocks) == data
    assert again.contents(SegmentCipher(KEY, RID)).size == 1000
    assert again.metadata(SegmentCipher(KEY, RID)).filename == "a.txt"


def test_a_hand_built_version_1_manifest_reads() -> None:
    """The exact bytes an old node wrote (built field by field, not by today's encoder)."""
    data = os.urandom(300)
    ours, blocks = encode(data, version=LEGACY_VERSION)
    cipher = SegmentCipher(KEY, RID)
    old = canonical.pack(
        {
            "v": 1,
            "id": RID,
            "size": 300,
            "seg": 256,
            "k": 2,
            "n": 4,
            "hashes": ours.block_hashes,
            "meta": cipher.encrypt_metadata(RecordMetadata("text/plain", "a.txt", "P-1").encode()),
        }
    )
    assert old == ours.encode()
    assert decode(Manifest.decode(old), blocks) == data


def test_open_contents_reads_both_sealed_forms() -> None:
    cipher = SegmentCipher(KEY, RID)
    meta = RecordMetadata("text/plain", "n.txt", "P")
    assert open_contents(cipher, cipher.encrypt_metadata(meta.encode())) == (meta, None)
    assert open_contents(cipher, seal_contents(cipher, meta.encode(), 77)) == (meta, 77)
    with pytest.raises(DecryptionError):
        open_contents(SegmentCipher(b"X" * 32, RID), seal_contents(cipher, meta.encode(), 77))


def test_a_version_2_size_must_be_padded() -> None:
    manifest, _ = encode(os.urandom(1000))
    fields = msgpack.unpackb(manifest.encode()) | {"size": 1000}
    with pytest.raises(ManifestError, match="Padmé length"):
        Manifest.decode(canonical.pack(fields))
    cipher = SegmentCipher(KEY, RID)
    for length in (20, MIN_SEALED_PLAIN + 1):  # under the floor; not a Padmé length
        unpadded = cipher.encrypt_metadata(b"\x02" + bytes(length - 1))
        with pytest.raises(ManifestError, match="sealed"):
            dataclasses.replace(manifest, sealed_metadata=unpadded)


def writer_forgery(manifest: Manifest, plain: bytes) -> Manifest:
    """What only the record key's holder can do: seal contents of its choosing."""
    padded = sealed_plain_size(len(plain))
    sealed = SegmentCipher(KEY, RID).encrypt_metadata(plain + bytes(padded - len(plain)))
    return dataclasses.replace(manifest, sealed_metadata=sealed)


def test_a_writer_cannot_make_readers_return_padding_or_garbage() -> None:
    """A record key holder sealing a size that disagrees with the manifest, or malformed
    contents, gets a clear error at every reader instead of a wrong record."""
    data = os.urandom(1000)
    manifest, blocks = encode(data)
    meta = RecordMetadata().encode()

    def header(size: int, length: int) -> bytes:
        return b"\x02" + size.to_bytes(8, "big") + length.to_bytes(4, "big")

    cases = {
        "does not pad": header(1025, len(meta)) + meta,  # claims more than is stored
        "does not pad ": header(900, len(meta)) + meta,  # pads to 960: a shorter record
        "malformed": header(1000, len(meta) + 500) + meta,  # metadata length past the end
    }
    for message, plain in cases.items():
        with pytest.raises(ManifestError, match=message.strip()):
            decode(writer_forgery(manifest, plain), blocks)
    nonzero = writer_forgery(manifest, header(1000, len(meta)) + meta + b"\x01")
    with pytest.raises(ManifestError, match="padding"):
        decode(nonzero, blocks)
    with pytest.raises(ManifestError):  # version 1 contents in a version 2 manifest
        decode(writer_forgery(manifest, meta), blocks)


def test_a_version_1_manifest_refuses_version_2_contents() -> None:
    manifest, _ = encode(os.urandom(100), version=LEGACY_VERSION)
    sealed = seal_contents(SegmentCipher(KEY, RID), RecordMetadata().encode(), 100)
    with pytest.raises(ManifestError, match="version 1 manifest"):
        dataclasses.replace(manifest, sealed_metadata=sealed).contents(SegmentCipher(KEY, RID))


def test_the_largest_metadata_still_fits_once_padded() -> None:
    big = RecordMetadata(extra={"x": "y" * (64 * 1024 - 60)})
    manifest, blocks = encode(b"abc", metadata=big)
    assert Manifest.decode(manifest.encode()).metadata(SegmentCipher(KEY, RID)) == big
    assert decode(manifest, blocks) == b"abc"


@pytest.mark.parametrize("size", [0, 1, 2, 255, 256, 257])
def test_tiny_and_boundary_records(size: int) -> None:
    data = os.urandom(size)
    manifest, blocks = encode(data)
    assert manifest.size == padme(size) and decode(manifest, blocks) == data
