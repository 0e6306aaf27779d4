"""Sans-IO Kademlia routing table over the kademlia package's `KBucket`.

The table never pings anyone: when a contact arrives for a full bucket it
answers `BucketFull(oldest)`, keeps the newcomer in the bucket's replacement
cache, and the service pings `oldest`; a failed ping is reported back with
`remove`, which promotes the most recently seen replacement (paper, 4.1).
Buckets split when they cover our own id, or when their depth in the tree is
not a multiple of `symbol_bits` (the paper's section 4.2: with b-bit symbols
a node keeps 2^b - 1 buckets per level, which shortens lookups to about
log_{2^b} N hops; b = 1 is plain binary Kademlia). Depth is the bucket's
position in the tree, read from its range, so the shape does not depend on
the order contacts arrive in.

Times are passed in (`now`); KBucket's own `last_updated` (which reads the
process clock) is not used. Refresh targets come from a caller's RNG.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from kademlia.routing import KBucket

from protocol.dht.contact import Contact, distance
from protocol.ids import NODE_ID_SIZE

ID_BITS = 8 * NODE_ID_SIZE
DEFAULT_K = 20
DEFAULT_SYMBOL_BITS = 5


def _bound(bucket_range: tuple[int, int], target: int) -> int:
    low, high = bucket_range
    return (low ^ target) & ~(high - low)


def _first(item: tuple[int, Contact]) -> int:
    return item[0]


@dataclass(frozen=True)
class Added:
    contact: Contact


@dataclass(frozen=True)
class Updated:
    contact: Contact


@dataclass(frozen=True)
class BucketFull:
    """The bucket is full: ping `oldest`; the newcomer waits as a replacement."""

    oldest: Contact
    candidate: Contact


@dataclass(frozen=True)
class Ignored:
    reason: str


Observation = Added | Updated | BucketFull | Ignored


class RoutingTable:
    def __init__(
        self,
        own: Contact,
        *,
        k: int = DEFAULT_K,
        symbol_bits: int = DEFAULT_SYMBOL_BITS,
        replacement_factor: int = 5,
    ) -> None:
        if k < 1 or symbol_bits < 1:
            raise ValueError("k and symbol_bits must be at least 1")
        self.own = own
        self.k = k
        self.symbol_bits = symbol_bits
        self.replacement_factor = replacement_factor
        self._buckets = [self._bucket(0, 2**ID_BITS - 1)]
        self._refreshed: list[float] = [float("-inf")]

    def _bucket(self, low: int, high: int) -> KBucket:
        return KBucket(low, high, self.k, self.replacement_factor)

    def __len__(self) -> int:
        return sum(len(b) for b in self._buckets)

    def __contains__(self, contact: object) -> bool:
        return isinstance(contact, Contact) and self.get(contact.node_id) == contact

    @property
    def bucket_count(self) -> int:
        return len(self._buckets)

    def contacts(self) -> list[Contact]:
        return [c for bucket in self._buckets for c in bucket.get_nodes()]

    def get(self, node_id: bytes) -> Contact | None:
        contact: Contact | None = self._buckets[self._index(node_id)][node_id]
        return contact

    def _index(self, node_id: bytes) -> int:
        value = int.from_bytes(node_id, "big")
        for index, bucket in enumerate(self._buckets):
            if bucket.range[0] <= value <= bucket.range[1]:
                return index
        raise AssertionError("buckets cover the whole id space")

    def observe(self, contact: Contact, now: float) -> Observation:
        """A contact was seen alive (it answered us or asked us something)."""
        if contact.node_id == self.own.node_id:
            return Ignored("own id")
        known = self.get(contact.node_id)
        if known is not None and known.public_key != contact.public_key:
            return Ignored("id collision with a different key")
        while True:
            index = self._index(contact.node_id)
            bucket = self._buckets[index]
            # A full bucket parks the newcomer among its replacements, and a
            # split then places replacements as members: decide from `known`.
            if bucket.add_node(contact):
                return Updated(contact) if known is not None else Added(contact)
            if self._may_split(bucket):
                self._split(index)
                continue
            return BucketFull(oldest=bucket.head(), candidate=contact)

    def _may_split(self, bucket: KBucket) -> bool:
        low, high = bucket.range
        depth = ID_BITS - (high - low).bit_length()
        return bool(bucket.has_in_range(self.own)) or depth % self.symbol_bits != 0

    def _split(self, index: int) -> None:
        one, two = self._buckets[index].split()
        # KBucket.split builds default buckets; keep our replacement factor.
        self._buckets[index : index + 1] = [self._rebuild(one), self._rebuild(two)]
        stamp = self._refreshed[index]
        self._refreshed[index : index + 1] = [stamp, stamp]

    def _rebuild(self, bucket: KBucket) -> KBucket:
        fresh = self._bucket(*bucket.range)
        for contact in (*bucket.get_nodes(), *bucket.replacement_nodes.values()):
            fresh.add_node(contact)
        return fresh

    def remove(self, node_id: bytes) -> Contact | None:
        """Drop a dead contact; returns the replacement promoted in its place, if any."""
        bucket = self._buckets[self._index(node_id)]
        contact = bucket[node_id]
        if contact is None:
            bucket.replacement_nodes.pop(node_id, None)
            return None
        before = set(bucket.nodes)
        bucket.remove_node(contact)
        promoted = [bucket.nodes[i] for i in bucket.nodes if i not in before]
        return promoted[0] if promoted else None

    def closest(
        self, target: bytes, count: int | None = None, exclude: bytes | None = None
    ) -> list[Contact]:
        """The `count` (default k) known contacts closest to `target` by XOR.

        Bucket ranges are prefix-aligned (midpoint splits), so `(low ^ t)` with
        the range's free bits cleared bounds the distance of everything in a
        bucket: buckets are visited in bound order until none can do better.
        """
        count = self.k if count is None else count
        t = int.from_bytes(target, "big")
        bounded = sorted(
            ((_bound(bucket.range, t), i) for i, bucket in enumerate(self._buckets)),
        )
        best: list[tuple[int, Contact]] = []
        for bound, index in bounded:
            if len(best) >= count and bound > best[count - 1][0]:
                break
            best += [
                (c.long_id ^ t, c) for c in self._buckets[index].get_nodes() if c.node_id != exclude
            ]
            best.sort(key=_first)
        return [contact for _, contact in best[:count]]

    def mark_refreshed(self, target: bytes, now: float) -> None:
        """A lookup into `target`'s bucket completed at `now`."""
        self._refreshed[self._index(target)] = now

    def refresh_targets(
        self, now: float, interval: float, random_bytes: Callable[[int], bytes]
    ) -> list[bytes]:
        """A random id in each bucket not refreshed for `interval` seconds."""
        targets = []
        for index, bucket in enumerate(self._buckets):
            if now - self._refreshed[index] >= interval:
                low, high = bucket.range
                offset = int.from_bytes(random_bytes(NODE_ID_SIZE), "big") % (high - low + 1)
                targets.append((low + offset).to_bytes(NODE_ID_SIZE, "big"))
        return targets

    def snapshot(self) -> list[tuple[bytes, str]]:
        """(public key, address) of every contact, closest buckets first."""
        ordered = sorted(self.contacts(), key=lambda c: distance(c.node_id, self.own.node_id))
        return [(c.public_key, c.address) for c in ordered]

    def restore(self, entries: Iterable[tuple[bytes, str]], now: float) -> int:
        """Re-add contacts from a snapshot; returns how many were added."""
        added = 0
        for public_key, address in entries:
            if isinstance(self.observe(Contact(public_key, address), now), Added):
                added += 1
        return added
