from __future__ import annotations

import dataclasses
import io
import os
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from storage.codec.decoder import BlockSource, RecordDecoder
from storage.codec.encoder import RecordEncoder
from storage.codec.erasure import BytesLike
from storage.codec.manifest import LEGACY_VERSION, MANIFEST_VERSION, Manifest, RecordMetadata
from storage.codec.padme import padme
from storage.codec.segment import EncodedSegment
from storage.errors import DecryptionError, ManifestError, NotEnoughShards
from storage.store.memory import MemoryShardStore
from storage.store.shard_store import store_source

KEY = b"K" * 32
RID = b"I" * 32
SEG = 256

Blocks = dict[tuple[int, int], bytes]


def encode(
    data: bytes,
    k: int = 3,
    n: int = 5,
    segment_size: int = SEG,
    key: bytes = KEY,
    *,
    version: int = MANIFEST_VERSION,
) -> tuple[Manifest, Blocks]:
    encoder = RecordEncoder(
        record_id=RID,
        record_key=key,
        k=k,
        n=n,
        segment_size=segment_size,
        metadata=RecordMetadata("text/plain", "a.txt", "P-1"),
        version=version,
    )
    blocks: Blocks = {}
    for segment in encoder.encode(io.BytesIO(data)):
        for index, block in enumerate(segment.blocks):
            blocks[segment.index, index] = bytes(block)
    return encoder.manifest(), blocks


def source(blocks: Blocks) -> BlockSource:
    return lambda segment, index: blocks.get((segment, index))


def decode(manifest: Manifest, blocks: Blocks, key: bytes = KEY) -> bytes:
    out = io.BytesIO()
    RecordDecoder(manifest, key).decode_to(out, source(blocks))
    return out.getvalue()


@pytest.mark.parametrize("size", [0, 1, SEG - 1, SEG, SEG + 1, 3 * SEG, 5 * SEG + 17])
def test_round_trip_at_segment_boundaries(size: int) -> None:
    data = os.urandom(size)
    manifest, blocks = encode(data)
    assert manifest.size == padme(size)  # the stored stream is padded
    assert manifest.segment_count == max(1, -(-padme(size) // SEG))
    assert RecordDecoder(manifest, KEY).size == size
    assert decode(manifest, blocks) == data


@given(
    st.binary(max_size=2000),
    st.integers(1, 6),
    st.integers(0, 4),
    st.sampled_from([64, 100, 333]),
    st.randoms(use_true_random=False),
)
def test_any_k_blocks_per_segment_decode(
    data: bytes, k: int, extra: int, segment_size: int, rnd: random.Random
) -> None:
    n = k + extra
    manifest, blocks = encode(data, k, n, segment_size)
    kept = {
        (s, i): blocks[s, i] for s in range(manifest.segment_count) for i in rnd.sample(range(n), k)
    }
    assert decode(manifest, kept) == data


class TrickleStream(io.RawIOBase):
    """Returns at most 7 bytes per read, like a slow pipe."""

    def __init__(self, data: bytes) -> None:
        self._data = memoryview(data)
        self.position = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray) -> int:  # type: ignore[override]
        chunk = self._data[self.position : self.position + min(7, len(buffer))]
        buffer[: len(chunk)] = chunk
        self.position += len(chunk)
        return len(chunk)


def test_short_reads_do_not_change_the_segmentation() -> None:
    data = os.urandom(3 * SEG + 50)
    encoder = RecordEncoder(record_id=RID, record_key=KEY, k=2, n=3, segment_size=SEG)
    stream = TrickleStream(data)
    segments = list(encoder.encode(stream))  # type: ignore[arg-type]
    assert [s.plain_size for s in segments] == [SEG, SEG, SEG, padme(3 * SEG + 50) - 3 * SEG]
    # Encoding is deterministic given key and id: the same blocks as a one-shot read.
    assert encoder.manifest().block_hashes == encode(data, 2, 3)[0].block_hashes


def test_memory_is_bounded_by_read_ahead_of_one_segment() -> None:
    data = os.urandom(40 * SEG)
    stream = TrickleStream(data)
    encoder = RecordEncoder(record_id=RID, record_key=KEY, k=2, n=3, segment_size=SEG)
    for segment in encoder.encode(stream):  # type: ignore[arg-type]
        # Never more than the current and the next segment read from the stream.
        assert stream.position <= (segment.index + 2) * SEG
    assert stream.position == len(data)


def test_corrupt_and_missing_blocks_are_skipped() -> None:
    data = os.urandom(4 * SEG)
    manifest, blocks = encode(data, k=3, n=6)
    for s in range(manifest.segment_count):
        blocks[s, 0] = b"\x00" * len(blocks[s, 0])  # corrupt, right length
        blocks[s, 1] = blocks[s, 1][:-1]  # truncated
        del blocks[s, 2]  # missing
    assert decode(manifest, blocks) == data


def test_too_few_good_blocks_names_the_shards() -> None:
    data = os.urandom(2 * SEG)
    manifest, blocks = encode(data, k=3, n=5)
    blocks[1, 0] = b"\xff" * len(blocks[1, 0])
    blocks[1, 4] = b"\xff" * len(blocks[1, 4])
    del blocks[1, 2]
    with pytest.raises(NotEnoughShards) as caught:
        decode(manifest, blocks)
    error = caught.value
    assert error.segment == 1
    assert error.corrupt == (0, 4)
    assert error.missing == (2,)
    assert error.good == (1, 3)
    assert "segment 1" in str(error) and "[0, 4]" in str(error) and "[2]" in str(error)


def test_wrong_key_is_refused() -> None:
    data = os.urandom(SEG)
    manifest, blocks = encode(data)
    with pytest.raises(DecryptionError):
        decode(manifest, blocks, key=b"X" * 32)
    with pytest.raises(DecryptionError):
        RecordDecoder(manifest, b"X" * 32).metadata()
    assert RecordDecoder(manifest, KEY).metadata().filename == "a.txt"


def swap_segments(manifest: Manifest, blocks: Blocks, a: int, b: int) -> tuple[Manifest, Blocks]:
    """Exchange two segments' blocks *and* their hashes: a consistent forgery."""
    n, size = manifest.n, 32
    hashes = bytearray(manifest.block_hashes)
    ha = hashes[a * n * size : (a + 1) * n * size]
    hb = hashes[b * n * size : (b + 1) * n * size]
    hashes[a * n * size : (a + 1) * n * size] = hb
    hashes[b * n * size : (b + 1) * n * size] = ha
    swapped = dict(blocks)
    for i in range(n):
        swapped[a, i], swapped[b, i] = blocks[b, i], blocks[a, i]
    return dataclasses.replace(manifest, block_hashes=bytes(hashes)), swapped


def test_reordered_segments_fail_authentication_even_with_matching_hashes() -> None:
    data = os.urandom(3 * SEG)
    manifest, blocks = encode(data)
    forged, swapped = swap_segments(manifest, blocks, 0, 1)
    with pytest.raises(DecryptionError, match="segment 0"):
        decode(forged, swapped)


def test_blocks_swapped_without_hashes_count_as_corrupt() -> None:
    data = os.urandom(3 * SEG)
    manifest, blocks = encode(data, k=3, n=5)
    _, swapped = swap_segments(manifest, blocks, 0, 1)
    with pytest.raises(NotEnoughShards) as caught:
        decode(manifest, swapped)
    assert caught.value.corrupt == (0, 1, 2, 3, 4)


CUT_FAILS: dict[int, tuple[type[Exception], str]] = {
    LEGACY_VERSION: (DecryptionError, "segment 1"),
    MANIFEST_VERSION: (ManifestError, "does not pad"),
}


@pytest.mark.parametrize("version", [LEGACY_VERSION, MANIFEST_VERSION])
def test_truncated_record_is_detected(version: int) -> None:
    data = os.urandom(3 * SEG)  # 768 and 512 are Padmé lengths: the manifest stays valid
    manifest, blocks = encode(data, version=version)
    shorter = dataclasses.replace(
        manifest, size=2 * SEG, block_hashes=manifest.block_hashes[: 2 * manifest.n * 32]
    )
    # Version 2 already fails on the sealed size; version 1 on the new "last" segment.
    kind, message = CUT_FAILS[version]
    with pytest.raises(kind, match=message):
        decode(shorter, blocks)


@pytest.mark.parametrize("version", [LEGACY_VERSION, MANIFEST_VERSION])
def test_extended_record_is_detected(version: int) -> None:
    data = os.urandom(2 * SEG)
    manifest, blocks = encode(data, version=version)
    # Append a third segment made of the second one's blocks.
    longer = dataclasses.replace(
        manifest,
        size=3 * SEG,
        block_hashes=manifest.block_hashes + manifest.block_hashes[manifest.n * 32 :],
    )
    for i in range(manifest.n):
        blocks[2, i] = blocks[1, i]
    kind, message = CUT_FAILS[version]
    with pytest.raises(kind, match=message):
        decode(longer, blocks)


def test_record_of_another_id_is_refused() -> None:
    data = os.urandom(SEG)
    manifest, blocks = encode(data)
    with pytest.raises(DecryptionError):
        decode(dataclasses.replace(manifest, record_id=b"J" * 32), blocks)


def test_encoder_is_single_use_and_manifest_needs_completion() -> None:
    encoder = RecordEncoder(record_id=RID, record_key=KEY, k=2, n=3, segment_size=SEG)
    with pytest.raises(RuntimeError, match="only after"):
        encoder.manifest()
    list(encoder.encode(io.BytesIO(b"abc")))
    with pytest.raises(RuntimeError, match="exactly one"):
        list(encoder.encode(io.BytesIO(b"abc")))


def test_encoder_rejects_bad_parameters() -> None:
    with pytest.raises(ManifestError, match="k <= n"):
        RecordEncoder(record_id=RID, record_key=KEY, k=5, n=4)
    with pytest.raises(ManifestError, match="segment_size"):
        RecordEncoder(record_id=RID, record_key=KEY, segment_size=1)


def test_decode_through_a_shard_store() -> None:
    data = os.urandom(3 * SEG + 5)
    encoder = RecordEncoder(record_id=RID, record_key=KEY, k=2, n=4, segment_size=SEG)
    store = MemoryShardStore()
    segments: list[EncodedSegment] = list(encoder.encode(io.BytesIO(data)))
    for segment in segments:
        for digest, block in zip(segment.hashes, segment.blocks, strict=True):
            store.put(digest, block)
    manifest = encoder.manifest()
    store.damage(manifest.block_hash(0, 0), b"rotten")
    store.delete(manifest.block_hash(1, 1))
    out = io.BytesIO()
    RecordDecoder(manifest, KEY).decode_to(out, store_source(store, manifest))
    assert out.getvalue() == data
    assert store.quarantined() == [manifest.block_hash(0, 0)]


def test_decode_order_prefers_given_indices() -> None:
    data = os.urandom(SEG)
    manifest, blocks = encode(data, k=2, n=4)
    asked: list[int] = []

    def get(segment: int, index: int) -> BytesLike | None:
        asked.append(index)
        return blocks[segment, index]

    decoder = RecordDecoder(manifest, KEY)
    assert decoder.decode_segment(0, get, order=[3, 2]) == data
    assert asked == [3, 2]
    asked.clear()
    decoder.decode_segment(0, get)
    assert asked == [0, 1]  # data shards first: no arithmetic needed
    with pytest.raises(ValueError, match=r"outside 0\.\.3"):
        decoder.decode_segment(0, get, order=[4])


def test_push_api_matches_the_stream_api() -> None:
    data = os.urandom(3 * SEG + 10)
    pushed = RecordEncoder(record_id=RID, record_key=KEY, k=2, n=3, segment_size=SEG)
    pieces = [data[i : i + SEG] for i in range(0, len(data), SEG)]
    for number, piece in enumerate(pieces):
        pushed.add(piece, last=number == len(pieces) - 1)
    assert pushed.manifest().block_hashes == encode(data, 2, 3)[0].block_hashes
    with pytest.raises(RuntimeError, match="already added"):
        pushed.add(b"more", last=True)
    short = RecordEncoder(record_id=RID, record_key=KEY, k=2, n=3, segment_size=SEG)
    with pytest.raises(ValueError, match="exactly 256"):
        short.add(b"too short", last=False)


def test_segments_encoded_out_of_order_give_the_same_record() -> None:
    """claim in order, encode_job in any order (as on several threads), accept in order."""
    data = os.urandom(5 * 1000 + 123)
    key, rid = os.urandom(32), os.urandom(32)

    def encoder() -> RecordEncoder:
        return RecordEncoder(record_id=rid, record_key=key, k=2, n=4, segment_size=1000)

    pieces = [data[i : i + 1000] for i in range(0, len(data), 1000)]
    serial = encoder()
    expected = [s for i, p in enumerate(pieces) for s in serial.add(p, i == len(pieces) - 1)]
    parallel = encoder()
    jobs = [j for i, p in enumerate(pieces) for j in parallel.claim(p, i == len(pieces) - 1)]
    encoded = [parallel.encode_job(job) for job in reversed(jobs)][::-1]
    with pytest.raises(RuntimeError, match="accepted before"):
        parallel.accept(encoded[1])
    for segment in encoded:
        parallel.accept(segment)
    assert [s.hashes for s in encoded] == [s.hashes for s in expected]
    assert parallel.done and parallel.manifest() == serial.manifest()
    with pytest.raises(RuntimeError, match="already added"):
        parallel.claim(b"", True)
