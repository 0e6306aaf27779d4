"""Issue 17: a get decodes (RS rebuild, decryption) on two threads, in order, bounded.

The fetcher is driven over a fake port that answers from a record encoded
here, on real worker threads (no autojump clock: that would run them inline).
"""

from __future__ import annotations

import io
import threading
from typing import cast

import pytest
import trio

from node.net.rpc_port import RpcPort
from node.records.fetch import DECODE_BATCH, BlockFetcher
from protocol.dht.contact import Contact
from protocol.net.messages import Message
from protocol.records.fetching import Latency
from protocol.records.messages import BlocksFound, FetchBlocks
from storage.codec.crypt import SegmentCipher
from storage.codec.encoder import RecordEncoder
from storage.codec.manifest import Manifest
from storage.errors import DecryptionError

KEY, RID = b"K" * 32, b"R" * 32
K, N, SEGMENT = 4, 8, 16 * 1024
DATA = bytes(range(256)) * (SEGMENT * 12 // 256) + b"tail"  # 13 segments, the last short


def record() -> tuple[Manifest, dict[tuple[int, int], bytes]]:
    encoder = RecordEncoder(record_id=RID, record_key=KEY, k=K, n=N, segment_size=SEGMENT)
    blocks = {
        (s.index, i): bytes(b)
        for s in encoder.encode(io.BytesIO(DATA))
        for i, b in enumerate(s.blocks)
    }
    return encoder.manifest(), blocks


class Holders:
    """One fake holder per shard index; `bad` holders answer with flipped bytes."""

    def __init__(
        self, blocks: dict[tuple[int, int], bytes], bad: frozenset[int] = frozenset()
    ) -> None:
        self.blocks = blocks
        self.bad = bad
        self.contacts = {i: Contact(bytes([i + 1]) * 32, "127.0.0.1:1") for i in range(N)}
        self.by_key = {c.public_key: i for i, c in self.contacts.items()}
        self.asked: list[int] = []

    async def call(self, contact: Contact, request: Message, timeout: float) -> Message:
        assert isinstance(request, FetchBlocks)
        await trio.lowlevel.checkpoint()
        index = self.by_key[contact.public_key]
        self.asked.append(index)
        answer = []
        for ref in request.wanted:
            block = self.blocks[ref.segment, ref.index]
            answer.append(bytes(b ^ 0x5A for b in block) if index in self.bad else block)
        return BlocksFound(tuple(answer))


def fetcher(manifest: Manifest, holders: Holders) -> BlockFetcher:
    return BlockFetcher(
        port=cast(RpcPort, holders),
        manifest=manifest,
        holders={i: [c] for i, c in holders.contacts.items()},
        latency=Latency(),
        timeout=30.0,
    )


def plaintext_of(manifest: Manifest, parts: list[tuple[int, bytes]]) -> bytes:
    cipher = SegmentCipher(KEY, RID)
    size = manifest.contents(cipher).size
    return b"".join(manifest.record_part(s, p, size) for s, p in parts)


async def test_a_get_decrypts_on_two_threads_at_once_in_order_and_bounded() -> None:
    manifest, blocks = record()
    cipher = SegmentCipher(KEY, RID)
    both = threading.Barrier(2, timeout=60)  # fails unless two decode at once
    lock = threading.Lock()
    started: list[int] = []
    consumed = 0
    ahead: list[int] = []

    def decrypt(segment: int, ciphertext: memoryview) -> bytes:
        with lock:
            started.append(segment)
            ahead.append(len(started) - consumed)
        if segment < 2:
            both.wait()
        return bytes(
            cipher.decrypt_segment_in_place(segment, manifest.is_last(segment), ciphertext)
        )

    parts = []
    async for segment, plain in fetcher(manifest, Holders(blocks)).ciphertext(finish=decrypt):
        parts.append((segment, plain))
        consumed += 1
    assert [s for s, _ in parts] == list(range(manifest.segment_count))
    assert plaintext_of(manifest, parts) == DATA
    assert max(ahead) <= DECODE_BATCH  # decoded segments waiting for the reader, at most


async def test_lost_data_blocks_are_rebuilt_on_the_decode_threads() -> None:
    manifest, blocks = record()
    kept = {key: b for key, b in blocks.items() if key[1] >= N - K}  # parity only
    holders = Holders(kept)
    f = fetcher(manifest, holders)
    f.holders = {i: [c] for i, c in holders.contacts.items() if i >= N - K}
    cipher = SegmentCipher(KEY, RID)
    parts = [
        (s, cipher.decrypt_segment(s, manifest.is_last(s), c)) async for s, c in f.ciphertext()
    ]
    assert plaintext_of(manifest, parts) == DATA


async def test_a_corrupt_block_is_still_caught_on_the_parallel_path() -> None:
    manifest, blocks = record()
    holders = Holders(blocks, bad=frozenset({0, 2}))
    f = fetcher(manifest, holders)
    cipher = SegmentCipher(KEY, RID)

    def decrypt(segment: int, ciphertext: memoryview) -> bytes:
        return bytes(
            cipher.decrypt_segment_in_place(segment, manifest.is_last(segment), ciphertext)
        )

    parts = [item async for item in f.ciphertext(finish=decrypt)]
    assert plaintext_of(manifest, parts) == DATA
    assert f.corrupt == {holders.contacts[0].public_key: {0}, holders.contacts[2].public_key: {2}}


async def test_a_segment_that_fails_is_raised_at_its_turn_as_itself() -> None:
    manifest, blocks = record()
    cipher = SegmentCipher(KEY, RID)

    def decrypt(segment: int, ciphertext: memoryview) -> bytes:
        last = manifest.is_last(segment)
        return bytes(
            cipher.decrypt_segment_in_place(segment, last if segment != 5 else not last, ciphertext)
        )

    seen = []
    with pytest.raises(DecryptionError, match="segment 5 failed authentication"):
        async for segment, _ in fetcher(manifest, Holders(blocks)).ciphertext(finish=decrypt):
            seen.append(segment)
    assert seen == [0, 1, 2, 3, 4]
