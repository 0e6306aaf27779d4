"""A whole record through the data path and back, with bounded memory, on 1 and 2 threads.

    python -m benchmarks.pipeline [--size-mib 1024] [-k 4 -n 8] [--segment-size B]
                                  [--threads 1 2] [--json]

The record streams from a generated source through the RecordEncoder
(read, encrypt, erasure-code, hash every block); in a second pass each
segment is also decoded straight back from a worst-case subset of its blocks
(the first min(k, n-k) data blocks dropped, so parity must be used; every
used block's hash checked, then decrypted) and compared with the source (the
padding up to the Padmé size, manifest version 2, with zeros). Segments are
encoded and decoded on `--threads` worker threads (node.parallel.ordered_map:
in order, at most threads+1 segments in flight per stage) and not kept, so
the peak RSS shows the streaming bound. Figures per thread count: whole-run
MB/s of plaintext for encode, for decode (the record's number of segments,
decoded cycling over its first 8: the work does not depend on the bytes), median
per-segment MB/s, peak RSS; then the ratios, next to a GIL-free control that
shows how much of the second core the shared machine gave at the time.

First, the per-stage split of one thread's time per MiB of plaintext
(`stage_split`): each step of encoding and decoding one segment timed alone,
repeated, medians: encryption (through pynacl's public function, which
allocates its output, and in place as the codec does it), Reed-Solomon
parity into a reused buffer and into a fresh one (what a fresh allocation
costs), block hashes, and on the way back the hash check, the rebuild of
lost data blocks, the join into one `bytes`, decryption through pynacl and in
place, and whole segments each way.
"""

from __future__ import annotations

import hashlib
import io
import os
import statistics
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from benchmarks.harness import MB, MIB, emit_json, parser, peak_rss_mib, print_table, seeded_bytes
from node.parallel import ordered_map
from node.sim.procstat import reset_peak, resident_mib
from storage.codec.crypt import SegmentCipher
from storage.codec.encoder import (
    DEFAULT_K,
    DEFAULT_N,
    DEFAULT_SEGMENT_SIZE,
    RecordEncoder,
    SegmentJob,
    read_full,
)
from storage.codec.erasure import ReedSolomon
from storage.codec.padme import padme
from storage.codec.segment import EncodedSegment, SegmentCodec


class PatternStream(io.RawIOBase):
    """`size` bytes of a repeating seeded pattern, generated as read, never held whole."""

    def __init__(self, size: int, pattern: bytes) -> None:
        self._size = size
        self._pattern = pattern * 2
        self._period = len(pattern)
        self.position = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        size = min(size if size >= 0 else self._size, self._size - self.position)
        start = self.position % self._period
        if size <= self._period:
            chunk = self._pattern[start : start + size]
        else:
            whole = self._pattern[start : start + self._period] * (size // self._period + 1)
            chunk = whole[:size]
        self.position += size
        return chunk

    def expected(self, offset: int, size: int) -> bytes:
        start = offset % self._period
        return self._pattern[start : start + size]


def run(size: int, k: int, n: int, segment_size: int, seed: int, *, threads: int) -> dict[str, Any]:
    """Three passes on `threads` worker threads (1: inline, as before).

    Encode streams the record through claim, encode (on the threads) and
    accept in order; decode decodes as many segments as the record has; the
    round trip streams the record through both, checked in order.
    """
    key, record_id = seeded_bytes(32, seed + 1), seeded_bytes(32, seed + 2)
    pattern = seeded_bytes(segment_size + 4093, seed)  # a period that is not a segment size
    lost = min(k, n - k)
    decoder = SegmentCodec(ReedSolomon(k, n), SegmentCipher(key, record_id))
    encode_rates: list[float] = []
    decode_rates: list[float] = []

    def encoded(encoder: RecordEncoder, source: PatternStream) -> Iterator[SegmentJob]:
        for plaintext, last in segments_of(source, segment_size):
            yield from encoder.claim(plaintext, last)

    def encode(encoder: RecordEncoder) -> Callable[[SegmentJob], EncodedSegment]:
        def work(job: SegmentJob) -> EncodedSegment:
            t0 = time.perf_counter()
            segment = encoder.encode_job(job)
            if len(job.plaintext) == segment_size:
                encode_rates.append(segment_size / (time.perf_counter() - t0) / MB)
            return segment

        return work

    def decode(segment: EncodedSegment) -> tuple[EncodedSegment, bytes]:
        t0 = time.perf_counter()
        survivors = {i: segment.blocks[i] for i in range(lost, n)}
        plain = decoder.decode(
            segment.index,
            last=segment.last,
            plain_size=segment.plain_size,
            hashes=segment.hashes,
            get_block=survivors.get,
        )
        if segment.plain_size == segment_size:
            decode_rates.append(segment_size / (time.perf_counter() - t0) / MB)
        return segment, plain

    def new_encoder() -> RecordEncoder:
        return RecordEncoder(
            record_id=record_id, record_key=key, k=k, n=n, segment_size=segment_size
        )

    pool = ThreadPoolExecutor(threads, "pipeline") if threads > 1 else None
    window = threads + 1  # segments in flight per stage: every thread busy, one ready
    try:
        # Encode pass: the manifest is built, blocks are dropped once accepted.
        encoder = new_encoder()
        rss_start = reset_peak(os.getpid())
        t0 = time.perf_counter()
        jobs = encoded(encoder, PatternStream(size, pattern))
        for segment in ordered_map(encode(encoder), jobs, pool=pool, window=window):
            encoder.accept(segment)
        encode_wall = time.perf_counter() - t0
        manifest = encoder.manifest()
        assert manifest.size == padme(size) and encoder.record_size == size
        decode_wall = decode_pass(
            encoded_sample(new_encoder(), PatternStream(size, pattern)),
            manifest.segment_count,
            decode,
            pool,
            window,
        )
        # Round trip: encode and decode on the same threads, checked in order.
        encoder, source = new_encoder(), PatternStream(size, pattern)
        t0 = time.perf_counter()
        segments = ordered_map(encode(encoder), encoded(encoder, source), pool=pool, window=window)
        offset = 0
        for segment, plain in ordered_map(decode, segments, pool=pool, window=window):
            encoder.accept(segment)
            part = max(0, min(segment.plain_size, size - offset))  # the rest is padding
            if plain[:part] != source.expected(offset, part) or plain[part:] != bytes(
                segment.plain_size - part
            ):
                raise SystemExit(f"segment {segment.index} did not round-trip")
            offset += part
        round_trip_wall = time.perf_counter() - t0
        assert offset == size and encoder.manifest() == manifest
    finally:
        if pool is not None:
            pool.shutdown()
    peak = resident_mib(os.getpid())[1]
    return {
        "threads": threads,
        "size_mib": size / MIB,
        "stored_plain_bytes": manifest.size,  # padded (Padmé); rates count the record's bytes
        "stored_bytes": manifest.stored_bytes,
        "k": k,
        "n": n,
        "segment_size": segment_size,
        "segments": manifest.segment_count,
        "encode_mbps_median": round(statistics.median(encode_rates), 1),
        "decode_mbps_median": round(statistics.median(decode_rates), 1),
        "encode_mbps_total": round(size / encode_wall / MB, 1),
        "decode_mbps_total": (
            round(manifest.segment_count * segment_size / decode_wall / MB, 1)
            if decode_wall
            else None
        ),
        "round_trip_mbps": round(size / round_trip_wall / MB, 1),
        "rss_start_mib": round(rss_start, 1),
        "peak_rss_mib": round(peak, 1),
        "manifest_bytes": len(manifest.encode()),
    }


SAMPLE_SEGMENTS = 8
STAGE_REPEATS = 41


def stage_split(k: int, n: int, segment_size: int, seed: int) -> dict[str, float]:
    """Median milliseconds per MiB of plaintext of each step of one segment, one thread."""
    key, record_id = seeded_bytes(32, seed + 1), seeded_bytes(32, seed + 2)
    plaintext = seeded_bytes(segment_size, seed)
    cipher = SegmentCipher(key, record_id)
    code = ReedSolomon(k, n)
    codec = SegmentCodec(code, cipher)
    ciphertext = cipher.encrypt_segment(0, False, plaintext)
    data = code.split(ciphertext)
    length = len(data[0])
    reused = memoryview(bytearray(code.parity_count * length))
    rows = [reused[r * length : (r + 1) * length] for r in range(code.parity_count)]
    segment = codec.encode(0, False, plaintext)
    lost = min(k, n - k)
    survivors = {i: segment.blocks[i] for i in range(lost, n)}
    scratch = bytearray(k * length)
    sealed = memoryview(bytearray(len(ciphertext)))

    opened = memoryview(bytearray(len(ciphertext)))

    def decrypt_in_place() -> None:
        opened[:] = ciphertext
        cipher.decrypt_segment_in_place(0, False, opened)

    def rebuild() -> None:
        code.decode(survivors, len(ciphertext), scratch=scratch)

    steps: dict[str, Callable[[], object]] = {
        "encrypt (pynacl, new bytes)": lambda: cipher.encrypt_segment(0, False, plaintext),
        "encrypt into a reused buffer": lambda: cipher.encrypt_segment_into(
            0, False, plaintext, sealed
        ),
        "rs parity (reused buffer)": lambda: code.parity_into(data, rows),
        "rs parity (fresh buffer)": lambda: code.parity(data),
        "hash n blocks": lambda: [codec.hasher(b) for b in segment.blocks],
        "allocate+touch a segment": lambda: bytearray(segment_size),
        "hash check k blocks": lambda: [codec.hasher(survivors[i]) for i in list(survivors)[:k]],
        f"rs rebuild {lost} + join": rebuild,
        "join k data blocks": lambda: b"".join(segment.blocks[:k]),
        "decrypt (pynacl, new bytes)": lambda: cipher.decrypt_segment(0, False, ciphertext),
        "copy + decrypt in place": decrypt_in_place,
        "whole encode": lambda: codec.encode(0, False, plaintext),
        f"whole decode ({lost} lost)": lambda: codec.decode(
            0,
            last=False,
            plain_size=segment_size,
            hashes=segment.hashes,
            get_block=survivors.get,
        ),
    }
    per_mib = MIB / segment_size
    split: dict[str, float] = {}
    for name, step in steps.items():
        times = []
        for _ in range(STAGE_REPEATS):
            t0 = time.perf_counter()
            step()
            times.append(time.perf_counter() - t0)
        split[name] = round(statistics.median(times) * 1000 * per_mib, 3)
    return split


def encoded_sample(
    encoder: RecordEncoder, source: PatternStream
) -> list[tuple[EncodedSegment, bytes]]:
    """The record's first (up to) SAMPLE_SEGMENTS full segments, encoded, with their plaintext."""
    sample: list[tuple[EncodedSegment, bytes]] = []
    for plaintext, last in segments_of(source, encoder.segment_size):
        if last or len(sample) == SAMPLE_SEGMENTS:
            break
        (job,) = encoder.claim(plaintext, last)
        sample.append((encoder.accept(encoder.encode_job(job)), plaintext))
    return sample


def decode_pass(
    sample: list[tuple[EncodedSegment, bytes]],
    count: int,
    decode: Callable[[EncodedSegment], tuple[EncodedSegment, bytes]],
    pool: ThreadPoolExecutor | None,
    window: int,
) -> float:
    """Seconds to decode `count` segments (the record's number), cycling over the sample:
    the work per segment does not depend on its bytes, and memory stays at the sample."""
    if not sample:  # a record of one segment: decode that one
        return 0.0
    expected = {segment.index: plain for segment, plain in sample}
    work = (sample[i % len(sample)][0] for i in range(count))
    t0 = time.perf_counter()
    for segment, plain in ordered_map(decode, work, pool=pool, window=window):
        if plain != expected[segment.index]:
            raise SystemExit(f"segment {segment.index} did not decode to its plaintext")
    return time.perf_counter() - t0


def segments_of(source: PatternStream, segment_size: int) -> Iterator[tuple[bytes, bool]]:
    """The record's segments and whether each is the last (one read ahead)."""
    current = read_full(source, segment_size)  # type: ignore[arg-type]
    while True:
        full = len(current) == segment_size
        upcoming = read_full(source, segment_size) if full else b""  # type: ignore[arg-type]
        yield current, not upcoming
        if not upcoming:
            return
        current = upcoming


def spare_cores(threads: int, seconds: float = 1.0) -> float:
    """How much faster `threads` threads hash than one, right now: BLAKE2b of 1 MiB
    buffers releases the GIL, so this is the parallelism the shared machine has to
    give (2.0 on two idle cores), to read the pipeline's ratio against."""
    buffer = seeded_bytes(MIB, 0)

    def rate(count: int) -> float:
        stop = time.perf_counter() + seconds
        done = [0] * count

        def spin(slot: int) -> None:
            while time.perf_counter() < stop:
                hashlib.blake2b(buffer)
                done[slot] += 1

        with ThreadPoolExecutor(count) as pool:
            list(pool.map(spin, range(count)))
        return sum(done) / seconds

    return rate(threads) / rate(1)


def main() -> None:
    p = parser(__doc__ or "")
    p.add_argument("--size-mib", type=float, default=1024)
    p.add_argument("-k", type=int, default=DEFAULT_K)
    p.add_argument("-n", type=int, default=DEFAULT_N)
    p.add_argument("--segment-size", type=int, default=DEFAULT_SEGMENT_SIZE)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    args = p.parse_args()
    rss_before = peak_rss_mib()
    split = stage_split(args.k, args.n, args.segment_size, args.seed)
    print(
        f"One thread, ms per MiB of plaintext (median of {STAGE_REPEATS}), k={args.k} n={args.n}:"
    )
    print_table(["step", "ms/MiB"], [[name, ms] for name, ms in split.items()])
    control = spare_cores(max(args.threads))
    runs = [
        run(int(args.size_mib * MIB), args.k, args.n, args.segment_size, args.seed, threads=threads)
        for threads in args.threads
    ]
    print(
        f"Record pipeline, {runs[0]['size_mib']:g} MiB, k={args.k} n={args.n},"
        f" {args.segment_size} B segments; decode drops"
        f" {min(args.k, args.n - args.k)} data blocks per segment; at most threads+1"
        " segments in flight per stage. Decode: the record's count of segments,"
        f" cycling over {SAMPLE_SEGMENTS} encoded ones."
    )
    print_table(
        [
            "threads",
            "encode MB/s",
            "decode MB/s",
            "round trip MB/s",
            "median/segment enc, dec",
            "peak RSS MiB",
        ],
        [
            [
                r["threads"],
                r["encode_mbps_total"],
                r["decode_mbps_total"],
                r["round_trip_mbps"],
                f"{r['encode_mbps_median']}, {r['decode_mbps_median']}",
                r["peak_rss_mib"],
            ]
            for r in runs
        ],
    )
    base, best = runs[0], runs[-1]
    figures = dict(best)
    figures["rss_before_mib"] = round(rss_before, 1)
    figures["control_ratio"] = round(control, 2)
    figures["stage_ms_per_mib"] = split
    figures["runs"] = runs
    if len(runs) > 1:
        for what in ("encode_mbps_total", "decode_mbps_total", "round_trip_mbps"):
            figures[f"{what}_ratio"] = round(best[what] / base[what], 2)
        print(
            f"{best['threads']} threads vs {base['threads']}:"
            f" encode x{figures['encode_mbps_total_ratio']},"
            f" decode x{figures['decode_mbps_total_ratio']},"
            f" round trip x{figures['round_trip_mbps_ratio']}; a GIL-free BLAKE2b control"
            f" gets x{figures['control_ratio']} from {best['threads']} threads on this machine now"
        )
    print(
        f"after imports {figures['rss_before_mib']} MiB; manifest {figures['manifest_bytes']}"
        f" bytes; stored {figures['stored_bytes']} bytes of blocks for"
        f" {figures['stored_plain_bytes']} padded plaintext bytes"
    )
    emit_json(figures, args.json)


if __name__ == "__main__":
    main()
