"""Long-budget fuzzing of everything that parses bytes from a peer.

    python -m benchmarks.fuzz [--examples 20000] [--json]                 # Hypothesis
    python -m benchmarks.fuzz --engine atheris [--runs 200000] [--json]   # coverage-guided

Each target feeds arbitrary bytes (split into arbitrary chunks for stream
machines) into one parser; the only exception allowed out is the parser's
own "the peer sent garbage" error (RemoteProtocolError; ManifestError for
manifests). Anything else is a finding and fails the run. The test suite runs
the same properties with a small fixed budget; this is the long one.
Atheris needs `pip install atheris` and runs each target in a subprocess.
"""

from __future__ import annotations

import contextlib
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nacl.signing

from benchmarks.harness import emit_json, parser, print_table
from protocol.errors import RemoteProtocolError
from protocol.net.boxstream import BoxReader
from protocol.net.handshake import ClientHandshake, ServerHandshake
from protocol.net.messages import decode_envelope
from protocol.net.wire import FrameDecoder
from storage.codec.manifest import Manifest
from storage.errors import ManifestError

REPO = Path(__file__).resolve().parents[1]
KEY = b"k" * 32
SERVER = nacl.signing.SigningKey(b"s" * 32)
CLIENT = nacl.signing.SigningKey(b"c" * 32)


def _chunks(data: bytes) -> list[bytes]:
    """Split fuzz input into stream reads: each chunk is prefixed by its length byte."""
    out, position = [], 0
    while position < len(data):
        size = data[position] + 1
        out.append(data[position + 1 : position + 1 + size])
        position += 1 + size
    return out


def handshake_server(data: bytes) -> None:
    machine = ServerHandshake(KEY, SERVER, b"e" * 32)
    for chunk in _chunks(data):
        machine.receive_data(chunk)


def handshake_client(data: bytes) -> None:
    machine = ClientHandshake(KEY, CLIENT, bytes(SERVER.verify_key), b"e" * 32)
    machine.start()
    for chunk in _chunks(data):
        machine.receive_data(chunk)


def boxstream(data: bytes) -> None:
    reader = BoxReader(KEY, b"n" * 24)
    for chunk in _chunks(data):
        reader.feed(chunk)


def frames(data: bytes) -> None:
    decoder = FrameDecoder(max_size=4096)
    for chunk in _chunks(data):
        for payload in decoder.feed(chunk):
            decode_envelope(payload)


def envelope(data: bytes) -> None:
    decode_envelope(data)


def manifest(data: bytes) -> None:
    try:
        Manifest.decode(data)
    except ManifestError as exc:
        raise RemoteProtocolError(str(exc)) from None


TARGETS: dict[str, Callable[[bytes], None]] = {
    "handshake-server": handshake_server,
    "handshake-client": handshake_client,
    "boxstream": boxstream,
    "frames+envelopes": frames,
    "envelope": envelope,
    "manifest": manifest,
}


def run_one(target: Callable[[bytes], None], data: bytes) -> None:
    with contextlib.suppress(RemoteProtocolError):
        target(data)


def fuzz_hypothesis(name: str, examples: int) -> dict[str, Any]:
    from hypothesis import HealthCheck, given, settings  # noqa: PLC0415 - test extra
    from hypothesis import strategies as st  # noqa: PLC0415

    target = TARGETS[name]
    count = 0

    @settings(
        max_examples=examples,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(st.binary(max_size=2048))
    def prop(data: bytes) -> None:
        nonlocal count
        count += 1
        run_one(target, data)

    start = time.perf_counter()
    prop()
    return {"target": name, "inputs": count, "seconds": round(time.perf_counter() - start, 1)}


def atheris_child(name: str, runs: int) -> None:
    """Runs in its own process: libFuzzer exits the process when done."""
    import atheris  # noqa: PLC0415 - optional

    target = TARGETS[name]
    atheris.instrument_all()
    atheris.Setup(
        [sys.argv[0], f"-runs={runs}", "-max_len=2048", "-print_final_stats=1"],
        lambda data: run_one(target, data),
    )
    atheris.Fuzz()


def fuzz_atheris(name: str, runs: int) -> dict[str, Any]:
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.fuzz", "--atheris-child", name, "--runs", str(runs)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    done = re.search(r"Done (\d+) runs", result.stderr)
    if result.returncode != 0 or done is None:
        raise SystemExit(f"atheris found a failure in {name}:\n{result.stderr[-3000:]}")
    coverage = re.findall(r"cov: (\d+)", result.stderr)
    return {
        "target": name,
        "inputs": int(done.group(1)),
        "seconds": round(time.perf_counter() - start, 1),
        "coverage": int(coverage[-1]) if coverage else None,
    }


def main() -> None:
    p = parser(__doc__ or "")
    p.add_argument("--engine", choices=["hypothesis", "atheris"], default="hypothesis")
    p.add_argument("--examples", type=int, default=20_000, help="Hypothesis inputs per target")
    p.add_argument("--runs", type=int, default=200_000, help="atheris inputs per target")
    p.add_argument("--target", choices=sorted(TARGETS), action="append")
    p.add_argument("--atheris-child", choices=sorted(TARGETS), help=argparse_suppress())
    args = p.parse_args()
    if args.atheris_child:
        atheris_child(args.atheris_child, args.runs)
        return
    names = args.target or list(TARGETS)
    if args.engine == "atheris":
        results = [fuzz_atheris(name, args.runs) for name in names]
    else:
        results = [fuzz_hypothesis(name, args.examples) for name in names]
    print(f"Fuzzing with {args.engine}: every input raised only the protocol's own error.")
    print_table(
        ["target", "inputs", "seconds", "coverage"],
        [[r["target"], r["inputs"], r["seconds"], r.get("coverage")] for r in results],
    )
    emit_json(
        {
            "engine": args.engine,
            "total_inputs": sum(r["inputs"] for r in results),
            **{f"{r['target']}_inputs": r["inputs"] for r in results},
        },
        args.json,
    )


def argparse_suppress() -> str:
    import argparse  # noqa: PLC0415

    return argparse.SUPPRESS


if __name__ == "__main__":
    main()
