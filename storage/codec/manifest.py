"""The manifest: what a record is made of, verifiable without its key.

The public part (record id, sizes, segment size, k, n and the hash of every
shard block) lets any holder check and repair shards; the descriptive part
(content type, file name, patient reference, free metadata) is encrypted with
the record key, so storage nodes never see it. Encoded as canonical msgpack;
the ledger records the manifest's hash.

Version 2 (written since issue 14) hides the exact size: the encoder pads the
plaintext with zeros to its Padmé length, so `size` and every segment and
block size are those of the padded stream, and the true size travels only in
the sealed part, which is itself padded to a Padmé length of at least 256
bytes (so the length of a file name shows nothing, or for very long
metadata no more than Padmé lets through). Version 1 manifests
(exact `size`, sealed metadata alone) stay readable.

Version 3 (issue 17) is version 2 with BLAKE3 block and manifest hashes
instead of BLAKE2b; the version alone says which algorithm checks a block or
the manifest itself (`shard_hasher`, `digest`), so one version's hashes never
stand in for the other's.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from storage.codec import canonical, hashing
from storage.codec.crypt import MAC_SIZE, RECORD_ID_SIZE, SegmentCipher
from storage.codec.erasure import MAX_SHARDS
from storage.codec.padme import is_padded, padme
from storage.errors import ManifestError

LEGACY_VERSION = 1  # exact sizes; still read
PADDED_VERSION = 2  # Padmé sizes, the true size sealed; still read
BLAKE3_VERSION = 3  # version 2 with BLAKE3 block and manifest hashes
MANIFEST_VERSION = BLAKE3_VERSION  # what the encoder writes
VERSIONS = (LEGACY_VERSION, PADDED_VERSION, BLAKE3_VERSION)
MAX_MANIFEST_SIZE = 16 * 1024 * 1024
MAX_METADATA_SIZE = 64 * 1024
MIN_SEGMENT_SIZE = 64
MAX_SEGMENT_SIZE = 64 * 1024 * 1024
HASH_SIZE = hashing.DIGEST_SIZE
_MAX_SIZE = 2**62

_MANIFEST_KEYS = {"v", "id", "size", "seg", "k", "n", "hashes", "meta"}
_METADATA_KEYS = {"type", "name", "patient", "extra"}
# Version 2's sealed plaintext: marker, true size, metadata length, metadata,
# zeros up to a Padmé length. The marker cannot start a version 1 plaintext
# (a canonical msgpack map of four fields starts with 0x84).
_SEALED_MARKER = 2
_SEALED_HEADER = struct.Struct(">BQI")
# At least this many plaintext bytes are sealed, so the usual metadata (a type,
# a file name of up to ~100 characters, a patient reference) all looks alike.
MIN_SEALED_PLAIN = 256
MAX_SEALED_SIZE = padme(_SEALED_HEADER.size + MAX_METADATA_SIZE) + MAC_SIZE


_SHARD_HASHERS: dict[int, hashing.Hasher] = {
    LEGACY_VERSION: hashing.shard_hash,
    PADDED_VERSION: hashing.shard_hash,
    BLAKE3_VERSION: hashing.shard_hash_v3,
}
_MANIFEST_HASHERS: dict[int, hashing.Hasher] = {
    LEGACY_VERSION: hashing.manifest_hash,
    PADDED_VERSION: hashing.manifest_hash,
    BLAKE3_VERSION: hashing.manifest_hash_v3,
}


def shard_hasher(version: int) -> hashing.Hasher:
    """The block hash manifests of `version` list (ManifestError for an unknown one)."""
    try:
        return _SHARD_HASHERS[version]
    except (KeyError, TypeError):
        raise ManifestError(f"unsupported manifest version {version!r}") from None


def sealed_plain_size(length: int) -> int:
    """How long version 2's sealed plaintext is for `length` bytes of header and metadata."""
    return padme(max(length, MIN_SEALED_PLAIN))


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
class RecordContents:
    """What only the record key opens: the descriptive metadata and the true size."""

    metadata: RecordMetadata
    size: int


def seal_contents(cipher: SegmentCipher, metadata: bytes, size: int) -> bytes:
    """Version 2's sealed part: the true size and encoded metadata, padded, encrypted."""
    if len(metadata) > MAX_METADATA_SIZE:
        raise ManifestError(f"metadata is {len(metadata)} bytes, over {MAX_METADATA_SIZE}")
    if type(size) is not int or not 0 <= size <= _MAX_SIZE:
        raise ManifestError(f"record size out of range: {size!r}")
    plain = _SEALED_HEADER.pack(_SEALED_MARKER, size, len(metadata)) + metadata
    return cipher.encrypt_metadata(plain + bytes(sealed_plain_size(len(plain)) - len(plain)))


def open_contents(cipher: SegmentCipher, sealed: bytes) -> tuple[RecordMetadata, int | None]:
    """The metadata and, from a version 2 sealed part, the true size (None from version 1).

    For callers that hold only the sealed bytes (a listing); DecryptionError
    with a wrong key, ManifestError when the plaintext is malformed.
    """
    plain = cipher.decrypt_metadata(sealed)
    if not plain or plain[0] != _SEALED_MARKER:
        return RecordMetadata.decode(plain), None
    if len(plain) < _SEALED_HEADER.size:
        raise ManifestError("sealed record contents are too short")
    _, size, length = _SEALED_HEADER.unpack_from(plain)
    end = _SEALED_HEADER.size + length
    if end > len(plain) or any(plain[end:]):
        raise ManifestError("sealed record contents are malformed (length or padding)")
    return RecordMetadata.decode(plain[_SEALED_HEADER.size : end]), size


@dataclass(frozen=True)
class Manifest:
    """Public description of a stored record plus its sealed metadata.

    `size` is the length of the stored plaintext stream: the record's own in
    version 1, its Padmé length from version 2 on (`contents` opens the true one).
    """

    record_id: bytes
    size: int
    segment_size: int
    k: int
    n: int
    block_hashes: bytes  # segment-major: hash of block i of segment s at (s*n + i)*32
    sealed_metadata: bytes  # version 2: true size and metadata, padded (seal_contents)
    version: int = MANIFEST_VERSION

    def __post_init__(self) -> None:
        if type(self.version) is not int or self.version not in VERSIONS:
            raise ManifestError(f"unsupported manifest version {self.version!r}")
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
        if self.version == LEGACY_VERSION:
            lowest, highest = MAC_SIZE, MAX_METADATA_SIZE + MAC_SIZE
        else:
            lowest, highest = MIN_SEALED_PLAIN + MAC_SIZE, MAX_SEALED_SIZE
        if not isinstance(meta, bytes) or not lowest <= len(meta) <= highest:
            raise ManifestError("sealed metadata has an impossible length")
        if self.version != LEGACY_VERSION:  # anyone can check the writer padded
            if not is_padded(self.size):
                raise ManifestError(
                    f"a version {self.version} record size must be a Padmé length, not {self.size}"
                )
            if not is_padded(len(meta) - MAC_SIZE):
                raise ManifestError(
                    f"a version {self.version} sealed part must have a Padmé length"
                )

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

    @property
    def shard_hasher(self) -> hashing.Hasher:
        """The block hash this manifest's version lists (BLAKE2b in 1 and 2, BLAKE3 in 3)."""
        return _SHARD_HASHERS[self.version]

    def verify_block(self, segment: int, index: int, block: hashing.BytesLike) -> bool:
        """True when `block` is exactly block `index` of `segment` (no key needed).

        Only this version's algorithm counts: a reader knows which one it is. The
        length counts too: a writer can list the valid hash of a block of another
        length, and blocks of unequal length would fail the erasure code (ValueError)
        where a corrupt block only means the next index is tried.
        """
        if memoryview(block).nbytes != self.block_size(segment):
            return False
        return self.shard_hasher(block) == self.block_hash(segment, index)

    @property
    def stored_bytes(self) -> int:
        """Total bytes of all blocks of all segments."""
        return sum(self.block_size(s) * self.n for s in range(self.segment_count))

    def contents(self, cipher: SegmentCipher) -> RecordContents:
        """The metadata and true size (DecryptionError with a wrong key)."""
        metadata, size = open_contents(cipher, self.sealed_metadata)
        if self.version == LEGACY_VERSION:
            if size is not None:
                raise ManifestError("a version 1 manifest carries version 2 sealed contents")
            return RecordContents(metadata, self.size)
        if size is None or padme(size) != self.size:
            raise ManifestError(
                f"the sealed record size {size} does not pad to the manifest's {self.size}"
            )
        return RecordContents(metadata, size)

    def metadata(self, cipher: SegmentCipher) -> RecordMetadata:
        return self.contents(cipher).metadata

    def record_part(self, segment: int, plaintext: bytes, record_size: int) -> bytes:
        """The bytes of decrypted `segment` that belong to the record (padding dropped)."""
        self._check_segment(segment)
        keep = max(0, min(len(plaintext), record_size - segment * self.segment_size))
        return plaintext if keep == len(plaintext) else plaintext[:keep]

    def encode(self) -> bytes:
        return canonical.pack(
            {
                "v": self.version,
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
        """The hash the ledger records, by this manifest's own version's algorithm.

        Decoding is canonical (re-encoding gives the very bytes received), so
        this is the hash of what was fetched; a manifest of one version cannot
        stand in for the id of another (that needs a preimage).
        """
        return _MANIFEST_HASHERS[self.version](self.encode())

    @classmethod
    def decode_checked(cls, data: bytes, expected_hash: bytes) -> Manifest:
        """Decode a fetched manifest and check it against the ledger's hash of it."""
        manifest = cls.decode(data)
        if _MANIFEST_HASHERS[manifest.version](data) != expected_hash:
            raise ManifestError(
                f"the version {manifest.version} manifest does not hash to the expected"
                f" {expected_hash.hex()[:16]}"
            )
        return manifest

    @classmethod
    def decode(cls, data: bytes) -> Manifest:
        """Parse and validate an encoded manifest; ManifestError on any defect."""
        value = canonical.unpack(data, max_size=MAX_MANIFEST_SIZE, what="manifest")
        if not isinstance(value, dict):
            raise ManifestError("manifest is not a map")
        version = value.get("v")
        if type(version) is not int or version not in VERSIONS:
            raise ManifestError(f"unsupported manifest version {version!r}")
        if set(value) != _MANIFEST_KEYS:
            raise ManifestError(
                f"manifest fields {sorted(value)} differ from the version {version} set"
            )
        return cls(
            record_id=_typed(value, "id", bytes),
            size=_typed(value, "size", int),
            segment_size=_typed(value, "seg", int),
            k=_typed(value, "k", int),
            n=_typed(value, "n", int),
            block_hashes=_typed(value, "hashes", bytes),
            sealed_metadata=_typed(value, "meta", bytes),
            version=version,
        )

    def _check_segment(self, segment: int) -> None:
        if not 0 <= segment < self.segment_count:
            raise IndexError(f"segment {segment} out of range (record has {self.segment_count})")


def _typed(value: dict[str, Any], key: str, kind: type) -> Any:
    item = value[key]
    if type(item) is not kind:
        raise ManifestError(f"manifest field {key!r} must be {kind.__name__}")
    return item
