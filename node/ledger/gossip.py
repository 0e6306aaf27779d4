"""Gossip replication of the ledger over the node's RPC port.

Two mechanisms:
- push: entries new to this node (written here or received) go at once to
  `push_fanout` random peers, not back to the one they came from. Read
  statements (access entries) alone wait for the next round's push: a get
  logs its statement as it starts, and pushed at once it landed on every
  holder (each ingesting it, then pushing it on) exactly while they served
  that get's blocks. The holders have the statement in the read's permit
  anyway; the ledger needs it soon, not within milliseconds. A later entry
  of the same author takes the held ones along (a feed arrives in order);
  at most MAX_HELD are held, beyond it the oldest go at once;
- anti-entropy: every `interval` the node sends its feed heads to `fanout`
  random peers; both sides pull, in bounded batches, what the other has
  beyond their own heads. Lost messages and partitions are repaired by the
  next rounds.

The decisions (which ranges, which peers) are `protocol.ledger.gossip`'s.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import trio

from node.config.gossip import GossipConfig
from node.ledger.service import LedgerService
from node.net.dispatch import Dispatcher
from node.net.errors import RequestError, RpcError
from node.net.rpc_port import Caller, RpcPort
from protocol.dht.contact import Contact, ContactInfo
from protocol.ledger.entries import Entry, EntryType, entry_hash
from protocol.ledger.gossip import heads_message, lag, missing_ranges, pick
from protocol.ledger.messages import (
    EntriesFound,
    FeedHead,
    GetEntries,
    LedgerHeads,
    LedgerHeadsReply,
    PushAck,
    PushEntries,
)
from protocol.net.messages import ErrorCode

MAX_HELD = 1024  # access entries waiting for the next round's push


@dataclass
class GossipStats:
    rounds: int = 0
    exchanges: int = 0
    pulled: int = 0
    pushed: int = 0
    failures: int = 0
    received: int = 0  # entries peers sent (pulled or pushed)
    accepted: int = 0  # of those, entries new to this ledger and valid


class GossipService:
    def __init__(
        self,
        *,
        ledger: LedgerService,
        port: RpcPort,
        me: Callable[[], ContactInfo],
        peers: Callable[[], Sequence[Contact]],
        rng: random.Random,
        config: GossipConfig | None = None,
        heard: Callable[[Contact], None] | None = None,
    ) -> None:
        self.ledger = ledger
        self.heard = heard  # told of every peer that gossips with us (the DHT learns it)
        self.port = port
        self.me = me
        self.peers = peers
        self.rng = rng
        self.config = config or GossipConfig()
        self.stats = GossipStats()
        self._nursery: trio.Nursery | None = None
        self._arrived_from: dict[bytes, bytes] = {}
        # Peer -> (entries it has beyond us, entries we have beyond it), as of the last
        # heads it showed after our pull; kept for routing-table contacts only.
        self.lag: dict[bytes, tuple[int, int]] = {}
        # Access entries held for the next round's push, with the peer each came from.
        self._held: list[tuple[bytes | None, Entry]] = []
        ledger.subscribe(self._on_new)

    def install(self, dispatcher: Dispatcher) -> None:
        dispatcher.route(LedgerHeads, self._on_heads)
        dispatcher.route(GetEntries, self._on_get_entries)
        dispatcher.route(PushEntries, self._on_push)

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            self._round(nursery)  # a node that joins or restarts catches up at once
            await trio.sleep(self.rng.random() * self.config.interval)  # desynchronise rounds
            while True:
                self._round(nursery)
                await trio.sleep(self.config.interval)

    def _round(self, nursery: trio.Nursery) -> None:
        self.stats.rounds += 1
        peers = self.peers()
        current = {p.public_key for p in peers}
        for gone in [key for key in self.lag if key not in current]:  # left the table
            del self.lag[gone]
        held, self._held = self._held, []
        self._push_batches(held)
        for peer in pick(peers, self.config.fanout, self.rng):
            nursery.start_soon(self.exchange, peer)

    # -- anti-entropy -------------------------------------------------------

    async def exchange(self, peer: Contact) -> None:
        """Compare heads with `peer` and pull what it has beyond ours."""
        self.stats.exchanges += 1
        heads = heads_message(self.ledger.book.heads())
        try:
            reply = await self.port.call(
                peer, LedgerHeads(self.me(), heads), self.config.call_timeout
            )
        except RpcError:
            self.stats.failures += 1
            return
        if isinstance(reply, LedgerHeadsReply):
            await self._pull_and_hear(peer, reply.heads)

    async def _pull_and_hear(self, peer: Contact, heads: Sequence[FeedHead]) -> None:
        """Pull what `peer` has beyond us, then let the ledger judge its own feed by it."""
        await self._pull(peer, heads)
        peers = self.peers()
        if any(p.public_key == peer.public_key for p in peers):  # bounded by the table
            self.lag[peer.public_key] = lag(self.ledger.book.heads(), heads)
        self.ledger.heard_heads(peer.public_key, heads, len(peers))

    async def _pull(self, peer: Contact, heads: Sequence[FeedHead]) -> None:
        config = self.config
        book = self.ledger.book
        ranges = missing_ranges(
            book.heads(),
            heads,
            batch=config.batch,
            budget=config.budget,
            orphan_floors=book.orphan_floors(),
            frozen=book.frozen,
        )
        if not ranges:
            return
        try:
            reply = await self.port.call(peer, GetEntries(tuple(ranges)), config.call_timeout)
        except RpcError:
            self.stats.failures += 1
            return
        if isinstance(reply, EntriesFound):
            self._remember_source(reply.entries, peer.public_key)
            accepted = len(await self.ledger.ingest(reply.entries))
            self.stats.pulled += accepted
            self.stats.received += len(reply.entries)
            self.stats.accepted += accepted

    # -- push -------------------------------------------------------------------

    def _on_new(self, entries: list[Entry]) -> None:
        """Push entries new to this node onward, not back where they came from; hold
        a batch of read statements only for the next round."""
        if self._nursery is None:
            return
        arrived = [(self._arrived_from.pop(e.hash, None), e) for e in entries]
        if all(e.type is EntryType.ACCESS for _, e in arrived):
            self._held += arrived
            overflow = len(self._held) - MAX_HELD
            if overflow > 0:
                self._push_batches(self._held[:overflow])
                del self._held[:overflow]
            return
        authors = {e.author for e in entries}
        earlier = [(s, e) for s, e in self._held if e.author in authors]
        if not earlier:
            self._push_batches(arrived)
            return
        self._held = [(s, e) for s, e in self._held if e.author not in authors]
        together = earlier + arrived  # one batch: the feed's held entries first
        self._push_to(
            tuple(e.raw for _, e in together), exclude={s for s, _ in together if s is not None}
        )

    def _push_batches(self, arrived: Sequence[tuple[bytes | None, Entry]]) -> None:
        """Each source's entries, in order, to peers other than that source."""
        by_source: dict[bytes | None, list[bytes]] = {}
        for source, entry in arrived:
            by_source.setdefault(source, []).append(entry.raw)
        for source, raws in by_source.items():
            self._push_to(tuple(raws), exclude=set() if source is None else {source})

    def _push_to(self, raws: tuple[bytes, ...], exclude: set[bytes]) -> None:
        if self._nursery is None or not raws:
            return
        candidates = [p for p in self.peers() if p.public_key not in exclude]
        for peer in pick(candidates, self.config.push_fanout, self.rng):
            self._nursery.start_soon(self._push, peer, raws)

    async def _push(self, peer: Contact, raws: tuple[bytes, ...]) -> None:
        self.stats.pushed += len(raws)
        try:
            await self.port.call(peer, PushEntries(raws), self.config.call_timeout)
        except RpcError:
            self.stats.failures += 1

    def _remember_source(self, raws: Sequence[bytes], source: bytes) -> None:
        for raw in raws:
            self._arrived_from[entry_hash(raw)] = source
        while len(self._arrived_from) > 10_000:
            self._arrived_from.pop(next(iter(self._arrived_from)))

    # -- handlers -----------------------------------------------------------------

    async def _on_heads(self, message: LedgerHeads, caller: Caller) -> LedgerHeadsReply:
        if message.sender.public_key != caller.remote_public_key:
            raise RequestError(
                ErrorCode.BAD_REQUEST, "sender key differs from the connection's key"
            )
        sender = Contact.from_info(message.sender)
        if self.heard is not None:
            self.heard(sender)
        if self._nursery is not None:  # the caller may be ahead of us: pull too
            self._nursery.start_soon(self._pull_and_hear, sender, message.heads)
        return LedgerHeadsReply(heads_message(self.ledger.book.heads()))

    async def _on_get_entries(self, message: GetEntries, caller: Caller) -> EntriesFound:
        budget = self.config.budget
        raws: list[bytes] = []
        for wanted in message.ranges:
            if len(raws) >= budget:
                break
            raws += self.ledger.book.range(
                wanted.author, wanted.first, wanted.last, budget - len(raws)
            )
        return EntriesFound(tuple(raws))

    async def _on_push(self, message: PushEntries, caller: Caller) -> PushAck:
        self._remember_source(message.entries, caller.remote_public_key)
        offered = message.entries[: self.config.budget]
        accepted = len(await self.ledger.ingest(offered))
        self.stats.received += len(offered)
        self.stats.accepted += accepted
        return PushAck(accepted)
