"""Proofs of storage: a holder shows it keeps blocks, not just their hashes, sans-IO.

A writer (a put, or a repair sending rebuilt shards) hashes a few of each
holder's blocks under a fresh secret nonce while they stream past, chosen by
reservoir sampling so neither side knows the sample before the upload ends.
When the holder says an index is complete, the writer sends the nonce and
the sampled segments (ProveShards); the holder answers with the keyed hash
of each block, which it can compute only from the block itself. A holder
that kept a fraction f of an index passes with probability about f**s for s
sampled segments; one that kept nothing (it acknowledged and threw the
blocks away) always fails. The nonce is revealed only after the upload, so
answers cannot be computed in advance and replayed.

Two keyed hashes are in use, named by the challenge message's type
(docs/records.md, "Storage proofs"): version 1, BLAKE2b personalised
with PROOF_TAG and keyed by the nonce (every node); version 2, BLAKE3 keyed
with a key derived from the nonce under its own context (several times
faster on long blocks, so a writer's sample costs little CPU). A writer
asks version 2 of holders that answered it before and falls back to
version 1 for older ones.

Audits by a node that never had the blocks (`check`, repair passes) instead
fetch one block and compare it with the manifest's hash (see
node/records/audit.py).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from blake3 import blake3

PROOF_TAG = b"mv-proof-v1"  # blake2b personalisation (at most 16 bytes)
# BLAKE3 derive-key context of version 2's key: hardcoded, globally unique (never change it).
PROOF_CONTEXT_V2 = "medvault 2026 storage proof v2"
PROOF_V1 = 1  # keyed BLAKE2b
PROOF_V2 = 2  # keyed BLAKE3
PROOF_VERSIONS = (PROOF_V2, PROOF_V1)
NONCE_SIZE = 32
SAMPLES = 4  # segments sampled per shard index at put time
BytesLike = bytes | bytearray | memoryview


class Rng(Protocol):
    """What the sampler needs of a random.Random (passed in: the cores make no randomness)."""

    def randrange(self, start: int, stop: int | None = ..., step: int = ...) -> int: ...


def block_proof(nonce: bytes, block: BytesLike, version: int = PROOF_V1) -> bytes:
    """The keyed hash a holder answers for one block, in proof `version`."""
    if len(nonce) != NONCE_SIZE:
        raise ValueError(f"a proof nonce is {NONCE_SIZE} bytes")
    if version == PROOF_V2:
        return blake3(block, key=proof_key_v2(nonce), max_threads=1).digest()
    if version == PROOF_V1:
        return hashlib.blake2b(block, digest_size=32, key=nonce, person=PROOF_TAG).digest()
    raise ValueError(f"no storage proof version {version}")


def proof_key_v2(nonce: bytes) -> bytes:
    """Version 2's BLAKE3 key: derived from the nonce under PROOF_CONTEXT_V2, so a proof
    is never a hash of any other kind, whatever the nonce."""
    return blake3(nonce, derive_key_context=PROOF_CONTEXT_V2).digest()


@dataclass
class ProofSampler:
    """The expected proofs of a few blocks per index, sampled as segments stream past.

    `rng` must be unpredictable to the holder (seed it from fresh random
    bytes); `nonce` likewise, and it stays with the writer until the challenge.
    `versions`: the proof versions hashed for each sampled block (both while it
    is not known which one the holder answers).
    """

    nonce: bytes
    rng: Rng
    samples: int = SAMPLES
    versions: tuple[int, ...] = (PROOF_V1,)
    seen: int = 0  # segments observed
    _members: set[int] = field(default_factory=set)  # the sampled segments
    # segment -> proof version -> shard index -> proof
    _proofs: dict[int, dict[int, dict[int, bytes]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.versions or any(v not in PROOF_VERSIONS for v in self.versions):
            raise ValueError(f"proof versions are among {PROOF_VERSIONS}")

    def observe(self, segment: int, blocks: Mapping[int, BytesLike]) -> None:
        """One segment's blocks for this holder's indices (segments in increasing order)."""
        if self.draw(segment):
            self.record(segment, self.proofs_of(blocks))

    def draw(self, segment: int) -> bool:
        """Count one more segment; whether the sample takes it (its proofs are then
        `record`ed). Split from the hashing so a writer hashes only the segments
        taken, in a worker thread, while the blocks travel."""
        self.seen += 1
        if len(self._members) < self.samples:
            self._members.add(segment)
            return True
        pick = self.rng.randrange(self.seen)
        if pick >= self.samples:
            return False
        evicted = sorted(self._members)[pick]
        self._members.discard(evicted)
        self._proofs.pop(evicted, None)
        self._members.add(segment)
        return True

    def proofs_of(self, blocks: Mapping[int, BytesLike]) -> dict[int, dict[int, bytes]]:
        """The keyed hashes of one segment's blocks in each of `versions` (pure: safe in
        a worker thread)."""
        return {
            version: {i: block_proof(self.nonce, b, version) for i, b in blocks.items()}
            for version in self.versions
        }

    def record(self, segment: int, proofs: dict[int, dict[int, bytes]]) -> None:
        """A drawn segment's proofs (ignored if it left the sample meanwhile)."""
        if segment in self._members:
            self._proofs[segment] = proofs

    def segments(self) -> tuple[int, ...]:
        """The sampled segments, in order (what the challenge names)."""
        return tuple(sorted(self._members))

    def verify(self, index: int, answers: Sequence[bytes | None], version: int = PROOF_V1) -> bool:
        """Whether a holder's answers are the expected `version` proofs of `index`'s
        sampled blocks (False while a sampled segment's proofs are not recorded, or
        were not hashed in that version)."""
        segments = self.segments()
        if len(answers) != len(segments) or not segments:
            return False
        return all(
            answer is not None
            and answer == self._proofs.get(segment, {}).get(version, {}).get(index)
            for segment, answer in zip(segments, answers, strict=True)
        )
