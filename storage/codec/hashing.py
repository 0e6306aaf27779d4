"""Domain-separated hashes: every hash says what it is a hash of.

Two block and manifest hash algorithms are in use, chosen by the manifest's
version (docs/records.md, "Block and manifest hashes"):

- versions 1 and 2: BLAKE2b-256 keyed with a tag (`shard_hash`,
  `manifest_hash`); hashlib's BLAKE2b is libsodium's `crypto_generichash`
  (tested);
- version 3: BLAKE3 in its derive-key mode with a fixed context string per
  kind of hash (`shard_hash_v3`, `manifest_hash_v3`): 3-6x faster per block.

Either way a shard hash never equals a manifest hash of the same bytes. Both
hash buffer views without copying them and release the GIL while hashing a
block of more than 2 KiB, so segments encoded on two threads hash in parallel.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from blake3 import blake3

BytesLike = bytes | bytearray | memoryview
Hasher = Callable[[BytesLike], bytes]

DIGEST_SIZE = 32

SHARD_TAG = b"medvault/shard/v1"
MANIFEST_TAG = b"medvault/manifest/v1"
RECORD_ID_TAG = b"medvault/record/v1"

# BLAKE3 derive-key contexts: hardcoded, globally unique, application-specific,
# as the BLAKE3 paper asks. Never change them: they name stored blocks.
SHARD_CONTEXT_V3 = "medvault 2026 shard v3"
MANIFEST_CONTEXT_V3 = "medvault 2026 manifest v3"


def tagged_hash(tag: bytes, *parts: BytesLike, size: int = DIGEST_SIZE) -> bytes:
    """BLAKE2b of the concatenated parts under domain `tag`."""
    if not 1 <= len(tag) <= 64:
        raise ValueError("a domain tag must be 1..64 bytes")
    hasher = hashlib.blake2b(digest_size=size, key=tag)
    for part in parts:
        hasher.update(part)
    return hasher.digest()


def shard_hash(block: BytesLike) -> bytes:
    """Content address of a shard block of a version 1 or 2 manifest (BLAKE2b)."""
    return hashlib.blake2b(block, digest_size=DIGEST_SIZE, key=SHARD_TAG).digest()


def shard_hash_v3(block: BytesLike) -> bytes:
    """Content address of a shard block of a version 3 manifest (BLAKE3).

    One thread per block: blocks are 64 KiB-1 MiB, below where BLAKE3's own
    threads pay off, and the pipeline already hashes segments in parallel.
    """
    return blake3(block, derive_key_context=SHARD_CONTEXT_V3, max_threads=1).digest()


def manifest_hash(encoded_manifest: BytesLike) -> bytes:
    """Hash of a version 1 or 2 manifest's canonical encoding; the ledger records it."""
    return tagged_hash(MANIFEST_TAG, encoded_manifest)


def manifest_hash_v3(encoded_manifest: BytesLike) -> bytes:
    """Hash of a version 3 manifest's canonical encoding; the ledger records it."""
    return blake3(encoded_manifest, derive_key_context=MANIFEST_CONTEXT_V3).digest()


# Holders check blocks without their manifest, so they try every algorithm some
# manifest version uses, the fast current one first (see `block_matches`).
HOLDER_SHARD_HASHES: tuple[Hasher, ...] = (shard_hash_v3, shard_hash)


def block_matches(digest: bytes, block: BytesLike) -> bool:
    """Whether `block` is content-addressed by `digest` under any block hash in use.

    Sound without knowing the algorithm: passing needs a preimage of `digest`
    under BLAKE3 or under BLAKE2b, each infeasible. A block whose digest is
    neither costs both hashes; a version 2 block costs a BLAKE3 hash more
    than before (about a fifth of its BLAKE2b hash).
    """
    return any(hasher(block) == digest for hasher in HOLDER_SHARD_HASHES)


def derive_record_id(owner_public_key: bytes, nonce: bytes) -> bytes:
    """A record id bound to its owner; `nonce` is fresh randomness from the caller."""
    if len(owner_public_key) != 32:
        raise ValueError("owner public key must be 32 bytes")
    if len(nonce) < 16:
        raise ValueError("record id nonce must be at least 16 bytes")
    return tagged_hash(RECORD_ID_TAG, owner_public_key, nonce)
