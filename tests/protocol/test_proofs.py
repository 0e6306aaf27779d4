"""Storage proofs: only a node keeping the sampled blocks answers them."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from protocol.records.proofs import NONCE_SIZE, ProofSampler, block_proof

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
