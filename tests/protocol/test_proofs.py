"""Storage proofs: only a node keeping the sampled blocks answers them."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from blake3 import blake3

from protocol.records.proofs import (
    NONCE_SIZE,
    PROOF_CONTEXT_V2,
    PROOF_V1,
    PROOF_V2,
    ProofSampler,
    block_proof,
)

NONCE = bytes(range(NONCE_SIZE))


def blocks_of(segment: int) -> dict[int, bytes]:
    return {index: f"segment {segment} index {index}".encode() * 10 for index in (0, 3)}


def sampled(segments: int, seed: int = 1) -> ProofSampler:
    sampler = ProofSampler(nonce=NONCE, rng=random.Random(seed))
    for segment in range(segments):
        sampler.observe(segment, blocks_of(segment))
    return sampler


def honest_answers(sampler: ProofSampler, index: int, nonce: bytes = NONCE) -> list[bytes | None]:
    return [block_proof(nonce, blocks_of(s)[index]) for s in sampler.segments()]


def test_a_holder_with_the_blocks_passes_for_each_of_its_indices() -> None:
    sampler = sampled(50)
    assert len(sampler.segments()) == 4 and sampler.seen == 50
    for index in (0, 3):
        assert sampler.verify(index, honest_answers(sampler, index))


def test_a_single_segment_record_is_proven_whole() -> None:
    sampler = sampled(1)
    assert sampler.segments() == (0,)
    assert sampler.verify(0, honest_answers(sampler, 0))


@pytest.mark.parametrize(
    "tamper",
    [
        lambda answers: [None, *answers[1:]],  # one block missing
        lambda answers: answers[:-1],  # too few answers
        lambda answers: [*answers, answers[0]],  # too many
        lambda answers: [bytes(32), *answers[1:]],  # made up
        lambda answers: list(reversed(answers)),  # right proofs, wrong order
    ],
)
def test_missing_made_up_or_misordered_proofs_fail(tamper: object) -> None:
    sampler = sampled(20)
    answers = honest_answers(sampler, 0)
    assert callable(tamper)
    assert not sampler.verify(0, tamper(answers))


def test_proofs_are_bound_to_the_nonce_the_index_and_the_block() -> None:
    sampler = sampled(20)
    assert not sampler.verify(0, honest_answers(sampler, 0, nonce=bytes(NONCE_SIZE)))
    assert not sampler.verify(0, honest_answers(sampler, 3))  # another index's blocks
    assert not sampler.verify(1, honest_answers(sampler, 0))  # an index never sent
    # Keeping only the block hashes is no help: the proof needs the bytes.
    assert block_proof(NONCE, b"a" * 100) != block_proof(NONCE, b"a" * 99 + b"b")


def test_nothing_observed_proves_nothing() -> None:
    assert not ProofSampler(nonce=NONCE, rng=random.Random(1)).verify(0, [])


def test_every_segment_is_equally_likely_to_be_sampled() -> None:
    """Reservoir sampling: with 4 of 40 segments, each is picked about 10% of the time."""
    picks: Counter[int] = Counter()
    runs = 4000
    for seed in range(runs):
        picks.update(sampled(40, seed).segments())
    for segment in range(40):
        assert 0.07 < picks[segment] / runs < 0.13, (segment, picks[segment])


def test_a_holder_keeping_half_of_an_index_is_caught_nearly_always() -> None:
    """Passing needs every sampled block: about (1/2)**4 of challenges."""
    rng = random.Random(7)
    passed = 0
    runs = 2000
    for seed in range(runs):
        sampler = sampled(64, seed)
        kept = {s for s in range(64) if rng.random() < 0.5}
        answers = [
            block_proof(NONCE, blocks_of(s)[0]) if s in kept else None for s in sampler.segments()
        ]
        passed += sampler.verify(0, answers)
    assert 0.03 < passed / runs < 0.10


def test_a_nonce_must_have_its_size() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        block_proof(b"short", b"block")


def test_draw_then_keep_samples_exactly_as_observe() -> None:
    """The writer draws on its own thread and hashes only what was drawn in a worker;
    a segment whose proofs are not recorded yet proves nothing."""
    nonce = bytes(NONCE_SIZE)
    whole = ProofSampler(nonce=nonce, rng=random.Random(7))
    split = ProofSampler(nonce=nonce, rng=random.Random(7))
    hashed = 0
    for segment in range(200):
        blocks = {0: segment.to_bytes(4, "big") * 8, 3: bytes([segment % 251]) * 16}
        whole.observe(segment, blocks)
        if split.draw(segment):
            split.record(segment, split.proofs_of(blocks))
            hashed += 1
    assert split.segments() == whole.segments() and len(whole.segments()) == 4
    assert {s: split._proofs[s] for s in split.segments()} == whole._proofs
    assert hashed < 60  # segments past the first few are rarely hashed at all


def test_a_sampled_segment_without_recorded_proofs_fails_verification() -> None:
    sampler = ProofSampler(nonce=bytes(NONCE_SIZE), rng=random.Random(1))
    block = b"x" * 64
    assert sampler.draw(0)
    assert not sampler.verify(0, [block_proof(sampler.nonce, block)])
    sampler.record(0, sampler.proofs_of({0: block}))
    assert sampler.verify(0, [block_proof(sampler.nonce, block)])


# -- version 2: keyed BLAKE3 --------------------------------------------------------


def test_version_2_is_keyed_blake3_under_its_own_context() -> None:
    """Pinned: the context string and the key derivation are wire format (a changed one
    would fail every honest holder's proofs)."""
    proof = block_proof(bytes(range(NONCE_SIZE)), b"medvault" * 100, PROOF_V2)
    assert proof.hex() == "49f3612c1967de81d3415ee5e0960c12bfb98344739dae59e9bbd695413accae"
    key = blake3(bytes(range(NONCE_SIZE)), derive_key_context=PROOF_CONTEXT_V2).digest()
    assert proof == blake3(b"medvault" * 100, key=key).digest()


def test_the_versions_differ_and_each_binds_the_nonce_and_the_block() -> None:
    block = b"block " * 50
    assert block_proof(NONCE, block, PROOF_V1) != block_proof(NONCE, block, PROOF_V2)
    assert block_proof(NONCE, block, PROOF_V2) != block_proof(bytes(NONCE_SIZE), block, PROOF_V2)
    assert block_proof(NONCE, block, PROOF_V2) != block_proof(NONCE, block + b"x", PROOF_V2)
    # A proof is no plain hash of the block that a holder keeping only hashes could know.
    assert block_proof(NONCE, block, PROOF_V2) != blake3(block).digest()
    with pytest.raises(ValueError, match="no storage proof version 3"):
        block_proof(NONCE, block, 3)


def test_a_sample_hashed_in_both_versions_verifies_either_answer() -> None:
    """A holder not yet known: the writer hashes both, so an older holder's version 1
    answers and a current one's version 2 answers both pass."""
    sampler = ProofSampler(nonce=NONCE, rng=random.Random(3), versions=(PROOF_V2, PROOF_V1))
    for segment in range(30):
        sampler.observe(segment, blocks_of(segment))
    for version in (PROOF_V1, PROOF_V2):
        answers = [block_proof(NONCE, blocks_of(s)[0], version) for s in sampler.segments()]
        assert sampler.verify(0, answers, version)
        other = PROOF_V2 if version == PROOF_V1 else PROOF_V1
        assert not sampler.verify(0, answers, other)  # the version asked is the one checked


def test_a_sample_hashed_in_one_version_proves_nothing_in_the_other() -> None:
    sampler = ProofSampler(nonce=NONCE, rng=random.Random(3), versions=(PROOF_V2,))
    for segment in range(10):
        sampler.observe(segment, blocks_of(segment))
    v1 = [block_proof(NONCE, blocks_of(s)[0], PROOF_V1) for s in sampler.segments()]
    v2 = [block_proof(NONCE, blocks_of(s)[0], PROOF_V2) for s in sampler.segments()]
    assert sampler.verify(0, v2, PROOF_V2)
    assert not sampler.verify(0, v1, PROOF_V1)


@pytest.mark.parametrize("versions", [(), (3,), (PROOF_V1, 0)])
def test_a_sampler_takes_only_known_versions(versions: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="proof versions"):
        ProofSampler(nonce=NONCE, rng=random.Random(1), versions=versions)
