"""Sans-IO iterative Kademlia lookup over the kademlia package's `NodeHeap`.

`step(now)` says what to do: a list of `Query`s to send, `Waiting(deadline)`
while answers are outstanding, or `Finished` once the k closest contacts
known have all answered. At most `alpha` queries are in flight. A query not
answered by its deadline is asked again, up to `attempts` times in all (a
lost message should not drop a live peer from the result); then its contact
counts as failed and leaves the candidate set, so a silent peer costs at
most `attempts` timeouts and never stalls the lookup. `stop()` ends it early.

Each contact remembers the hop at which it was learned (seeds are hop 0, a
contact named by a hop-h peer is hop h+1); the lookup's `hops` is the hop of
the closest contact found.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from kademlia.node import NodeHeap

from protocol.dht.contact import Contact, target_node

DEFAULT_ALPHA = 3
DEFAULT_QUERY_TIMEOUT = 2.0
DEFAULT_ATTEMPTS = 2


@dataclass(frozen=True)
class Query:
    contact: Contact
    deadline: float


@dataclass(frozen=True)
class Waiting:
    deadline: float


@dataclass(frozen=True)
class Finished:
    closest: list[Contact]
    hops: int
    queries: int
    failures: int
    stopped_early: bool = False


Step = list[Query] | Waiting | Finished


@dataclass
class _Progress:
    in_flight: dict[bytes, float] = field(default_factory=dict)
    contacted: set[bytes] = field(default_factory=set)
    failed: set[bytes] = field(default_factory=set)
    hops: dict[bytes, int] = field(default_factory=dict)
    attempts: dict[bytes, int] = field(default_factory=dict)
    queries: int = 0


class Lookup:
    def __init__(
        self,
        target: bytes,
        seeds: Iterable[Contact],
        *,
        k: int = 20,
        alpha: int = DEFAULT_ALPHA,
        timeout: float = DEFAULT_QUERY_TIMEOUT,
        attempts: int = DEFAULT_ATTEMPTS,
        own_id: bytes | None = None,
    ) -> None:
        if k < 1 or alpha < 1 or attempts < 1 or timeout <= 0:
            raise ValueError("k, alpha and attempts must be >= 1 and the timeout positive")
        self.target = target
        self.k = k
        self.alpha = alpha
        self.timeout = timeout
        self.attempts = attempts
        self._own = own_id
        self._heap = NodeHeap(target_node(target), k)
        self._state = _Progress()
        self._stopped = False
        self._add(seeds, hop=0)

    def _add(self, contacts: Iterable[Contact], hop: int) -> None:
        fresh = []
        state = self._state
        for contact in contacts:
            key = contact.node_id
            if key == self._own or key in state.failed or key in state.hops:
                continue
            state.hops[key] = hop
            fresh.append(contact)
        if fresh:
            self._heap.push(fresh)

    @property
    def in_flight(self) -> int:
        return len(self._state.in_flight)

    def step(self, now: float) -> Step:
        state = self._state
        for key, deadline in list(state.in_flight.items()):
            if deadline <= now:
                self._timed_out(key)
        if self._stopped:
            return self._finished()
        free = self.alpha - len(state.in_flight)
        queries = []
        if free > 0:
            for contact in self._heap:  # the k closest, nearest first
                if contact.node_id in state.contacted:
                    continue
                deadline = now + self.timeout
                state.contacted.add(contact.node_id)
                state.in_flight[contact.node_id] = deadline
                state.attempts[contact.node_id] = state.attempts.get(contact.node_id, 0) + 1
                state.queries += 1
                queries.append(Query(contact, deadline))
                if len(queries) == free:
                    break
        if queries:
            return queries
        if state.in_flight:
            return Waiting(min(state.in_flight.values()))
        return self._finished()

    def _finished(self) -> Finished:
        state = self._state
        closest = [
            c
            for c in self._heap
            if c.node_id in state.contacted and c.node_id not in state.in_flight
        ]
        hops = state.hops.get(closest[0].node_id, 0) if closest else 0
        return Finished(closest, hops, state.queries, len(state.failed), self._stopped)

    def on_response(self, contact: Contact, contacts: Iterable[Contact]) -> None:
        """`contact` answered with `contacts`; late answers (after failure) are ignored."""
        state = self._state
        key = contact.node_id
        if key not in state.in_flight:
            return
        del state.in_flight[key]
        self._add(contacts, hop=state.hops.get(key, 0) + 1)

    def on_timeout(self, contact: Contact, deadline: float) -> None:
        """The query to `contact` with this `deadline` went unanswered.

        The deadline identifies the attempt: a report about an attempt that
        `step` already expired (and perhaps retried) changes nothing.
        """
        if self._state.in_flight.get(contact.node_id) == deadline:
            self._timed_out(contact.node_id)

    def on_failure(self, contact: Contact) -> None:
        """`contact` cannot answer usefully (refused, garbage, error): no retry."""
        if contact.node_id in self._state.in_flight:
            self._fail(contact.node_id)

    def _timed_out(self, key: bytes) -> None:
        state = self._state
        if state.attempts.get(key, 0) < self.attempts:
            del state.in_flight[key]
            state.contacted.discard(key)  # eligible to be asked again
        else:
            self._fail(key)

    def _fail(self, key: bytes) -> None:
        state = self._state
        state.in_flight.pop(key, None)
        state.failed.add(key)
        self._heap.remove([key])

    def stop(self) -> None:
        """Finish at the next step (what was sought has been found)."""
        self._stopped = True
