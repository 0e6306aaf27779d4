"""Which nodes can hold a record's shards: the closest to its key that answer, with
their sites and free space.

A put or a repair asks every one of the DHT's k closest nodes (this one
included) for its NodeInfo: a node that does not answer is not counted, so a
put counts the peers it can actually reach, not its routing table. Answers
are cached for a few minutes; a holder that refuses shards (full) is
forgotten at once so the next placement asks it again.
"""

from __future__ import annotations

from dataclasses import dataclass

import trio

from node.dht.service import DhtService
from node.net.errors import RpcError
from node.net.rpc_port import RpcPort
from protocol.dht.contact import Contact, distance
from protocol.records.messages import GetNodeInfo, NodeInfo
from protocol.records.placement import Candidate

NODE_INFO_TTL = 300.0


@dataclass(frozen=True)
class Reachable:
    contact: Contact
    site: str
    free: int

    def candidate(self) -> Candidate[bytes]:
        return Candidate(self.contact.public_key, self.site, self.free)


class Reach:
    def __init__(self, *, dht: DhtService, port: RpcPort) -> None:
        self.dht = dht
        self.port = port
        self._infos: dict[bytes, tuple[NodeInfo, float]] = {}

    async def candidates(self, key: bytes, want: int) -> list[Reachable]:
        """Reachable nodes closest to `key` (this one included), closest first.

        All of the DHT's k closest are asked, not just the first few beyond
        `want`: a narrower pool can miss a whole site, and site-aware
        placement can only spread over the sites its pool contains.
        """
        found = await self.dht.find_node(key)
        contacts = sorted(
            [*found.closest, self.dht.contact], key=lambda c: distance(c.node_id, key)
        )[: max(self.dht.config.k, want + 4)]
        infos: dict[bytes, NodeInfo] = {}

        async def ask(contact: Contact) -> None:
            info = await self.info_of(contact)
            if info is not None:
                infos[contact.public_key] = info

        async with trio.open_nursery() as nursery:
            for contact in contacts:
                nursery.start_soon(ask, contact)
        return [
            Reachable(c, infos[c.public_key].site, infos[c.public_key].free_bytes)
            for c in contacts
            if c.public_key in infos
        ]

    async def info_of(self, contact: Contact) -> NodeInfo | None:
        """A node's site and free space (cached), or None when it does not answer."""
        cached = self._infos.get(contact.public_key)
        if cached is not None and trio.current_time() - cached[1] < NODE_INFO_TTL:
            return cached[0]
        try:
            info = await self.port.call(contact, GetNodeInfo(), self.dht.config.query_timeout)
        except RpcError:
            return None
        if not isinstance(info, NodeInfo):
            return None
        self._infos[contact.public_key] = (info, trio.current_time())
        return info

    async def site_of(self, contact: Contact) -> str | None:
        info = await self.info_of(contact)
        return None if info is None else info.site

    def forget(self, public_key: bytes) -> None:
        """What a node said of itself is stale (it refused shards): ask again next time."""
        self._infos.pop(public_key, None)
