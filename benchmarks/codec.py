"""Erasure codec throughput: ours against zfec and pyeclib on the same data.

    python -m benchmarks.codec [--segment-size BYTES] [--repeat N] [--json]

Encode and worst-case decode MB/s (segment bytes per second, single thread)
for each (k, n). Worst case: as many data shards lost as the code allows, so
decoding must rebuild them from parity. zfec and pyeclib are measured in the
same process when installed (`pip install -e '.[bench]'`); every codec's
output is checked before it is timed.

Encode is timed in the form the record pipeline uses: segment in, n shard
buffers out, data shards as views (ours: split + parity; zfec: encode of
pre-split views, its split not timed). `encode()`, which returns n fresh
`bytes` objects, is shown as a separate row: the copies are most of its
extra cost on this machine.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from benchmarks.harness import MB, emit_json, median_seconds, parser, print_table, seeded_bytes
from storage.codec.erasure import ReedSolomon

GRID = [(4, 6), (10, 14), (16, 20)]
Timer = Callable[[Callable[[], object]], float]


def _ours(k: int, n: int, data: bytes, lost: int, timer: Timer) -> tuple[float, float | None]:
    code = ReedSolomon(k, n)
    shards = code.encode(data)
    survivors = {i: shards[i] for i in range(lost, n)}
    assert code.decode(survivors, len(data)) == data
    assert [bytes(p) for p in code.parity(code.split(data))] == shards[k:]
    return (
        timer(lambda: code.parity(code.split(data))),
        timer(lambda: code.decode(survivors, len(data))),
    )


def _ours_bytes_api(k: int, n: int, data: bytes, timer: Timer) -> tuple[float, float | None]:
    code = ReedSolomon(k, n)
    return timer(lambda: code.encode(data)), None


def _zfec(
    k: int, n: int, data: bytes, lost: int, timer: Timer
) -> tuple[float, float | None] | None:
    try:
        import zfec  # noqa: PLC0415 - optional comparison codec
    except ImportError:
        return None
    blocks = ReedSolomon(k, n).split(data)
    encoder, decoder = zfec.Encoder(k, n), zfec.Decoder(k, n)
    shares = encoder.encode(blocks)
    nums = list(range(lost, n))[:k]
    chosen = [shares[i] for i in nums]
    assert b"".join(decoder.decode(chosen, nums))[: len(data)] == data

    # zfec is timed on pre-split blocks while ours includes the split: conservative.
    return timer(lambda: encoder.encode(blocks)), timer(lambda: decoder.decode(chosen, nums))


def _pyeclib(
    k: int, n: int, data: bytes, lost: int, timer: Timer, *, backend: str
) -> tuple[float, float | None] | None:
    try:
        from pyeclib.ec_iface import ECDriver  # noqa: PLC0415 - optional
    except ImportError:
        return None
    try:
        driver = ECDriver(k=k, m=n - k, ec_type=backend)
    except Exception:  # backend not built into this wheel
        return None
    fragments = driver.encode(data)
    survivors = fragments[lost:]
    assert driver.decode(survivors) == data
    return timer(lambda: driver.encode(data)), timer(lambda: driver.decode(survivors))


def _ours_times(results: dict[str, tuple[float, float | None] | None]) -> tuple[float, float]:
    ours = results["medvault"]
    assert ours is not None and ours[1] is not None
    return ours[0], ours[1]


def main() -> None:
    p = parser(__doc__ or "")
    p.add_argument("--segment-size", type=int, default=1024 * 1024)
    p.add_argument("--repeat", type=int, default=15)
    args = p.parse_args()
    data = seeded_bytes(args.segment_size, args.seed)
    size = len(data)

    def timer(fn: Callable[[], object]) -> float:
        return median_seconds(fn, args.repeat)

    rows: list[list[Any]] = []
    figures: dict[str, Any] = {"segment_size": size, "repeat": args.repeat}
    for k, n in GRID:
        lost = min(k, n - k)
        results: dict[str, tuple[float, float | None] | None] = {
            "medvault": _ours(k, n, data, lost, timer),
            "medvault encode()->bytes": _ours_bytes_api(k, n, data, timer),
            "zfec": _zfec(k, n, data, lost, timer),
            "pyeclib-liberasurecode": _pyeclib(
                k, n, data, lost, timer, backend="liberasurecode_rs_vand"
            ),
            "pyeclib-isal": _pyeclib(k, n, data, lost, timer, backend="isa_l_rs_vand"),
        }
        ours_enc, ours_dec = _ours_times(results)
        for name, timing in results.items():
            if timing is None:
                rows.append([f"{k}/{n}", name, None, None, None, None])
                continue
            key = name.split()[0] if " " not in name else "medvault_bytes_api"
            enc = size / timing[0] / MB
            figures[f"{key}_{k}_{n}_encode_mbps"] = round(enc, 1)
            if timing[1] is None:
                rows.append([f"{k}/{n}", name, enc, None, timing[0] / ours_enc, None])
                continue
            dec = size / timing[1] / MB
            figures[f"{key}_{k}_{n}_decode_mbps"] = round(dec, 1)
            rows.append([f"{k}/{n}", name, enc, dec, timing[0] / ours_enc, timing[1] / ours_dec])
        zfec_times = results["zfec"]
        if zfec_times is not None and zfec_times[1] is not None:
            figures[f"ratio_{k}_{n}_encode_vs_zfec"] = round(zfec_times[0] / ours_enc, 2)
            figures[f"ratio_{k}_{n}_decode_vs_zfec"] = round(zfec_times[1] / ours_dec, 2)
    print(f"Erasure codec, {size} B segments, median of {args.repeat}, single thread;")
    print("decode loses min(k, n-k) data shards. 'x ours' = our speed / theirs.\n")
    print_table(["k/n", "codec", "encode MB/s", "decode MB/s", "enc x ours", "dec x ours"], rows)
    emit_json(figures, args.json)


if __name__ == "__main__":
    main()
