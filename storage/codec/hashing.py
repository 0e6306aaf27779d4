"""Domain-separated BLAKE2b: every hash says what it is a hash of.

The tag is the BLAKE2b key, so a shard hash can never equal a manifest hash
of the same bytes. hashlib's BLAKE2b is the same function as libsodium's
(`crypto_generichash`, tested), and hashes buffer views without copying.
"""

from __future__ import annotations

import hashlib

BytesLike = bytes | bytearray | memoryview

DIGEST_SIZE = 32

SHARD_TAG = b"medvault/shard/v1"
MANIFEST_TAG = b"medvault/manifest/v1"
RECORD_ID_TAG = b"medvault/record/v1"


def tagged_hash(tag: bytes, *parts: BytesLike, size: int = DIGEST_SIZE) -> bytes:
    """BLAKE2b of the concatenated parts under domain `tag`."""
    if not 1 <= len(tag) <= 64:
        raise ValueError("a domain tag must be 1..64 bytes")
    hasher = hashlib.blake2b(digest_size=size, key=tag)
    for part in parts:
        hasher.update(part)
    return hasher.digest()


def shard_hash(block: BytesLike) -> bytes:
    """Content address of one erasure-coded shard block."""
    return hashlib.blake2b(block, digest_size=DIGEST_SIZE, key=SHARD_TAG).digest()


def manifest_hash(encoded_manifest: BytesLike) -> bytes:
    """Hash of a manifest's canonical encoding; the ledger records it."""
    return tagged_hash(MANIFEST_TAG, encoded_manifest)


def derive_record_id(owner_public_key: bytes, nonce: bytes) -> bytes:
    """A record id bound to its owner; `nonce` is fresh randomness from the caller."""
    if len(owner_public_key) != 32:
        raise ValueError("owner public key must be 32 bytes")
    if len(nonce) < 16:
        raise ValueError("record id nonce must be at least 16 bytes")
    return tagged_hash(RECORD_ID_TAG, owner_public_key, nonce)
