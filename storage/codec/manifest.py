"""The manifest: what a record is made of, verifiable without its key.

The public part (record id, sizes, segment size, k, n and the hash of every
shard block) lets any holder check and repair shards; the descriptive part
(content type, file name, patient reference, free metadata) is encrypted with
the record key, so storage nodes never see it. Encoded as canonical msgpack;
the ledger records the manifest's hash.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from storage.codec import canonical, hashing
from storage.codec.crypt import MAC_SIZE, RECORD_ID_SIZE, SegmentCipher
from storage.codec.erasure import MAX_SHARDS
from storage.errors import ManifestError

MANIFEST_VERSION = 1
MAX_MANIFEST_SIZE = 16 * 1024 * 1024
MAX_METADATA_SIZE = 64 * 1024
MIN_SEGMENT_SIZE = 64
MAX_SEGMENT_SIZE = 64 * 1024 * 1024
HASH_SIZE = hashing.DIGEST_SIZE
_MAX_SIZE = 2**62

_MANIFEST_KEYS = {"v", "id", "size", "seg", "k", "n", "hashes", "meta"}
_METADATA_KEYS = {"type", "name", "patient", "extra"}


def check_codec_params(k: int, n: int, segment_size: int) -> None:
    """Reject erasure and segment parameters the format cannot carry."""
    for name, value in (("k", k), ("n", n), ("segment_size", segment_size)):
        if type(value) is not int:
            raise ManifestError(f"{name} must be an integer, got {value!r}")
    if not 1 <= k <= n <= MAX_SHARDS:
        raise ManifestError(f"need 1 <= k <= n <= {MAX_SHARDS}, got k={k}, n={n}")
    if not MIN_SEGMENT_SIZE <= segment_size <= MAX_SEGMENT_SIZE:
        raise ManifestError(
            f"segment_size must be {MIN_SEGMENT_SIZE}..{MAX_SEGMENT_SIZE} bytes, got {segment_size}"
        )


def max_segments(n: int) -> int:
    """Most segments a manifest of n shards per segment can list within the cap."""
    return (MAX_MANIFEST_SIZE - MAX_METADATA_SIZE - 1024) // (n * HASH_SIZE)


@dataclass(frozen=True)
class RecordMetadata:
    """Descriptive fields of a record; only ever stored encrypted."""

    content_type: str = "application/octet-stream"
    filename: str = ""
    patient_ref: str = ""
    extra: Mapping[str, str] = field(default_factory=dict)

    def encode(self) -> bytes:
        for name in ("content_type", "filename", "patient_ref"):
            if not isinstance(getattr(self, name), str):
                raise ManifestError(f"metadata {name} must be text")
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in self.extra.items()):
            raise ManifestError("metadata extra must map text to text")
        data = canonical.pack(
            {
                "type": self.content_type,
                "name": self.filename,
                "patient": self.patient_ref,
                "extra": dict(self.extra),
            }
        )
        if len(data) > MAX_METADATA_SIZE:
            raise ManifestError(f"metadata is {len(data)} bytes, over {MAX_METADATA_SIZE}")
        return data

    @classmethod
    def decode(cls, data: bytes) -> RecordMetadata:
        value = canonical.unpack(data, max_size=MAX_METADATA_SIZE, what="record metadata")
        if not isinstance(value, dict) or set(value) != _METADATA_KEYS:
            raise ManifestError("record metadata has the wrong fields")
        extra = value["extra"]
        texts = [value["type"], value["name"], value["patient"]]
        if not all(isinstance(t, str) for t in texts) or not isinstance(extra, dict):
            raise ManifestError("record metadata fields have the wrong types")
        if not all(isinstance(v, str) for v in extra.values()):
            raise ManifestError("record metadata extra values must be text")
        return cls(value["type"], value["name"], value["patient"], extra)


@dataclass(frozen=True)
class Manifest:
    """Public description of a stored record plus its sealed metadata."""

    record_id: bytes
    size: int
    segment_size: int
    k: int
    n: int
    block_hashes: bytes  # segment-major: hash of block i of segment s at (s*n + i)*32
    sealed_metadata: bytes

    def __post_init__(self) -> None:
        check_codec_params(self.k, self.n, self.segment_size)
        if not isinstance(self.record_id, bytes) or len(self.record_id) != RECORD_ID_SIZE:
            raise ManifestError(f"record id must be {RECORD_ID_SIZE} bytes")
        if type(self.size) is not int or not 0 <= self.size <= _MAX_SIZE:
            raise ManifestError(f"record size out of range: {self.size!r}")
        if self.segment_count > max_segments(self.n):
            raise ManifestError(
                f"{self.segment_count} segments exceed the manifest limit of"
                f" {max_segments(self.n)} for n={self.n}; use a larger segment size"
            )
        expected = self.segment_count * self.n * HASH_SIZE
        if not isinstance(self.block_hashes, bytes) or len(self.block_hashes) != expected:
            raise ManifestError(
                f"manifest lists {len(self.block_hashes)} bytes of block hashes,"
                f" expected {expected}"
            )
        meta = self.sealed_metadata
        sealed_limit = MAX_METADATA_SIZE + MAC_SIZE
        if not isinstance(meta, bytes) or not MAC_SIZE <= len(meta) <= sealed_limit:
            raise ManifestError("sealed metadata has an impossible length")

    @property
    def segment_count(self) -> int:
        return max(1, -(-self.size // self.segment_size))

    def is_last(self, segment: int) -> bool:
        return segment == self.segment_count - 1

    def plain_size(self, segment: int) -> int:
        """Plaintext bytes in `segment`."""
        self._check_segment(segment)
        if self.is_last(segment):
            return self.size - segment * self.segment_size
        return self.segment_size

    def cipher_size(self, segment: int) -> int:
        """Encrypted bytes of `segment` (plaintext plus the AEAD tag)."""
        return self.plain_size(segment) + MAC_SIZE

    def block_size(self, segment: int) -> int:
        """Length of each of the n shard blocks of `segment`."""
        return -(-self.cipher_size(segment) // self.k)

    def block_hash(self, segment: int, index: int) -> bytes:
        self._check_segment(segment)
        if not 0 <= index < self.n:
            raise IndexError(f"shard index {index} out of range for n={self.n}")
        start = (segment * self.n + index) * HASH_SIZE
        return self.block_hashes[start : start + HASH_SIZE]

    def segment_hashes(self, segment: int) -> tuple[bytes, ...]:
        return tuple(self.block_hash(segment, i) for i in range(self.n))

    def verify_block(self, segment: int, index: int, block: hashing.BytesLike) -> bool:
        """True when `block` is exactly block `index` of `segment` (no key needed)."""
        return hashing.shard_hash(block) == self.block_hash(segment, index)

    @property
    def stored_bytes(self) -> int:
        """Total bytes of all blocks of all segments."""
        return sum(self.block_size(s) * self.n for s in range(self.segment_count))

    def metadata(self, cipher: SegmentCipher) -> RecordMetadata:
        return RecordMetadata.decode(cipher.decrypt_metadata(self.sealed_metadata))

    def encode(self) -> bytes:
        return canonical.pack(
            {
                "v": MANIFEST_VERSION,
                "id": self.record_id,
                "size": self.size,
                "seg": self.segment_size,
                "k": self.k,
                "n": self.n,
                "hashes": self.block_hashes,
                "meta": self.sealed_metadata,
            }
        )

    def digest(self) -> bytes:
        return hashing.manifest_hash(self.encode())

    @classmethod
    def decode(cls, data: bytes) -> Manifest:
        """Parse and validate an encoded manifest; ManifestError on any defect."""
        value = canonical.unpack(data, max_size=MAX_MANIFEST_SIZE, what="manifest")
        if not isinstance(value, dict):
            raise ManifestError("manifest is not a map")
        if value.get("v") != MANIFEST_VERSION:
            raise ManifestError(f"unsupported manifest version {value.get('v')!r}")
        if set(value) != _MANIFEST_KEYS:
            raise ManifestError(f"manifest fields {sorted(value)} differ from the version 1 set")
        return cls(
            record_id=_typed(value, "id", bytes),
            size=_typed(value, "size", int),
            segment_size=_typed(value, "seg", int),
            k=_typed(value, "k", int),
            n=_typed(value, "n", int),
            block_hashes=_typed(value, "hashes", bytes),
            sealed_metadata=_typed(value, "meta", bytes),
        )

    def _check_segment(self, segment: int) -> None:
        if not 0 <= segment < self.segment_count:
            raise IndexError(f"segment {segment} out of range (record has {self.segment_count})")


def _typed(value: dict[str, Any], key: str, kind: type) -> Any:
    item = value[key]
    if type(item) is not kind:
        raise ManifestError(f"manifest field {key!r} must be {kind.__name__}")
    return item
