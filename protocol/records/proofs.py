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

Audits by a node that never had the blocks (`check`, repair passes) instead
fetch one block and compare it with the manifest's hash (see
node/records/audit.py).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

PROOF_TAG = b"mv-proof-v1"  # blake2b personalisation (at most 16 bytes)
NONCE_SIZE = 32
SAMPLES = 4  # segments sampled per shard index at put time
BytesLike = bytes | bytearray | memoryview


class Rng(Protocol):
    """What the sampler needs of a random.Random (passed in: the cores make no randomness)."""

    def randrange(self, start: int, stop: int | None = ..., step: int = ...) -> int: ...


def block_proof(nonce: bytes, block: BytesLike) -> bytes:
    """The keyed hash a holder answers for one block."""
    if len(nonce) != NONCE_SIZE:
        raise ValueError(f"a proof nonce is {NONCE_SIZE} bytes")
    return hashlib.blake2b(block, digest_size=32, key=nonce, person=PROOF_TAG).digest()


@dataclass
class ProofSampler:
    """The expected proofs of a few blocks per index, sampled as segments stream past.

    `rng` must be unpredictable to the holder (seed it from fresh random
    bytes); `nonce` likewise, and it stays with the writer until the challenge.
    """

    nonce: bytes
    rng: Rng
    samples: int = SAMPLES
    seen: int = 0  # segments observed
    _members: set[int] = field(default_factory=set)  # the sampled segments
    _proofs: dict[int, dict[int, bytes]] = field(default_factory=dict)  # segment -> proofs

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

    def proofs_of(self, blocks: Mapping[int, BytesLike]) -> dict[int, bytes]:
        """The keyed hashes of one segment's blocks (pure: safe in a worker thread)."""
        return {i: block_proof(self.nonce, b) for i, b in blocks.items()}

    def record(self, segment: int, proofs: dict[int, bytes]) -> None:
        """A drawn segment's proofs (ignored if it left the sample meanwhile)."""
        if segment in self._members:
            self._proofs[segment] = proofs

    def segments(self) -> tuple[int, ...]:
        """The sampled segments, in order (what the challenge names)."""
        return tuple(sorted(self._members))

    def verify(self, index: int, answers: Sequence[bytes | None]) -> bool:
        """Whether a holder's answers are the expected proofs of `index`'s sampled blocks
        (False while a sampled segment's proofs are not recorded)."""
        segments = self.segments()
        if len(answers) != len(segments) or not segments:
            return False
        return all(
            answer is not None and answer == self._proofs.get(segment, {}).get(index)
            for segment, answer in zip(segments, answers, strict=True)
        )
