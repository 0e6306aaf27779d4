"""A writer's manifest may list, under a valid hash, a block of the wrong length: a reader
or repairer must refuse it like a corrupt block, or the Reed-Solomon code gets shards of
unequal length (ValueError, which aborted a holder's whole repair pass, not one record)."""

from __future__ import annotations

import dataclasses
import os
from typing import Any, cast

import pytest

from node.records.audit import kept
from node.records.fetch import BlockFetcher
from protocol.records.fetching import Latency
from protocol.records.messages import BlockRef
from storage.codec.erasure import ReedSolomon
from storage.codec.manifest import BLAKE3_VERSION, PADDED_VERSION, Manifest
from tests.storage.test_block_hashes import encode

HASH = 32


def with_block(manifest: Manifest, segment: int, index: int, block: bytes) -> Manifest:
    """`manifest` listing `block` (under its version's valid hash) at (segment, index)."""
    at = (segment * manifest.n + index) * HASH
    hashes = manifest.block_hashes
    listed = hashes[:at] + manifest.shard_hasher(block) + hashes[at + HASH :]
    return dataclasses.replace(manifest, block_hashes=listed)


def fetcher_of(manifest: Manifest) -> BlockFetcher:
    return BlockFetcher(
        port=cast(Any, None), manifest=manifest, holders={}, latency=Latency(), timeout=1.0
    )


@pytest.mark.parametrize("version", [PADDED_VERSION, BLAKE3_VERSION])
def test_a_listed_block_of_the_wrong_length_does_not_verify(version: int) -> None:
    manifest, blocks = encode(os.urandom(2000), version)
    longer, shorter = blocks[0, 1] + b"\0", blocks[0, 2][:-1]
    bad = with_block(with_block(manifest, 0, 1, longer), 0, 2, shorter)
    assert not bad.verify_block(0, 1, longer) and not bad.verify_block(0, 2, shorter)
    assert bad.verify_block(0, 0, blocks[0, 0])  # the honest ones still do
    refs = [BlockRef(0, 0), BlockRef(0, 1), BlockRef(0, 2)]
    checked = fetcher_of(bad)._verify(refs, [blocks[0, 0], longer, shorter])
    assert [ok for _, _, ok in checked] == [True, False, False]
    # What the check keeps from the code: shards of unequal length are a ValueError.
    with pytest.raises(ValueError, match="unequal"):
        ReedSolomon(bad.k, bad.n).reconstruct({0: blocks[0, 0], 1: longer}, [3])


def test_every_honest_block_still_verifies() -> None:
    manifest, blocks = encode(os.urandom(5000))
    checked = fetcher_of(manifest)._verify(
        [BlockRef(s, i) for s, i in blocks], list(blocks.values())
    )
    assert all(ok for _, _, ok in checked)


def test_an_audit_does_not_blame_a_holder_for_the_writers_odd_length_block() -> None:
    """Holders store a listed block of the wrong length as named (they check the name
    only): serving it back is keeping it, though no reader takes it."""
    manifest, blocks = encode(os.urandom(2000))
    longer = blocks[0, 1] + b"\0"
    bad = with_block(manifest, 0, 1, longer)
    assert kept(bad, BlockRef(0, 1), longer) and not bad.verify_block(0, 1, longer)
    assert not kept(bad, BlockRef(0, 1), blocks[0, 1])  # the one it does not list
