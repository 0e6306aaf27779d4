"""One segment through the data path: encrypt, erasure-code, hash, and back.

Decoding pulls blocks one at a time from a source, verifies each against its
expected hash, and stops as soon as k good ones are in hand, so a local read
touches only the data shards and a corrupt or missing block just means the
next index is tried.

Blocks are hashed where they lie (memory views of the erasure code's
buffers, never copied); the hash function is the manifest version's
(`storage.codec.manifest.shard_hasher`), BLAKE3 for what is written now.

Copies and allocations per segment (docs/records.md, "Where one thread's
encode time goes"): none on the way out. The segment is encrypted straight
into a pooled buffer of all n blocks (storage.codec.bufferpool), reused once
no block of an earlier segment refers to it; the data blocks are views of
the ciphertext and `parity_into` writes the parity behind them. On the way
back, the k blocks are assembled (lost data blocks rebuilt) in a pooled
buffer and decrypted where they lie; the one allocation and copy left is the
plaintext handed back as `bytes`, which its reader may keep.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from storage.codec.bufferpool import BufferPool
from storage.codec.crypt import MAC_SIZE, SegmentCipher
from storage.codec.erasure import BytesLike, ReedSolomon
from storage.codec.hashing import Hasher, shard_hash_v3
from storage.errors import CorruptShard, NotEnoughShards

# Returns block `index` of the segment being decoded, or None when it is not
# available; raises CorruptShard when the source itself found it corrupt.
BlockGetter = Callable[[int], BytesLike | None]

# Buffers kept per size per codec: the segments in flight on two threads, the ones
# queued for holders, and one spare; beyond that a segment gets a fresh buffer.
POOLED_BUFFERS = 6
POOLED_SIZES = 3


@dataclass(frozen=True)
class EncodedSegment:
    """The n shard blocks of one segment and their hashes.

    Blocks are read-only views over buffers no one else writes, so they may
    be kept after the next segment is produced.
    """

    index: int
    last: bool
    plain_size: int
    blocks: tuple[memoryview, ...]
    hashes: tuple[bytes, ...]


class SegmentCodec:
    """Encodes and decodes the segments of one record."""

    def __init__(
        self, code: ReedSolomon, cipher: SegmentCipher, hasher: Hasher = shard_hash_v3
    ) -> None:
        self.code = code
        self.cipher = cipher
        self.hasher = hasher
        self._pools: dict[int, BufferPool] = {}
        self._pools_lock = threading.Lock()

    def _buffer(self, size: int) -> memoryview:
        """A reusable buffer of `size` bytes (pooled for the sizes a record has: its full
        segments, its last, a decode's scratch; any other size gets a fresh one)."""
        with self._pools_lock:
            pool = self._pools.get(size)
            if pool is None and len(self._pools) < POOLED_SIZES:
                pool = self._pools[size] = BufferPool(size, POOLED_BUFFERS)
        return memoryview(pool.take() if pool is not None else bytearray(size))

    @property
    def buffers_made(self) -> int:
        """Pooled buffers allocated so far (a measure of reuse, for tests and benchmarks)."""
        with self._pools_lock:
            return sum(pool.made for pool in self._pools.values())

    def encode(self, index: int, last: bool, plaintext: bytes) -> EncodedSegment:
        """Encrypt into one pooled buffer of all n blocks (ciphertext, its zero padding,
        then parity), compute parity in place, hash the blocks where they lie."""
        code = self.code
        size = len(plaintext) + MAC_SIZE
        length = code.shard_size(size)
        buffer = self._buffer(code.n * length)
        self.cipher.encrypt_segment_into(index, last, plaintext, buffer)
        buffer[size : code.k * length] = bytes(code.k * length - size)  # the last block's padding
        blocks = tuple(buffer[i * length : (i + 1) * length] for i in range(code.n))
        code.parity_into(blocks[: code.k], blocks[code.k :])
        blocks = tuple(b.toreadonly() for b in blocks)
        return EncodedSegment(
            index=index,
            last=last,
            plain_size=len(plaintext),
            blocks=blocks,
            hashes=tuple(self.hasher(b) for b in blocks),
        )

    def decode(
        self,
        index: int,
        *,
        last: bool,
        plain_size: int,
        hashes: Sequence[bytes],
        get_block: BlockGetter,
        order: Sequence[int] | None = None,
    ) -> bytes:
        """Plaintext of segment `index` from any k blocks that verify.

        `order` says which shard indices to try first (default: data shards,
        which need no arithmetic); every index is tried before giving up.
        """
        code = self.code
        cipher_size = plain_size + MAC_SIZE
        block_size = code.shard_size(cipher_size)
        good: dict[int, BytesLike] = {}
        corrupt: list[int] = []
        missing: list[int] = []
        tried = list(dict.fromkeys(order or ()))
        if any(not 0 <= i < code.n for i in tried):
            raise ValueError(f"shard order {tried} names indices outside 0..{code.n - 1}")
        tried += [i for i in range(code.n) if i not in tried]
        for shard in tried:
            if len(good) == code.k:
                break
            try:
                block = get_block(shard)
            except CorruptShard:
                corrupt.append(shard)
                continue
            if block is None:
                missing.append(shard)
            elif len(block) != block_size or self.hasher(block) != hashes[shard]:
                corrupt.append(shard)
            else:
                good[shard] = block
        if len(good) < code.k:
            raise NotEnoughShards(index, code.k, sorted(good), sorted(corrupt), sorted(missing))
        segment = self._buffer(code.k * block_size)
        code.decode_into(good, cipher_size, segment)
        plaintext = self.cipher.decrypt_segment_in_place(index, last, segment[:cipher_size])
        return bytes(plaintext)
