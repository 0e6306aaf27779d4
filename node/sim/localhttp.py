"""The HTTP API of real local daemons (node.sim.localnet), for e2e tests and benchmarks.

A node is given a free 127.0.0.1 port and a token before it starts; record
bodies go up as a generator (httpx streams it, never holding the record) and
come down hashed chunk by chunk, so a test or a benchmark of a 1 GiB record
holds a chunk at a time, like the daemon should.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import httpx
import numpy as np

from node.sim.localnet import Network, configure, free_ports

MIB = 1024 * 1024


@dataclass(frozen=True)
class HttpEndpoint:
    """Where a daemon's HTTP API listens, and a token for it."""

    url: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def serve_http(net: Network, index: int, scope: str = "write", name: str = "test") -> HttpEndpoint:
    """Before node `index` starts: an [http] listen address and a token of `scope`."""
    (port,) = free_ports(1)
    node = net.nodes[index]
    configure(node.data_dir / "config.toml", {"http": {"listen": f"127.0.0.1:{port}"}})
    made = net.cli(index, "http", "token", "new", "--name", name, "--scope", scope)
    return HttpEndpoint(f"http://127.0.0.1:{port}", str(made["token"]))


def seeded_chunks(size: int, seed: int, chunk: int = MIB) -> Iterator[bytes]:
    """`size` seeded random bytes as chunks, generated as they are taken."""
    rng = np.random.default_rng(seed)
    for start in range(0, size, chunk):
        yield rng.bytes(min(chunk, size - start))


class Hashed:
    """An iterable of chunks, hashed and counted as it is consumed."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = chunks
        self.hash = hashlib.sha256()
        self.size = 0

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._chunks:
            self.hash.update(chunk)
            self.size += len(chunk)
            yield chunk

    def hexdigest(self) -> str:
        return self.hash.hexdigest()


def put(
    client: httpx.Client,
    endpoint: HttpEndpoint,
    chunks: Iterable[bytes],
    size: int,
    grant: str = "",
) -> tuple[str, float]:
    """POST /v1/records streamed from `chunks` (`size` bytes); (record id, seconds)."""
    headers = endpoint.headers | {
        "Content-Type": "application/octet-stream",
        "Content-Length": str(size),
    }
    params = {"grant": grant} if grant else {}
    started = time.perf_counter()
    reply = client.post(
        f"{endpoint.url}/v1/records", content=iter(chunks), headers=headers, params=params
    )
    elapsed = time.perf_counter() - started
    if reply.status_code != 201:
        raise AssertionError(f"HTTP put answered {reply.status_code}: {reply.text[:500]}")
    return str(reply.json()["record_id"]), elapsed


def get(client: httpx.Client, endpoint: HttpEndpoint, record_id: str) -> tuple[str, int, float]:
    """GET /v1/records/{id} streamed into a hash; (sha256 hex, size, seconds)."""
    digest = hashlib.sha256()
    size = 0
    started = time.perf_counter()
    with client.stream(
        "GET", f"{endpoint.url}/v1/records/{record_id}", headers=endpoint.headers
    ) as reply:
        if reply.status_code != 200:
            reply.read()
            raise AssertionError(f"HTTP get answered {reply.status_code}: {reply.text[:500]}")
        for chunk in reply.iter_bytes():
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size, time.perf_counter() - started
