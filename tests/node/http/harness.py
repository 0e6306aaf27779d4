"""A cluster node's HTTP API, called in memory (httpx's ASGI transport: no sockets)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import trio

from node.assembly import Node
from node.config.http import HttpConfig
from node.control.ops import ControlOps
from node.http.service import node_api
from node.http.tokens import Scope, TokenStore
from tests.node.cluster import Cluster, small_config


@dataclass
class Api:
    cluster: Cluster
    root: Path
    clients: list[httpx.AsyncClient]
    tokens: list[TokenStore]

    @property
    def nodes(self) -> list[Node]:
        return self.cluster.nodes

    def token(self, index: int, name: str, scope: Scope) -> dict[str, str]:
        """Headers with a new token of `scope` for node `index`."""
        _, text = self.tokens[index].new(name, scope)
        return {"Authorization": f"Bearer {text}"}


@asynccontextmanager
async def api_cluster(
    tmp_path: Path, count: int = 6, served: int = 2, config: HttpConfig | None = None
) -> AsyncIterator[Api]:
    """`count` nodes on the memory transport; the first `served` have an HTTP API."""
    cluster = Cluster(tmp_path)
    async with trio.open_nursery() as nursery:
        await cluster.add_many(nursery, count, small_config())
        clients, stores = [], []
        for index, node in enumerate(cluster.nodes[:served]):
            root = tmp_path / f"http{index}"
            root.mkdir()
            ops = ControlOps(node, started=trio.current_time())
            app = node_api(node, root, config or HttpConfig(listen="127.0.0.1:0"), ops)
            transport = httpx.ASGITransport(app=app)
            clients.append(httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1"))
            stores.append(TokenStore(root))
        try:
            yield Api(cluster, tmp_path, clients, stores)
        finally:
            for client in clients:
                await client.aclose()
            nursery.cancel_scope.cancel()
