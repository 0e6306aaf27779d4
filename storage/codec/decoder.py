"""Streaming record decoder: manifest + any k good blocks per segment -> plaintext.

A padded (version 2 or 3) record is decoded whole, padding segments too (they are
authenticated like the rest), and the padding is dropped: the output is
exactly the record's bytes, whose count the sealed part gives.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import BinaryIO

from storage.codec.crypt import SegmentCipher
from storage.codec.erasure import BytesLike, ReedSolomon
from storage.codec.manifest import LEGACY_VERSION, Manifest, RecordContents, RecordMetadata
from storage.codec.segment import SegmentCodec

# (segment, shard index) -> block, None if unavailable; may raise CorruptShard.
BlockSource = Callable[[int, int], BytesLike | None]


class RecordDecoder:
    """Decodes the record a manifest describes, with its record key."""

    def __init__(self, manifest: Manifest, record_key: bytes) -> None:
        self.manifest = manifest
        self._cipher = SegmentCipher(record_key, manifest.record_id)
        self._codec = SegmentCodec(
            ReedSolomon(manifest.k, manifest.n), self._cipher, manifest.shard_hasher
        )
        self._contents: RecordContents | None = None

    def contents(self) -> RecordContents:
        """The decrypted metadata and true size (DecryptionError with a wrong key)."""
        if self._contents is None:
            self._contents = self.manifest.contents(self._cipher)
        return self._contents

    def metadata(self) -> RecordMetadata:
        """The decrypted descriptive metadata (DecryptionError with a wrong key)."""
        return self.contents().metadata

    @property
    def size(self) -> int:
        """The record's own size in bytes (opens the sealed part of a padded record)."""
        if self.manifest.version == LEGACY_VERSION:
            return self.manifest.size
        return self.contents().size

    def decode_segment(
        self, segment: int, source: BlockSource, order: Sequence[int] | None = None
    ) -> bytes:
        """The record's bytes in `segment` (its padding dropped)."""
        m = self.manifest
        plaintext = self._codec.decode(
            segment,
            last=m.is_last(segment),
            plain_size=m.plain_size(segment),
            hashes=m.segment_hashes(segment),
            get_block=lambda index: source(segment, index),
            order=order,
        )
        return m.record_part(segment, plaintext, self.size)

    def decode_to(self, out: BinaryIO, source: BlockSource) -> int:
        """Write the whole record to `out` segment by segment; returns bytes written.

        On an error, the segments before the failing one have been written:
        callers that must not expose partial output write to a temporary file.
        """
        written = 0
        for segment in range(self.manifest.segment_count):
            written += out.write(self.decode_segment(segment, source))
        return written
