"""Streaming record encoder: any binary stream in, shard blocks and a manifest out.

Memory stays at a few segments whatever the record size: one segment is read
ahead (to know which segment is the last) while the current one is encoded.

Records are padded (manifest versions 2 and 3): once the last segment of the record
is known, zeros follow up to the Padmé length of the record, filling the last
segment and, for large records, whole segments more (at most ~12%), all of
them encrypted like the data; the true size is sealed in the manifest.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from storage.codec.crypt import SegmentCipher
from storage.codec.erasure import ReedSolomon
from storage.codec.manifest import (
    LEGACY_VERSION,
    MANIFEST_VERSION,
    VERSIONS,
    Manifest,
    RecordMetadata,
    check_codec_params,
    max_segments,
    seal_contents,
    shard_hasher,
)
from storage.codec.padme import padme
from storage.codec.segment import EncodedSegment, SegmentCodec
from storage.errors import ManifestError

DEFAULT_K = 4
DEFAULT_N = 8
DEFAULT_SEGMENT_SIZE = 1024 * 1024


def read_full(stream: BinaryIO, size: int) -> bytes:
    """Read `size` bytes, or fewer only at end of stream (pipes return short reads)."""
    first = stream.read(size)
    if not first or len(first) == size:
        return first or b""
    parts = [first]
    have = len(first)
    while have < size:
        more = stream.read(size - have)
        if not more:
            break
        parts.append(more)
        have += len(more)
    return b"".join(parts)


@dataclass(frozen=True)
class SegmentJob:
    index: int
    last: bool
    plaintext: bytes


class RecordEncoder:
    """Encodes one record; iterate `encode(stream)`, then read `manifest()`.

    Older `version`s (1: unpadded, 2: BLAKE2b hashes) are for tests and measurements.
    """

    def __init__(
        self,
        *,
        record_id: bytes,
        record_key: bytes,
        k: int = DEFAULT_K,
        n: int = DEFAULT_N,
        segment_size: int = DEFAULT_SEGMENT_SIZE,
        metadata: RecordMetadata | None = None,
        version: int = MANIFEST_VERSION,
    ) -> None:
        check_codec_params(k, n, segment_size)
        if version not in VERSIONS:
            raise ManifestError(f"unsupported manifest version {version!r}")
        self.record_id = record_id
        self.k = k
        self.n = n
        self.segment_size = segment_size
        self.version = version
        self._cipher = SegmentCipher(record_key, record_id)
        self._codec = SegmentCodec(ReedSolomon(k, n), self._cipher, shard_hasher(version))
        self._metadata = (metadata or RecordMetadata()).encode()
        self._hashes = bytearray()
        self._size = 0
        self._record_size = 0  # the record's own bytes claimed so far (no padding)
        self._manifest: Manifest | None = None
        self._started = False
        self._segments = 0  # accepted
        self._claimed = 0
        self._claimed_last = False

    def encode(self, stream: BinaryIO) -> Iterator[EncodedSegment]:
        """Yield every segment's blocks in order; the manifest is ready after the last."""
        if self._started:
            raise RuntimeError("a RecordEncoder encodes exactly one record")
        current = read_full(stream, self.segment_size)
        while True:
            full = len(current) == self.segment_size
            upcoming = read_full(stream, self.segment_size) if full else b""
            last = not upcoming
            yield from self.add(current, last)
            if last:
                return
            current = upcoming

    def add(self, plaintext: bytes, last: bool) -> tuple[EncodedSegment, ...]:
        """Encode the record's next segment (pushed by a caller that reads the record itself).

        Every segment but the last must be exactly segment_size bytes; the
        last may be followed by padding segments. After the last, the
        manifest is ready.
        """
        return tuple(self.accept(self.encode_job(job)) for job in self.claim(plaintext, last))

    # `add` in three steps, for encoding several segments at once: claim each
    # segment in order, run `encode_job` on any thread, accept in order.

    def claim(self, plaintext: bytes, last: bool) -> tuple[SegmentJob, ...]:
        """Check the record's next segment and give it its index (call in order).

        One job, or for the record's last segment in version 2, that segment
        filled with padding and the padding segments after it (they share one
        buffer of zeros, so even many cost one segment of memory).
        """
        if self._claimed_last:
            raise RuntimeError("the record's last segment was already added")
        if len(plaintext) > self.segment_size or (not last and len(plaintext) != self.segment_size):
            raise ValueError(
                f"segment {self._claimed} is {len(plaintext)} bytes; segments before the"
                f" last must be exactly {self.segment_size}"
            )
        pieces = [plaintext]
        if last and self.version != LEGACY_VERSION:
            pieces = self._padded(plaintext)
        limit = max_segments(self.n)
        if self._claimed + len(pieces) > limit:
            raise ManifestError(
                f"record exceeds {limit} segments of {self.segment_size} bytes"
                f"{' once padded' if len(pieces) > 1 else ''}; use a larger segment size"
            )
        self._started = True
        self._claimed_last = last
        self._record_size += len(plaintext)
        first = self._claimed
        self._claimed += len(pieces)
        return tuple(
            SegmentJob(first + i, last and i == len(pieces) - 1, piece)
            for i, piece in enumerate(pieces)
        )

    def _padded(self, plaintext: bytes) -> list[bytes]:
        """The record's last segment and the padding after it, as segments."""
        size = self.segment_size
        pad = padme(self._record_size + len(plaintext)) - self._record_size - len(plaintext)
        room = min(pad, size - len(plaintext))
        pieces = [plaintext + bytes(room) if room else plaintext]
        pad -= room
        zeros = bytes(min(pad, size))
        while pad >= size:
            pieces.append(zeros)
            pad -= size
        if pad:
            pieces.append(zeros[:pad])
        return pieces

    def encode_job(self, job: SegmentJob) -> EncodedSegment:
        """Encrypt, erasure-code and hash one claimed segment (thread-safe)."""
        return self._codec.encode(job.index, job.last, job.plaintext)

    def accept(self, segment: EncodedSegment) -> EncodedSegment:
        """Take an encoded segment into the manifest (call in index order)."""
        if segment.index != self._segments:
            raise RuntimeError(f"segment {segment.index} accepted before {self._segments}")
        for digest in segment.hashes:
            self._hashes += digest
        self._size += segment.plain_size
        self._segments += 1
        if segment.last:
            if self.version == LEGACY_VERSION:
                sealed = self._cipher.encrypt_metadata(self._metadata)
            else:
                sealed = seal_contents(self._cipher, self._metadata, self._record_size)
            self._manifest = Manifest(
                record_id=self.record_id,
                size=self._size,
                segment_size=self.segment_size,
                k=self.k,
                n=self.n,
                block_hashes=bytes(self._hashes),
                sealed_metadata=sealed,
                version=self.version,
            )
        return segment

    @property
    def record_size(self) -> int:
        """The record's own bytes so far (the manifest's `size` is padded)."""
        return self._record_size

    @property
    def done(self) -> bool:
        """The last segment was added: the manifest is ready."""
        return self._manifest is not None

    def manifest(self) -> Manifest:
        if self._manifest is None:
            raise RuntimeError("the manifest exists only after every segment was encoded")
        return self._manifest
