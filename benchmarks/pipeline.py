"""A whole record through the data path and back, with bounded memory.

    python -m benchmarks.pipeline [--size-mib 1024] [-k 4 -n 8] [--segment-size B] [--json]

The record streams from a generated source through the RecordEncoder
(read, encrypt, erasure-code, hash every block); each segment is then decoded
straight back from a worst-case subset of its blocks (the first min(k, n-k)
data blocks dropped, so parity must be used; every used block's hash checked,
then decrypted) and compared with the source (the padding up to the Padmé
size, manifest version 2, with zeros). Segments are not kept, so the
peak RSS shows the streaming bound. Figures: median per-segment MB/s of
plaintext for each direction, whole-run MB/s, and peak RSS.
"""

from __future__ import annotations

import io
import statistics
import time
from typing import Any

from benchmarks.harness import MB, MIB, emit_json, parser, peak_rss_mib, print_table, seeded_bytes
from storage.codec.crypt import SegmentCipher
from storage.codec.encoder import DEFAULT_K, DEFAULT_N, DEFAULT_SEGMENT_SIZE, RecordEncoder
from storage.codec.erasure import ReedSolomon
from storage.codec.padme import padme
from storage.codec.segment import SegmentCodec


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


def run(size: int, k: int, n: int, segment_size: int, seed: int) -> dict[str, Any]:
    key, record_id = seeded_bytes(32, seed + 1), seeded_bytes(32, seed + 2)
    # A pattern period that is not a multiple of the segment size.
    source = PatternStream(size, seeded_bytes(segment_size + 4093, seed))
    encoder = RecordEncoder(
        record_id=record_id, record_key=key, k=k, n=n, segment_size=segment_size
    )
    decoder = SegmentCodec(ReedSolomon(k, n), SegmentCipher(key, record_id))
    lost = min(k, n - k)
    encode_rates, decode_rates = [], []
    encode_total = decode_total = 0.0
    offset = 0
    segments = iter(encoder.encode(source))  # type: ignore[arg-type]
    start_run = time.perf_counter()
    while True:
        t0 = time.perf_counter()
        segment = next(segments, None)
        t1 = time.perf_counter()
        if segment is None:
            break
        survivors = {i: segment.blocks[i] for i in range(lost, n)}
        plain = decoder.decode(
            segment.index,
            last=segment.last,
            plain_size=segment.plain_size,
            hashes=segment.hashes,
            get_block=survivors.get,
        )
        t2 = time.perf_counter()
        part = max(0, min(segment.plain_size, size - offset))  # the rest is padding
        if plain[:part] != source.expected(offset, part) or plain[part:] != bytes(
            segment.plain_size - part
        ):
            raise SystemExit(f"segment {segment.index} did not round-trip")
        offset += part
        encode_total += t1 - t0
        decode_total += t2 - t1
        if segment.plain_size == segment_size:
            encode_rates.append(segment_size / (t1 - t0) / MB)
            decode_rates.append(segment_size / (t2 - t1) / MB)
    wall = time.perf_counter() - start_run
    manifest = encoder.manifest()
    assert manifest.size == padme(size) and encoder.record_size == size == offset
    return {
        "size_mib": size / MIB,
        "stored_plain_bytes": manifest.size,  # padded (Padmé); rates count the record's bytes
        "stored_bytes": manifest.stored_bytes,
        "k": k,
        "n": n,
        "segment_size": segment_size,
        "segments": manifest.segment_count,
        "encode_mbps_median": round(statistics.median(encode_rates), 1),
        "decode_mbps_median": round(statistics.median(decode_rates), 1),
        "encode_mbps_total": round(size / encode_total / MB, 1),
        "decode_mbps_total": round(size / decode_total / MB, 1),
        "round_trip_mbps": round(size / wall / MB, 1),
        "peak_rss_mib": round(peak_rss_mib(), 1),
        "manifest_bytes": len(manifest.encode()),
    }


def main() -> None:
    p = parser(__doc__ or "")
    p.add_argument("--size-mib", type=float, default=1024)
    p.add_argument("-k", type=int, default=DEFAULT_K)
    p.add_argument("-n", type=int, default=DEFAULT_N)
    p.add_argument("--segment-size", type=int, default=DEFAULT_SEGMENT_SIZE)
    args = p.parse_args()
    rss_before = peak_rss_mib()
    figures = run(int(args.size_mib * MIB), args.k, args.n, args.segment_size, args.seed)
    figures["rss_before_mib"] = round(rss_before, 1)
    print(
        f"Record pipeline, {figures['size_mib']:.0f} MiB, k={args.k} n={args.n},"
        f" {args.segment_size} B segments, single thread; decode drops"
        f" {min(args.k, args.n - args.k)} data blocks per segment."
    )
    print_table(
        ["direction", "median MB/s", "whole-run MB/s"],
        [
            [
                "encode (read+encrypt+RS+hash)",
                figures["encode_mbps_median"],
                figures["encode_mbps_total"],
            ],
            [
                "decode (verify+RS+decrypt)",
                figures["decode_mbps_median"],
                figures["decode_mbps_total"],
            ],
        ],
    )
    print(
        f"round trip {figures['round_trip_mbps']} MB/s; peak RSS {figures['peak_rss_mib']} MiB"
        f" (after imports {figures['rss_before_mib']} MiB);"
        f" manifest {figures['manifest_bytes']} bytes; stored {figures['stored_bytes']} bytes"
        f" of blocks for {figures['stored_plain_bytes']} padded plaintext bytes"
    )
    emit_json(figures, args.json)


if __name__ == "__main__":
    main()
