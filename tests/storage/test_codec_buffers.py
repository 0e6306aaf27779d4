"""Issue 17: the segment codec writes parity and rebuilt blocks into reused buffers.

The bytes must be exactly the old path's (a fresh buffer per segment, for both
Reed-Solomon backends), and a buffer must never be handed out again while any
block over it is still held: a block queued for a slow holder would otherwise
change under it.
"""

from __future__ import annotations

import gc
import json
import random
import subprocess
import sys
import threading

import pytest

from storage.codec import isal
from storage.codec.bufferpool import BufferPool
from storage.codec.crypt import SegmentCipher
from storage.codec.erasure import ReedSolomon
from storage.codec.segment import POOLED_BUFFERS, EncodedSegment, SegmentCodec
from storage.errors import DecryptionError

HAVE_ISAL = not isinstance(isal.load(), isal.Unavailable)
BACKENDS = [
    pytest.param(
        "isal", marks=pytest.mark.skipif(not HAVE_ISAL, reason="no libisal on this machine")
    ),
    "numpy",
]
KEY, RID = b"K" * 32, b"R" * 32


def codec(k: int, n: int, backend: str) -> SegmentCodec:
    return SegmentCodec(ReedSolomon(k, n, backend=backend), SegmentCipher(KEY, RID))


def old_blocks(k: int, n: int, index: int, last: bool, plaintext: bytes) -> list[bytes]:
    """The blocks as before pooling: the old `encode` API, fresh buffers, numpy kernel."""
    ciphertext = SegmentCipher(KEY, RID).encrypt_segment(index, last, plaintext)
    return ReedSolomon(k, n, backend="numpy").encode(ciphertext)


def decode(c: SegmentCodec, segment: EncodedSegment, drop: int) -> bytes:
    """Decode from every block but the first `drop` data blocks (parity must be used)."""
    survivors = {i: b for i, b in enumerate(segment.blocks) if i >= drop}
    return c.decode(
        segment.index,
        last=segment.last,
        plain_size=segment.plain_size,
        hashes=segment.hashes,
        get_block=survivors.get,
    )


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("k", "n"), [(4, 8), (3, 5), (10, 14), (1, 3)])
def test_pooled_blocks_equal_the_old_path(backend: str, k: int, n: int) -> None:
    rng = random.Random(k * 100 + n)
    c = codec(k, n, backend)
    # Full segments, then short ones whose last data shard needs padding.
    sizes = [4096] * 4 + [4095, 1000, 1, 0]
    for index, size in enumerate(sizes):
        plaintext = rng.randbytes(size)
        last = index == len(sizes) - 1
        segment = c.encode(index, last, plaintext)
        assert [bytes(b) for b in segment.blocks] == old_blocks(k, n, index, last, plaintext)
        assert decode(c, segment, min(k, n - k)) == plaintext


@pytest.mark.parametrize("backend", BACKENDS)
def test_held_blocks_never_change_while_later_segments_are_encoded(backend: str) -> None:
    c = codec(4, 8, backend)
    rng = random.Random(1)
    held = [c.encode(i, False, rng.randbytes(8192)) for i in range(3)]
    copies = [[bytes(b) for b in s.blocks] for s in held]
    for index in range(3, 3 + 4 * POOLED_BUFFERS):  # every pooled buffer reused many times
        decode(c, c.encode(index, False, rng.randbytes(8192)), 4)
    assert [[bytes(b) for b in s.blocks] for s in held] == copies
    # One parity block kept alone (its segment and siblings dropped) still pins its buffer.
    lone = c.encode(99, False, rng.randbytes(8192)).blocks[7]
    kept = bytes(lone)
    for index in range(100, 100 + 2 * POOLED_BUFFERS):
        c.encode(index, False, rng.randbytes(8192))
    assert bytes(lone) == kept


@pytest.mark.parametrize("backend", BACKENDS)
def test_released_buffers_are_reused(backend: str) -> None:
    c = codec(4, 8, backend)
    rng = random.Random(2)
    for index in range(50):
        segment = c.encode(index, False, rng.randbytes(8192))
        assert decode(c, segment, 4)  # rebuild scratch from the pool too
        del segment
    # One parity buffer and one rebuild scratch, each reused 50 times.
    assert c.buffers_made == 2


def test_a_decoded_plaintext_does_not_change_when_the_scratch_is_reused() -> None:
    c = codec(4, 8, "numpy")
    rng = random.Random(3)
    first_plain = rng.randbytes(8192)
    first = decode(c, c.encode(0, False, first_plain), 4)
    for index in range(1, 20):
        decode(c, c.encode(index, False, rng.randbytes(8192)), 4)
    assert first == first_plain


@pytest.mark.parametrize("backend", BACKENDS)
def test_two_threads_sharing_one_codec_never_see_each_others_bytes(backend: str) -> None:
    c = codec(4, 8, backend)
    failures: list[str] = []

    def work(seed: int) -> None:
        rng = random.Random(seed)
        for index in range(40):
            plaintext = rng.randbytes(rng.choice([8192, 8192, 5000]))
            segment = c.encode(index, False, plaintext)
            expected = old_blocks(4, 8, index, False, plaintext)
            if [bytes(b) for b in segment.blocks] != expected:
                failures.append(f"thread {seed} segment {index} blocks")
            if decode(c, segment, 4) != plaintext:
                failures.append(f"thread {seed} segment {index} decode")

    threads = [threading.Thread(target=work, args=(seed,)) for seed in (10, 20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []


def test_the_pool_never_hands_out_a_buffer_something_still_refers_to() -> None:
    pool = BufferPool(64, keep=2)
    first = pool.take()
    view = memoryview(first)[10:20].toreadonly()  # a block over it, the buffer name dropped
    first_id = id(first)
    del first
    second = pool.take()
    assert id(second) != first_id  # the view still holds the first
    del second
    del view
    gc.collect()
    assert id(pool.take()) == first_id  # nothing refers to it any more: reused
    assert pool.made == 2


def test_the_pool_keeps_at_most_keep_buffers_however_many_are_held() -> None:
    pool = BufferPool(16, keep=3)
    held = [pool.take() for _ in range(1000)]  # a caller that never lets go
    assert len(pool) == 3 and pool.made == 1000
    del held
    reused = {id(pool.take()) for _ in range(10)}  # each dropped at once: one buffer
    assert len(reused) == 1 and pool.made == 1000


def test_a_scratch_that_cannot_take_the_rebuilt_blocks_is_refused() -> None:
    code = ReedSolomon(4, 8, backend="numpy")
    shards = dict(enumerate(code.encode(bytes(range(200)))))
    survivors = {i: s for i, s in shards.items() if i >= 2}
    length = code.shard_size(200)
    with pytest.raises(ValueError, match="scratch"):
        code.decode(survivors, 200, scratch=bytearray(2 * length - 1))
    with pytest.raises(ValueError, match="writable"):
        code.decode(survivors, 200, scratch=bytes(2 * length))
    assert code.decode(survivors, 200, scratch=bytearray(2 * length)) == bytes(range(200))


def test_a_bad_block_is_still_caught_with_pooled_buffers() -> None:
    c = codec(4, 8, "numpy")
    segment = c.encode(0, True, b"x" * 5000)
    blocks = dict(enumerate(segment.blocks))
    blocks[5] = memoryview(bytes(len(blocks[5])))  # a parity block of zeros
    got = c.decode(
        0,
        last=True,
        plain_size=5000,
        hashes=segment.hashes,
        get_block=lambda i: blocks[i] if i >= 3 else None,
    )
    assert got == b"x" * 5000  # the bad block was skipped, the spare one used


NUMPY_PROBE = """
import json, sys
from storage.codec import erasure
before = "numpy" in sys.modules
erasure.select_backend("numpy")
code = erasure.ReedSolomon(4, 8)
shards = code.encode(bytes(range(256)) * 40)
survivors = {i: s for i, s in enumerate(shards) if i >= 4}
ok = code.decode(survivors, 10240) == bytes(range(256)) * 40
print(json.dumps({"before": before, "after": "numpy" in sys.modules, "ok": ok,
                  "shards": [s.hex() for s in shards]}))
"""


def test_the_numpy_fallback_imports_numpy_only_when_it_is_used() -> None:
    done = subprocess.run(
        [sys.executable, "-c", NUMPY_PROBE], capture_output=True, text=True, check=True, timeout=120
    )
    seen = json.loads(done.stdout)
    assert seen["before"] is False and seen["after"] is True and seen["ok"] is True
    expected = ReedSolomon(4, 8, backend="numpy").encode(bytes(range(256)) * 40)
    assert [bytes.fromhex(s) for s in seen["shards"]] == expected


@pytest.mark.parametrize("size", [0, 1, 1000, 65536])
def test_encrypting_in_place_gives_the_public_functions_bytes(size: int) -> None:
    cipher = SegmentCipher(KEY, RID)
    plaintext = random.Random(size).randbytes(size)
    out = memoryview(bytearray(b"\xee" * (size + 40)))
    for source in (plaintext, memoryview(plaintext)):
        written = cipher.encrypt_segment_into(3, True, source, out)
        assert written == size + 16
        assert bytes(out[:written]) == cipher.encrypt_segment(3, True, plaintext)
        assert bytes(out[written:]) == b"\xee" * 24  # nothing written past the ciphertext
    assert cipher.decrypt_segment(3, True, bytes(out[: size + 16])) == plaintext


def test_encrypting_in_place_refuses_a_short_or_read_only_output() -> None:
    cipher = SegmentCipher(KEY, RID)
    with pytest.raises(ValueError, match="needs 116 writable bytes"):
        cipher.encrypt_segment_into(0, False, bytes(100), memoryview(bytearray(115)))
    with pytest.raises(ValueError, match="writable"):
        cipher.encrypt_segment_into(0, False, bytes(100), memoryview(bytes(200)))


def test_decrypting_in_place_gives_the_public_functions_bytes_and_errors() -> None:
    cipher = SegmentCipher(KEY, RID)
    plaintext = random.Random(9).randbytes(5000)
    sealed = cipher.encrypt_segment(2, False, plaintext)
    buffer = memoryview(bytearray(sealed))
    assert bytes(cipher.decrypt_segment_in_place(2, False, buffer)) == plaintext
    kept = []
    for _ in range(20):  # failures kept with their tracebacks, then collected
        buffer = memoryview(bytearray(sealed))
        try:
            cipher.decrypt_segment_in_place(2, True, buffer)  # the wrong "last" flag
        except DecryptionError as exc:
            kept.append(exc)
    assert len(kept) == 20 and "segment 2 failed authentication" in str(kept[0])
    del kept
    gc.collect()
    with pytest.raises(ValueError, match="writable"):
        cipher.decrypt_segment_in_place(2, False, memoryview(sealed))
