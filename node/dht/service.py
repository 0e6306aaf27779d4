"""The DHT service: Kademlia RPCs, iterative lookups, and upkeep loops.

The pure parts decide (`protocol.dht.routing`, `lookup`, `liveness`,
`joining`, `store`); this shell carries out what they return: it answers
FIND_NODE/FIND_VALUE/STORE/ADD_PROVIDER/GET_PROVIDERS, runs lookups with
alpha queries in flight, pings the oldest contact of a full bucket, evicts
peers that keep failing (at once for garbage), hands stored records on to
newly closer nodes, and republishes what this node published.

Two clocks: `trio.current_time()` for timeouts and intervals, and
`wall_clock()` for record expiry, which must agree across nodes (the daemon
passes time.time; the simulator its virtual clock).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import nacl.signing
import trio

from node.config.dht import DhtConfig
from node.logs import RateLimitedLog, event, get_logger, short_key
from node.net.dispatch import Dispatcher
from node.net.errors import CallTimeout, RequestError, RpcError
from node.net.rpc_port import Caller, RpcPort
from protocol.dht.contact import Contact, ContactInfo, distance
from protocol.dht.joining import JoinSchedule, Phase, Seen
from protocol.dht.liveness import Evict, Liveness
from protocol.dht.lookup import Finished, Lookup
from protocol.dht.messages import (
    AddProvider,
    FindNode,
    FindValue,
    GetProviders,
    Hello,
    NodesFound,
    ProvidersFound,
    Stored,
    StoreValue,
    ValueFound,
)
from protocol.dht.routing import Added, BucketFull, RoutingTable
from protocol.dht.store import (
    InvalidRecord,
    ProviderRecord,
    RecordStore,
    ValueRecord,
    make_provider,
    validate,
    validate_provider,
)
from protocol.ids import NODE_ID_SIZE, node_id
from protocol.net.messages import ErrorCode, Message, Ping

log = get_logger("dht")


@dataclass
class DhtStats:
    lookups: int = 0
    lookup_failures: int = 0  # lookups that ended with no live contact found
    queries: int = 0
    query_failures: int = 0
    evictions: int = 0
    handed_on: int = 0


@dataclass(frozen=True)
class LookupResult:
    closest: list[Contact]
    hops: int
    queries: int
    failures: int
    duration: float
    value: ValueRecord | None = None
    providers: list[ProviderRecord] = field(default_factory=list)


class BadAnswer(Exception):
    """A peer answered with the wrong message or an impossible one."""


class _Signal:
    """Wakes the lookup driver when a query settles."""

    def __init__(self) -> None:
        self._event = trio.Event()

    def fire(self) -> None:
        self._event.set()
        self._event = trio.Event()

    async def wait_until(self, deadline: float) -> None:
        with trio.move_on_at(deadline):
            await self._event.wait()


Absorb = Callable[[Contact, Message], list[Contact]]


@dataclass(frozen=True)
class _Run:
    """One lookup in progress: the machine, what to ask, how to read answers."""

    lookup: Lookup
    request: Message
    absorb: Absorb
    signal: _Signal


class DhtService:
    def __init__(
        self,
        *,
        identity: nacl.signing.SigningKey,
        address: str,
        port: RpcPort,
        random_bytes: Callable[[int], bytes],
        wall_clock: Callable[[], float],
        config: DhtConfig | None = None,
        store: RecordStore | None = None,
    ) -> None:
        self.identity = identity
        self.config = config or DhtConfig()
        self.contact = Contact(bytes(identity.verify_key), address)
        self.info = self.contact.info()
        self.port = port
        self.random_bytes = random_bytes
        self.wall_clock = wall_clock
        self.routing = RoutingTable(
            self.contact, k=self.config.k, symbol_bits=self.config.symbol_bits
        )
        self.store = store or RecordStore()
        self.stats = DhtStats()
        self._refusals = RateLimitedLog(log, "provider record refused", period=600.0)
        self.liveness = Liveness(self.config.max_failures)
        self.joining = JoinSchedule(
            rng=self._fraction,
            first=self.config.join_retry_first,
            cap=self.config.join_retry_max,
            quiet=self.config.quiet_time,
        )
        self.bootstrap: tuple[Contact, ...] = ()
        self._pinging: dict[bytes, None] = {}
        self._provided: dict[bytes, None] = {}
        self._published: dict[bytes, ValueRecord] = {}
        self._nursery: trio.Nursery | None = None

    # -- wiring -----------------------------------------------------------

    def set_address(self, address: str) -> None:
        """Announce a different address (known only once the listener is bound)."""
        self.contact = Contact(self.contact.public_key, address)
        self.info = self.contact.info()

    def install(self, dispatcher: Dispatcher) -> None:
        dispatcher.route(Hello, self._on_hello)
        dispatcher.route(FindNode, self._on_find_node)
        dispatcher.route(FindValue, self._on_find_value)
        dispatcher.route(StoreValue, self._on_store_value)
        dispatcher.route(AddProvider, self._on_add_provider)
        dispatcher.route(GetProviders, self._on_get_providers)

    async def serve(
        self,
        bootstrap: Sequence[Contact] = (),
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Join through `bootstrap` (and any restored contacts), then keep the table fresh.

        Bootstrap peers are lookup seeds, not table entries: they enter the
        table when they answer. Until the node has joined, and while its
        table is small, it keeps looking itself up (protocol.dht.joining).
        """
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            self.bootstrap = tuple(bootstrap)
            await self.join()
            nursery.start_soon(self._keep_joined)
            nursery.start_soon(self._every, self.config.refresh_interval / 4, self.refresh)
            nursery.start_soon(self._every, self.config.republish_interval, self.republish)
            nursery.start_soon(self._every, self.config.expire_interval, self._expire)
            task_status.started()

    async def join(self) -> None:
        """Find our neighbourhood (through the bootstrap peers too), then a few far regions."""
        await self._find_self()
        targets = self.routing.refresh_targets(trio.current_time(), 0.0, self.random_bytes)
        for target in targets[: self.config.join_refreshes]:
            await self.find_node(target)
        event(
            log,
            logging.INFO,
            "joined",
            contacts=len(self.routing),
            buckets=self.routing.bucket_count,
        )

    def _fraction(self) -> float:
        return int.from_bytes(self.random_bytes(7), "big") / 2**56

    def _seen(self) -> Seen:
        return Seen(
            trio.current_time(),
            len(self.routing),
            self.liveness.heard_at,
            self.liveness.failed_at,
        )

    async def _find_self(self) -> LookupResult:
        start = trio.current_time()
        known = {c.node_id for c in self.routing.contacts()}
        target = self.contact.node_id
        lookup = self._new_lookup(target, extra=self.bootstrap)
        done = await self._lookup(lookup, FindNode(self.info, target), self._absorb_nodes)
        self.joining.looked_up(any(c.node_id not in known for c in self.routing.contacts()))
        return _result(done, start)

    async def _keep_joined(self) -> None:
        """Look this node up again while it is joining or settling (see protocol.dht.joining)."""
        phase = None
        while True:
            now_phase, delay = self.joining.next_delay(self._seen())
            if now_phase is not phase:
                phase = now_phase
                event(log, logging.INFO, "dht phase", phase=phase.value, contacts=len(self.routing))
            await trio.sleep(delay)
            if self.joining.phase(self._seen()) is not Phase.SETTLED:
                await self._find_self()

    async def _every(self, period: float, action: Callable[[], Awaitable[None]]) -> None:
        while True:
            await trio.sleep(period)
            await action()

    # -- routing table upkeep ------------------------------------------------

    def observe(self, contact: Contact) -> None:
        """`contact` talked to us or answered us: it is alive."""
        now = trio.current_time()
        self.liveness.heard(contact.node_id, now)
        decision = self.routing.observe(contact, now)
        if self._nursery is None:
            return
        if isinstance(decision, BucketFull):
            oldest = decision.oldest
            if oldest.node_id not in self._pinging and len(self._pinging) < self.config.max_pings:
                self._pinging[oldest.node_id] = None
                self._nursery.start_soon(self._check_oldest, oldest)
        elif isinstance(decision, Added):
            self._nursery.start_soon(self._hand_on, decision.contact)

    async def _check_oldest(self, oldest: Contact) -> None:
        sent_at = trio.current_time()
        try:
            await self.port.call(oldest, Ping(0), self.config.query_timeout)
        except RpcError:
            self._evict(self.liveness.ping_failed(oldest.node_id, sent_at))
        else:
            self.routing.observe(oldest, trio.current_time())
        finally:
            del self._pinging[oldest.node_id]

    def _note_failure(self, contact: Contact, *, garbage: bool, sent_at: float) -> None:
        """A query to `contact` sent at `sent_at` failed (protocol.dht.liveness decides)."""
        self.stats.query_failures += 1
        self._evict(self.liveness.failed(contact.node_id, sent_at=sent_at, garbage=garbage))

    def _evict(self, decision: Evict | None) -> None:
        if decision is None:
            return
        evicted = self.routing.get(decision.node_id)
        if evicted is not None:
            self.routing.remove(decision.node_id)
            self.stats.evictions += 1
            event(
                log,
                logging.DEBUG,
                "evicted",
                peer=short_key(evicted.public_key),
                reason=decision.reason,
            )

    async def _hand_on(self, newcomer: Contact) -> None:
        """Re-store the values we hold on a new contact closer to them than we are.

        Provider records are not handed on: a node takes them only from the
        provider itself, which republishes them to the closest nodes of the
        time (every `republish_interval`), newcomers included.
        """
        now = self.wall_clock()
        own = self.contact.node_id
        target = newcomer.node_id
        for record in self.store.value_records(now):
            if distance(target, record.key) < distance(own, record.key):
                await self._send_store(newcomer, StoreValue(self.info, record))

    async def _send_store(self, contact: Contact, message: StoreValue | AddProvider) -> bool:
        try:
            answer = await self.port.call(contact, message, self.config.query_timeout)
        except RpcError:
            return False
        self.stats.handed_on += 1
        return isinstance(answer, Stored) and answer.accepted

    # -- request handlers -------------------------------------------------

    def _learn(self, sender: ContactInfo, caller: Caller) -> Contact:
        if sender.public_key != caller.remote_public_key:
            raise RequestError(
                ErrorCode.BAD_REQUEST, "sender key differs from the connection's key"
            )
        contact = Contact.from_info(sender)
        self.observe(contact)
        return contact

    def _closest_infos(self, target: bytes, exclude: Contact) -> tuple[ContactInfo, ...]:
        closest = self.routing.closest(target, self.config.k, exclude=exclude.node_id)
        return tuple(c.info() for c in closest)

    async def _on_hello(self, message: Hello, caller: Caller) -> Hello:
        self._learn(message.sender, caller)
        return Hello(self.info)

    async def greet(self, caller: Caller, call: Callable[[Message], Awaitable[Message]]) -> None:
        """A peer connected and authenticated: exchange contacts if it is not in the table.

        A contact evicted while it was unreachable thus comes back as soon as
        it is heard from again, whatever it connected for.
        """
        if self.routing.get(node_id(caller.remote_public_key)) is not None:
            return
        try:
            answer = await call(Hello(self.info))
        except RpcError:
            return
        if isinstance(answer, Hello) and answer.sender.public_key == caller.remote_public_key:
            self.observe(Contact.from_info(answer.sender))

    async def _on_find_node(self, message: FindNode, caller: Caller) -> NodesFound:
        sender = self._learn(message.sender, caller)
        _require_key(message.target)
        return NodesFound(self._closest_infos(message.target, sender))

    async def _on_find_value(self, message: FindValue, caller: Caller) -> ValueFound:
        sender = self._learn(message.sender, caller)
        _require_key(message.key)
        record = self.store.get(message.key, self.wall_clock())
        return ValueFound(record, self._closest_infos(message.key, sender))

    async def _on_store_value(self, message: StoreValue, caller: Caller) -> Stored:
        self._learn(message.sender, caller)
        try:
            changed = self.store.put(message.record, self.wall_clock())
        except InvalidRecord as exc:
            return Stored(False, str(exc))
        return Stored(True, "stored" if changed else "unchanged")

    async def _on_add_provider(self, message: AddProvider, caller: Caller) -> Stored:
        self._learn(message.sender, caller)
        if message.record.provider.public_key != caller.remote_public_key:
            # Only a provider announces itself: nobody relays, or plants, records for
            # others (each one a signed claim, but a member could replay old ones).
            reason = "a provider record is accepted only from its provider"
            self._refusals.note(reason, short_key(caller.remote_public_key))
            return Stored(False, reason)
        try:
            changed = self.store.add_provider(message.record, self.wall_clock())
        except InvalidRecord as exc:
            self._refusals.note(str(exc), short_key(caller.remote_public_key))
            return Stored(False, str(exc))
        return Stored(True, "stored" if changed else "unchanged")

    async def _on_get_providers(self, message: GetProviders, caller: Caller) -> ProvidersFound:
        sender = self._learn(message.sender, caller)
        _require_key(message.key)
        providers = tuple(self.store.providers(message.key, self.wall_clock(), self.config.k))
        return ProvidersFound(providers, self._closest_infos(message.key, sender))

    # -- lookups ------------------------------------------------------------

    async def _lookup(self, lookup: Lookup, request: Message, absorb: Absorb) -> Finished:
        self.stats.lookups += 1
        run = _Run(lookup, request, absorb, _Signal())
        async with trio.open_nursery() as queries:
            while True:
                step = lookup.step(trio.current_time())
                if isinstance(step, Finished):
                    queries.cancel_scope.cancel()
                    break
                if isinstance(step, list):
                    for query in step:
                        self.stats.queries += 1
                        queries.start_soon(self._query, run, query.contact, query.deadline)
                    continue
                await run.signal.wait_until(step.deadline)
        self.routing.mark_refreshed(lookup.target, trio.current_time())
        if not step.closest:
            self.stats.lookup_failures += 1
        return step

    async def _query(self, run: _Run, contact: Contact, deadline: float) -> None:
        sent_at = trio.current_time()
        try:
            with trio.move_on_at(deadline):
                remaining = max(deadline - trio.current_time(), 1e-3)
                try:
                    answer = await self.port.call(contact, run.request, remaining)
                    learned = run.absorb(contact, answer)
                except CallTimeout:
                    run.lookup.on_timeout(contact, deadline)
                    self._note_failure(contact, garbage=False, sent_at=sent_at)
                    return
                except RpcError:
                    run.lookup.on_failure(contact)
                    self._note_failure(contact, garbage=False, sent_at=sent_at)
                    return
                except BadAnswer:
                    run.lookup.on_failure(contact)
                    self._note_failure(contact, garbage=True, sent_at=sent_at)
                    return
                run.lookup.on_response(contact, learned)
                self.observe(contact)
                return
            run.lookup.on_timeout(contact, deadline)
            self._note_failure(contact, garbage=False, sent_at=sent_at)
        finally:
            run.signal.fire()

    def _new_lookup(self, target: bytes, extra: Sequence[Contact] = ()) -> Lookup:
        return Lookup(
            target,
            [*self.routing.closest(target, self.config.k), *extra],
            k=self.config.k,
            alpha=self.config.alpha,
            timeout=self.config.query_timeout,
            attempts=self.config.query_attempts,
            own_id=self.contact.node_id,
        )

    def _contacts(self, infos: tuple[ContactInfo, ...]) -> list[Contact]:
        if len(infos) > self.config.k:
            raise BadAnswer(f"{len(infos)} contacts, more than k={self.config.k}")
        return [Contact.from_info(info) for info in infos]

    def _absorb_nodes(self, contact: Contact, answer: Message) -> list[Contact]:
        if not isinstance(answer, NodesFound):
            raise BadAnswer(f"answered find_node with {answer.TYPE}")
        return self._contacts(answer.contacts)

    async def find_node(self, target: bytes) -> LookupResult:
        """The k closest live contacts to `target`."""
        _check_key(target)
        start = trio.current_time()
        request = FindNode(self.info, target)
        done = await self._lookup(self._new_lookup(target), request, self._absorb_nodes)
        return _result(done, start)

    async def get_value(self, key: bytes) -> LookupResult:
        """The best valid record for `key`, or none.

        An immutable blob ends the lookup as soon as one copy validates; a
        signed record may exist in older versions, so the lookup runs to its
        end and the validator keeps the newest.
        """
        _check_key(key)
        best: list[ValueRecord] = []
        local = self.store.get(key, self.wall_clock())
        lookup = self._new_lookup(key)

        def keep(record: ValueRecord) -> None:
            validator = validate(record, self.wall_clock())
            best[:] = [validator.select(best[0], record) if best else record]
            if record.kind == "blob":
                lookup.stop()

        if local is not None:
            keep(local)

        def absorb(contact: Contact, answer: Message) -> list[Contact]:
            if not isinstance(answer, ValueFound):
                raise BadAnswer(f"answered find_value with {answer.TYPE}")
            contacts = self._contacts(answer.contacts)
            record = answer.record
            if record is not None:
                if record.key != key or (best and best[0].kind != record.kind):
                    raise BadAnswer("answered with a record for another key or of another kind")
                try:
                    keep(record)
                except InvalidRecord as exc:
                    raise BadAnswer(f"answered with an invalid record: {exc}") from None
            return contacts

        start = trio.current_time()
        done = await self._lookup(lookup, FindValue(self.info, key), absorb)
        return _result(done, start, value=best[0] if best else None)

    async def find_providers(self, key: bytes) -> LookupResult:
        """Every valid provider record the k closest nodes to `key` hold."""
        _check_key(key)
        now = self.wall_clock()
        providers = {r.provider.public_key: r for r in self.store.providers(key, now)}

        def absorb(contact: Contact, answer: Message) -> list[Contact]:
            if not isinstance(answer, ProvidersFound):
                raise BadAnswer(f"answered get_providers with {answer.TYPE}")
            contacts = self._contacts(answer.contacts)
            for record in answer.providers:
                if record.key != key:
                    raise BadAnswer("answered with a provider of another key")
                held = providers.get(record.provider.public_key)
                if held == record:  # the same signed record from another node: checked once
                    continue
                try:
                    validate_provider(record, self.wall_clock())
                except InvalidRecord as exc:
                    raise BadAnswer(f"answered with a bad provider record: {exc}") from None
                if held is None or held.expires_at < record.expires_at:
                    providers[record.provider.public_key] = record
            return contacts

        start = trio.current_time()
        done = await self._lookup(self._new_lookup(key), GetProviders(self.info, key), absorb)
        return _result(done, start, providers=list(providers.values()))

    async def _store_at_closest(self, key: bytes, message: StoreValue | AddProvider) -> int:
        found = await self.find_node(key)
        accepted = 0

        async def one(contact: Contact) -> None:
            nonlocal accepted
            if await self._send_store(contact, message):
                accepted += 1

        async with trio.open_nursery() as nursery:
            for contact in found.closest:
                nursery.start_soon(one, contact)
        return accepted

    async def put_value(self, record: ValueRecord) -> int:
        """Store `record` here and on the k closest nodes; republished until it expires."""
        now = self.wall_clock()
        try:
            self.store.put(record, now)
        except InvalidRecord as exc:
            raise ValueError(f"refusing to publish an invalid record: {exc}") from None
        self._published[record.key] = record
        return await self._store_at_closest(record.key, StoreValue(self.info, record))

    async def provide(self, key: bytes) -> int:
        """Announce this node as a provider of `key` to the k closest nodes."""
        _check_key(key)
        expires = int(self.wall_clock() + self.config.record_lifetime)
        record = make_provider(self.identity, key, self.contact.address, expires)
        self.store.add_provider(record, self.wall_clock())
        self._provided[key] = None
        return await self._store_at_closest(key, AddProvider(self.info, record))

    def stop_providing(self, key: bytes) -> None:
        self._provided.pop(key, None)

    def forget(self, public_key: bytes) -> int:
        """A node no longer a member: out of the routing table (and so of peers.json),
        its provider records dropped (readers would dial a node that is refused).
        Returns the provider records dropped."""
        self.routing.remove(node_id(public_key))
        return self.store.drop_provider(public_key)

    # -- upkeep ---------------------------------------------------------------

    async def refresh(self) -> None:
        """Look up a random id in every bucket not used for refresh_interval."""
        now = trio.current_time()
        for target in self.routing.refresh_targets(
            now, self.config.refresh_interval, self.random_bytes
        ):
            await self.find_node(target)

    async def republish(self) -> None:
        """Re-announce what this node provides and re-store what it published."""
        now = self.wall_clock()
        for key in list(self._provided):
            await self.provide(key)
        for key, record in list(self._published.items()):
            if record.expires_at <= now:
                del self._published[key]
            else:
                await self._store_at_closest(key, StoreValue(self.info, record))

    async def _expire(self) -> None:
        self.store.expire(self.wall_clock())
        await trio.lowlevel.checkpoint()


def _require_key(key: bytes) -> None:
    """In a handler: a wrong-sized key is the caller's bad request."""
    if len(key) != NODE_ID_SIZE:
        raise RequestError(ErrorCode.BAD_REQUEST, f"a DHT key is {NODE_ID_SIZE} bytes")


def _check_key(key: bytes) -> None:
    """In the local API: a wrong-sized key is a programming error."""
    if len(key) != NODE_ID_SIZE:
        raise ValueError(f"a DHT key is {NODE_ID_SIZE} bytes, got {len(key)}")


def _result(
    done: Finished,
    start: float,
    *,
    value: ValueRecord | None = None,
    providers: list[ProviderRecord] | None = None,
) -> LookupResult:
    return LookupResult(
        closest=done.closest,
        hops=done.hops,
        queries=done.queries,
        failures=done.failures,
        duration=trio.current_time() - start,
        value=value,
        providers=providers or [],
    )
