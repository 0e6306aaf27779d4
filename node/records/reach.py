"""Which nodes can hold a record's shards: the closest to its key that answer, with
their sites and free space.

A put or a repair asks every one of the DHT's k closest nodes (this one
included) for its NodeInfo: a node that does not answer is not counted, so a
put counts the peers it can actually reach, not its routing table. Answers
are cached for a few minutes; a holder that refuses shards (full) is
forgotten at once so the next placement asks it again. A node that failed a
storage proof or an audit is not offered for a day (`DISTRUST_FOR`).

Sites seen are remembered for a day (`SITE_MEMORY`): a hospital that is down
during a put still counts among the network's sites, so a put that could
not spread to it is reported as not surviving a site's loss, and repair
spreads the record once the site is back.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import trio

from node.dht.service import DhtService
from node.net.errors import RpcError
from node.net.rpc_port import RpcPort
from node.records.small_network import SmallNetworkLookups
from protocol.dht.contact import Contact, distance
from protocol.records.messages import GetNodeInfo, NodeInfo
from protocol.records.placement import Candidate

NODE_INFO_TTL = 300.0
DISTRUST_FOR = 86_400.0  # seconds a node that failed a storage proof or audit is passed over
MAX_DISTRUSTED = 4096
SITE_MEMORY = 86_400.0  # seconds a site seen counts among the network's sites
MAX_SITES_REMEMBERED = 4096


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
        self._sites_seen: dict[str, float] = {}  # site (or lone node's key) -> last seen
        self._distrusted: dict[bytes, float] = {}  # node -> when it failed a proof or audit
        # In a certified network a node's site is its certificate's, not what it says.
        self.certified_site: Callable[[bytes], str | None] | None = None
        self.small = SmallNetworkLookups(dht.config.k)

    async def candidates(self, key: bytes, want: int, *, reuse: bool = False) -> list[Reachable]:
        """Reachable nodes closest to `key` (this one included), closest first.

        All of the DHT's k closest are asked, not just the first few beyond
        `want`: a narrower pool can miss a whole site, and site-aware
        placement can only spread over the sites its pool contains. `reuse`
        (a put) takes a small network's last lookup instead of a new one
        (node.records.small_network); repair always looks up.
        """
        closest = await self._closest(key, reuse)
        contacts = sorted([*closest, self.dht.contact], key=lambda c: distance(c.node_id, key))[
            : max(self.dht.config.k, want + 4)
        ]
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
            if c.public_key in infos and not self.distrusted(c.public_key)
        ]

    async def _closest(self, key: bytes, reuse: bool) -> list[Contact]:
        if reuse:
            known = self.small.reusable(self.dht.routing.contacts(), trio.current_time())
            if known is not None:
                return known
        table = self.dht.routing.contacts()
        found = await self.dht.find_node(key)
        self.small.found(found.closest, table, trio.current_time(), failures=found.failures)
        return found.closest

    async def info_of(self, contact: Contact, *, fresh: bool = False) -> NodeInfo | None:
        """A node's site and free space (cached), or None when it does not answer.

        `fresh` asks the node even when an answer is cached (and replaces it, or
        forgets it when the node does not answer).
        """
        cached = self._infos.get(contact.public_key)
        if not fresh and cached is not None and trio.current_time() - cached[1] < NODE_INFO_TTL:
            return cached[0]
        try:
            info = await self.port.call(contact, GetNodeInfo(), self.dht.config.query_timeout)
        except RpcError:
            info = None
        if not isinstance(info, NodeInfo):
            if fresh:
                self.forget(contact.public_key)
            return None
        if self.certified_site is not None:  # what it says of its site is not believed
            certified = self.certified_site(contact.public_key)
            site = certified or f"uncertified-{contact.public_key.hex()[:16]}"
            info = NodeInfo(site, info.free_bytes)
        now = trio.current_time()
        self._infos[contact.public_key] = (info, now)
        self._sites_seen[info.site or contact.public_key.hex()] = now
        if len(self._sites_seen) > MAX_SITES_REMEMBERED:  # members may claim any site
            oldest = min(self._sites_seen, key=self._sites_seen.__getitem__)
            del self._sites_seen[oldest]
        return info

    async def refresh_sites(self, at_once: int = 16) -> int:
        """Ask every routing-table contact its site (answers cached): the sites known."""
        limiter = trio.CapacityLimiter(at_once)

        async def ask(contact: Contact) -> None:
            async with limiter:
                await self.info_of(contact)

        async with trio.open_nursery() as nursery:
            for contact in self.dht.routing.contacts():
                nursery.start_soon(ask, contact)
        return self.known_sites()

    def known_sites(self) -> int:
        """Sites that answered within SITE_MEMORY (a node with no site is a site of its own)."""
        now = trio.current_time()
        return sum(1 for seen in self._sites_seen.values() if now - seen < SITE_MEMORY)

    async def site_of(self, contact: Contact, *, fresh: bool = False) -> str | None:
        """A node's site, or None when it does not answer (`fresh`: see info_of)."""
        info = await self.info_of(contact, fresh=fresh)
        return None if info is None else info.site

    def distrust(self, public_key: bytes) -> None:
        """A node failed a storage proof or an audit: no shards go to it for a while."""
        self._distrusted[public_key] = trio.current_time()
        self.small.forget()
        if len(self._distrusted) > MAX_DISTRUSTED:
            oldest = min(self._distrusted, key=self._distrusted.__getitem__)
            del self._distrusted[oldest]

    def distrusted(self, public_key: bytes) -> bool:
        since = self._distrusted.get(public_key)
        if since is not None and trio.current_time() - since >= DISTRUST_FOR:
            del self._distrusted[public_key]
            since = None
        return since is not None

    def forget(self, public_key: bytes) -> None:
        """What a node said of itself is stale (it refused shards, or failed): ask again
        next time, and look the network up again."""
        self._infos.pop(public_key, None)
        self.small.forget()
