"""Records across the network: put, open for reading, grant, revoke, delete, check.

put: encode the segments a caller pushes (in a worker thread), place shard
index i on the i-th node of a site-aware placement over the nodes closest to
the record's DHT key, stream each holder its blocks, and only when `happy`
distinct holders confirmed complete shards write the `record` entry and the
grants (the owner, i.e. this node, and any grantees) to the ledger; a put
that falls short records nothing.

open: the ledger says whether the record exists, is deleted, and whether the
reader holds a grant; the manifest comes from a holder and must hash to what
the ledger recorded; the holders of each index come from the DHT's provider
records and the closest nodes.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
from collections.abc import AsyncIterator, Callable, Mapping, Sequence, Set
from dataclasses import dataclass

import nacl.signing
import trio

from node.config.storage import StorageConfig
from node.dht.service import DhtService
from node.ledger.service import LedgerError, LedgerService, Prepared
from node.logs import event, get_logger
from node.memory import release_free_memory
from node.metrics.records import GetMeter, RecordMetrics
from node.net.errors import RemoteError, RpcError
from node.net.rpc_port import RpcPort
from node.records.errors import (
    BAD_REQUEST,
    NO_MANIFEST,
    NetworkTooSmall,
    NoGrant,
    RecordError,
    UnknownRecord,
    short,
)
from node.records.fetch import BlockFetcher, Permit, Proof
from node.records.held import HeldBlocks
from node.records.put import (
    PutResult,
    drop_everywhere,
    encode_ahead_while,
    placed_health,
    refuse_unless_kept,
    shard_bytes,
    stream_and_prepare,
    top_up,
)
from node.records.reach import Reach
from node.records.shard_service import ShardService
from node.records.transfer import holder_senders
from protocol.dht.contact import Contact
from protocol.emergency.purpose import default_purpose
from protocol.ids import record_dht_key
from protocol.ledger.entries import (
    Body,
    Entry,
    GrantBody,
    InvalidEntry,
    RecordBody,
    RevokeBody,
    StealthGrantBody,
    TombstoneBody,
    decode_entry,
    derive_record_id,
    grant_context,
)
from protocol.ledger.state import GrantInfo, RecordInfo
from protocol.net.messages import ErrorCode
from protocol.privacy import Address, PrivacyError, make_grant
from protocol.records import held, permit
from protocol.records.fetching import Latency
from protocol.records.health import site_of
from protocol.records.holder_proof import bucket_of
from protocol.records.messages import (
    FetchHeld,
    GetHoldings,
    GetManifest,
    HeldFound,
    HolderProof,
    HoldingsFound,
    ManifestFound,
)
from protocol.records.placement import place
from protocol.records.purpose import Purpose
from protocol.records.verdict import judge_put
from protocol.text import counted
from storage.codec.crypt import KEY_SIZE, SegmentCipher, check_recipient, open_sealed_key, seal_key
from storage.codec.encoder import RecordEncoder
from storage.codec.manifest import Manifest, RecordMetadata
from storage.errors import KeyFormatError, ManifestError

log = get_logger("records")
ADDRESS_SIZE = 66  # an encoded protocol.privacy Address: grants to it are stealth grants


def _check_grantee(grantee: bytes) -> None:
    """RecordError unless `grantee` is a usable public key (32 bytes) or address (66)."""
    try:
        if len(grantee) == ADDRESS_SIZE:
            Address.from_bytes(grantee)
        else:
            check_recipient(grantee)
    except (KeyFormatError, PrivacyError) as exc:
        raise RecordError(f"grantee {grantee.hex()[:16]}: {exc}", reason=BAD_REQUEST) from None


@dataclass(frozen=True)
class ReadHandle:
    record: RecordInfo
    manifest: Manifest
    grant: GrantInfo
    fetcher: BlockFetcher
    meter: GetMeter  # counts this get when its stream ends (node/metrics/records.py)


@dataclass(frozen=True)
class Holding:
    contact: Contact
    found: HoldingsFound


MANIFEST_ASKS_AT_ONCE = 4  # candidates asked for a manifest at the same time
READ_GRACE = 1.0  # seconds a reader waits for more holders once k indices are covered


class RecordService:
    def __init__(
        self,
        *,
        identity: nacl.signing.SigningKey,
        dht: DhtService,
        ledger: LedgerService,
        shards: ShardService,
        port: RpcPort,
        config: StorageConfig,
        random_bytes: Callable[[int], bytes],
        clock_ms: Callable[[], int],
        metrics: RecordMetrics | None = None,
    ) -> None:
        self.identity = identity
        self.metrics = metrics if metrics is not None else RecordMetrics()
        self.public_key = bytes(identity.verify_key)
        self.dht = dht
        self.ledger = ledger
        self.shards = shards
        self.port = port
        self.config = config
        self.random_bytes = random_bytes
        # Logs each read's statement to the ledger (node/records/witness.py; None: not).
        self.log_read: Callable[[bytes], None] | None = None
        self.clock_ms = clock_ms
        self.latency = Latency()
        self.reach = Reach(dht=dht, port=port)

    # -- put ------------------------------------------------------------------------

    async def put(
        self,
        segments: AsyncIterator[tuple[bytes, bool]],
        *,
        metadata: RecordMetadata,
        grantees: Sequence[bytes] = (),
        expiring: Sequence[bytes] = (),
        expires_at: int = 0,
        size_hint: int = 0,
        require_full: bool = False,
    ) -> PutResult:
        """Store a record pushed segment by segment (every segment but the last full).

        `grantees` (the patient) get grants that never expire, `expiring` ones
        that end at `expires_at` (ms; 0: never); the owner (this node) always
        gets one. `size_hint` (0: unknown) lets placement pass over nodes
        without room; `require_full` fails (and records nothing) a put that
        would be degraded. Counted in the node's metrics, stored or failed.
        """
        started = trio.current_time()
        try:
            result = await self._put(
                segments,
                metadata=metadata,
                grantees=grantees,
                expiring=expiring,
                expires_at=expires_at,
                size_hint=size_hint,
                require_full=require_full,
            )
        except BaseException as exc:
            self.metrics.put_failed(exc)
            raise
        finally:
            release_free_memory()  # the put's segment buffers, freed by now (node.memory)
        seconds = trio.current_time() - started
        self.metrics.put_stored(result.size, result.verdict.degraded, seconds)
        return result

    async def _put(
        self,
        segments: AsyncIterator[tuple[bytes, bool]],
        *,
        metadata: RecordMetadata,
        grantees: Sequence[bytes],
        expiring: Sequence[bytes],
        expires_at: int,
        size_hint: int,
        require_full: bool,
    ) -> PutResult:
        config = self.config
        self._check_expiry(expires_at)
        grants = {self.public_key: 0} | dict.fromkeys(expiring, expires_at)
        grants |= dict.fromkeys([*grantees, self.public_key], 0)
        for grantee in grants:
            _check_grantee(grantee)
        patients = {g for g in grantees if len(g) == ADDRESS_SIZE}
        nonce = self.random_bytes(16)
        record_id = derive_record_id(self.public_key, nonce)
        record_key = self.random_bytes(KEY_SIZE)
        encoder = RecordEncoder(
            record_id=record_id,
            record_key=record_key,
            k=config.k,
            n=config.n,
            segment_size=config.segment_size,
            metadata=metadata,
            version=config.manifest_version,
        )
        need = shard_bytes(size_hint or config.segment_size, config.k)
        wanted = config.n if require_full else config.happy
        started = trio.current_time()
        lookup = self.reach.candidates(record_dht_key(record_id), config.n, reuse=True)
        ahead, pool = await encode_ahead_while(encoder, segments, lookup)
        placed = trio.current_time()
        if len(pool) < wanted:
            self.reach.small.forget()  # a node missing now may be back for the next put
            setting = "n, for --require-full" if require_full else "storage.happy"
            raise NetworkTooSmall(
                f"network too small: {counted(len(pool), 'node')} answered, a put needs {wanted}"
                f" distinct holders ({setting})"
            )
        chosen = place(config.n, [r.candidate() for r in pool], need, k=config.k)
        contacts = {r.contact.public_key: r.contact for r in pool}
        senders = holder_senders(
            port=self.port,
            record_id=record_id,
            assignment=[(index, contacts[node]) for index, node in enumerate(chosen)],
            batch_bytes=config.transfer_batch_bytes,
            timeout=config.call_timeout,
            random_bytes=self.random_bytes,
            owner_nonce=nonce,
        )
        sent_to = {s.holder.public_key: s.holder for s in senders}
        try:
            entries = functools.partial(
                self._entries,
                record_id,
                nonce=nonce,
                record_key=record_key,
                grants=grants,
                patients=patients,
            )
            prepared = await stream_and_prepare(
                encoder, ahead, senders, functools.partial(self._prepare, entries)
            )
            streamed = trio.current_time()
            manifest = encoder.manifest()
            for sender in senders:
                if sender.failure is not None:
                    self.reach.forget(sender.holder.public_key)
                if sender.proof_failed:
                    self.reach.distrust(sender.holder.public_key)
            holders = await top_up(
                port=self.port,
                permit=self.own_permits(record_id),
                config=config,
                latency=self.latency,
                manifest=manifest,
                holders={i: s.holder for s in senders if s.confirmed for i in s.indices},
                pool=pool,
                excluded={s.holder.public_key for s in senders if not s.confirmed},
                sent_to=sent_to,
                need=need,
                random_bytes=self.random_bytes,
                owner_nonce=nonce,
            )
            sites = {r.contact.public_key: r.site for r in pool}
            network_sites = max(
                self.reach.known_sites(), len({site_of(node, sites) for node in sites})
            )
            verdict = judge_put(
                placed_health(manifest, holders, sites, network_sites), happy=wanted
            )
            if verdict.degraded:
                self.reach.small.forget()  # the next put looks for more holders
            refuse_unless_kept(verdict, wanted=wanted, require_full=require_full, senders=senders)
            await self._record(functools.partial(entries, manifest=manifest), prepared)
        except BaseException:
            await drop_everywhere(self.port, record_id, sent_to.values())
            raise
        event(
            log,
            logging.INFO,
            "record stored",
            record=short(record_id),
            size=encoder.record_size,
            stored_size=manifest.size,
            holders=verdict.holders,
            sites=verdict.sites,
            degraded=verdict.degraded,
            placement_ms=round((placed - started) * 1000, 1),
            transfer_ms=round((streamed - placed) * 1000, 1),
            ledger_ms=round((trio.current_time() - streamed) * 1000, 1),
        )
        return PutResult(
            record_id,
            manifest,
            {i: c.public_key for i, c in holders.items()},
            verdict,
            encoder.record_size,
        )

    async def _record(
        self, bodies: Callable[[], Sequence[Body]], prepared: Prepared | None = None
    ) -> None:
        """The record entry and its grants, in one transaction: all or nothing. Entries
        `prepared` (built and signed while the holders stored) are used if still
        current (append_prepared signs them again otherwise); else `bodies()`."""
        if prepared is not None:
            await self.ledger.append_prepared(prepared)
        else:
            await self.ledger.append_all(bodies())

    def _prepare(self, entries: Callable[..., list[Body]], manifest: Manifest) -> Prepared | None:
        """The put's entries built and signed while the remote holders store (nothing
        written). None if the ledger refuses now: the commit then builds and signs
        them again and says why."""
        try:
            return self.ledger.prepare_all(entries(manifest=manifest))
        except LedgerError:
            return None

    def _entries(
        self,
        record_id: bytes,
        *,
        nonce: bytes,
        manifest: Manifest,
        record_key: bytes,
        grants: Mapping[bytes, int],
        patients: Set[bytes] = frozenset(),
    ) -> list[Body]:
        """The record entry and its grants: long-term keys (32 bytes) sealed as before,
        addresses (66 bytes) as stealth grants numbered 0, 1, ... (`patients` co-own).
        Depends on the manifest only, not on who stored the shards (thread-safe)."""
        owner = self.public_key
        record = RecordBody(
            record_id, nonce, manifest.digest(), manifest.size, manifest.k, manifest.n, owner
        )
        bodies: list[Body] = [record]
        index = 0
        for grantee, expires_at in grants.items():
            if len(grantee) == ADDRESS_SIZE:
                patient = grantee in patients
                bodies.append(
                    self._stealth(
                        record_id,
                        record_key,
                        grantee,
                        index,
                        expires_at=expires_at,
                        patient=patient,
                    )
                )
                index += 1
            else:
                bodies.append(
                    GrantBody(record_id, grantee, self._seal(record_key, grantee), expires_at)
                )
        return bodies

    def _seal(self, record_key: bytes, grantee: bytes) -> bytes:
        return seal_key(record_key, grantee, self.random_bytes(32))

    def _stealth(
        self,
        record_id: bytes,
        record_key: bytes,
        address: bytes,
        index: int,
        *,
        expires_at: int,
        patient: bool,
    ) -> StealthGrantBody:
        """A stealth grant to an address, with fresh random bytes from this node."""
        context = grant_context(record_id, index)
        grant = make_grant(Address.from_bytes(address), record_key, self.random_bytes(32), context)
        return StealthGrantBody(record_id, grant.to_bytes(), index, expires_at, patient)

    # -- reading ----------------------------------------------------------------------

    def lookup(self, record_id: bytes) -> RecordInfo:
        state = self.ledger.state()
        record = state.records.get(record_id)
        if record is None:
            raise UnknownRecord(f"unknown record {short(record_id)}")
        if record_id in state.tombstones:
            raise UnknownRecord(f"record {short(record_id)} was deleted")
        return record

    def grant_of(self, record_id: bytes, reader: bytes) -> GrantInfo:
        self.lookup(record_id)
        grant = self.ledger.state().grant_for(record_id, reader, self.clock_ms())
        if grant is None:
            raise NoGrant(f"no grant for key {short(reader)} on record {short(record_id)}")
        return grant

    async def open(
        self,
        record_id: bytes,
        reader: bytes | None = None,
        permits: Sequence[bytes] = (),
        purpose: Purpose | None = None,
    ) -> ReadHandle:
        """Everything needed to stream a record's ciphertext to `reader` (default: this node).

        Holders serve blocks only with an access statement (a permit, version 2)
        signed by the reader: this node signs its own (for `purpose`; none stated:
        `default_purpose`, ETREAT under an emergency grant); a read as
        anyone else needs `permits` that reader signed for this node (`get --as`
        signs them in the CLI, where the key stays; they state the purpose).
        The read's statement is logged to the ledger as the read starts (a small
        record's when its get ends: see `_open`)
        (node/records/witness.py). The get is counted from here: failed here, or
        when its stream ends.
        """
        meter = self.metrics.get_started()
        try:
            return await self._open(record_id, reader, permits, purpose, meter)
        except BaseException as exc:
            meter.failed(exc)
            raise

    async def _open(
        self,
        record_id: bytes,
        reader: bytes | None,
        permits: Sequence[bytes],
        purpose: Purpose | None,
        meter: GetMeter,
    ) -> ReadHandle:
        record = self.lookup(record_id)
        grant = self.grant_of(record_id, reader or self.public_key)
        if reader is None:
            stated = purpose or self.default_purpose(record_id)
            source = self.own_permits(record_id, stated, read_id=self.random_bytes(16))
        else:
            source = self._given_permits(record_id, reader, permits)
        statement = source()
        manifest = await self.manifest_of(record)
        sizes = [manifest.block_size(s) for s in range(manifest.segment_count)]
        prefetched = HeldBlocks(manifest)
        if statement is not None and held.small(sizes):
            # Logged when the get ends (delivered, failed or abandoned): the ledger
            # append is CPU on this thread and would delay a small get by as much.
            # Holders that served witness the read if this node never logs it.
            meter.when_ended(functools.partial(self._log_read, statement))
            holdings = await self._held_of(manifest, statement, prefetched)
        else:
            self._log_read(statement)
            holdings = await self.holdings_of(record_id, enough=manifest.k)
        holders: dict[int, list[Contact]] = {}
        for holding in holdings:
            for index in holding.found.complete:
                holders.setdefault(index, []).append(holding.contact)
        fetcher = BlockFetcher(
            port=self.port,
            manifest=manifest,
            holders=holders,
            latency=self.latency,
            timeout=self.config.call_timeout,
            permit=source,
            meter=meter,
            prefetched=prefetched.chosen(),
        )
        fetcher.corrupt.update(prefetched.corrupt)
        return ReadHandle(record, manifest, grant, fetcher, meter)

    def _log_read(self, statement: bytes | None) -> None:
        if self.log_read is not None and statement is not None:
            self.log_read(statement)

    def default_purpose(self, record_id: bytes) -> Purpose:
        """Why this node reads when its caller does not say: ETREAT when its read right
        comes from an emergency grant (protocol.emergency.purpose), else TREAT."""
        state = self.ledger.state()
        records = (
            (e, state.rejected.get(e.hash))
            for e in self.ledger.book.entries()
            if e.record_id == record_id
        )  # read only for an expiring grant
        return default_purpose(state, record_id, self.public_key, records, self.clock_ms())

    def permitted(self, record_id: bytes) -> bool:
        """Whether this node reads the record by a permit: it owns it or holds a current
        grant (honest holders serve such reads whatever the record's health)."""
        state = self.ledger.state()
        record = state.records.get(record_id)
        if record is None or record_id in state.tombstones:
            return False
        return (
            record.owner == self.public_key
            or state.grant_for(record_id, self.public_key, self.clock_ms()) is not None
        )

    def permit_as(
        self,
        record_id: bytes,
        signer: nacl.signing.SigningKey,
        purpose: Purpose = Purpose.TREAT,
    ) -> bytes:
        """A statement for this node to read the record as `signer` (who holds that key
        here: tests, simulations, demos; the CLI signs its own), a read of its own."""
        return permit.sign(signer, record_id, self.public_key, self.clock_ms(),
                           read_id=self.random_bytes(16), purpose=purpose)  # fmt: skip

    def own_permits(
        self, record_id: bytes, purpose: Purpose = Purpose.HOPERAT, *, read_id: bytes | None = None
    ) -> Permit:
        """Statements for reads as this node, signed anew once half their life has passed,
        all of one read id. Default: operations (audits, repair, a put's top-up), whose
        read id is one per record and day, so a holder witnessing a grantee node's
        audits logs at most one read a day per record."""
        rid = read_id or _upkeep_read_id(record_id, self.clock_ms())
        current: list[tuple[int, bytes]] = []

        def source() -> bytes:
            now = self.clock_ms()
            if not current or now - current[0][0] > permit.LIFETIME_MS // 2:
                made = permit.sign(self.identity, record_id, self.public_key, now, read_id=rid,
                                   purpose=purpose)  # fmt: skip
                current[:] = [(now, made)]
            return current[0][1]

        return source

    def _given_permits(self, record_id: bytes, reader: bytes, permits: Sequence[bytes]) -> Permit:
        """The freshest of permits a reader signed elsewhere (each checked here first)."""
        issued: list[tuple[int, bytes]] = []
        read_ids: set[bytes] = set()
        for raw in permits:
            try:
                found = permit.decode(raw)
            except permit.PermitError as exc:
                raise RecordError(
                    f"the read permit does not verify: {exc}", reason=BAD_REQUEST
                ) from None
            if (found.record_id, found.reader, found.node) != (record_id, reader, self.public_key):
                raise RecordError(
                    "the read permit is not for this record, this reader and this node",
                    reason=BAD_REQUEST,
                )
            read_ids.add(found.read_id)
            issued.append((found.issued_at_ms, raw))
        if len(read_ids) > 1:
            raise RecordError(
                "the read's statements name different read ids (one read, one id)",
                reason=BAD_REQUEST,
            )
        if not issued:
            raise RecordError(
                f"a read as {short(reader)} needs a permit signed with that key for this node",
                reason=BAD_REQUEST,
            )
        issued.sort()

        def source() -> bytes:
            now = self.clock_ms()
            usable = [raw for at, raw in issued if permit.fresh(at, now)]
            return usable[-1] if usable else issued[-1][1]  # stale: the holder says so

        return source

    def holder_proofs(self, manifest: Manifest) -> Proof | None:
        """Holder proofs for repair reads, if this node holds a complete index of the record."""
        if not self.shards.holdings.indices(manifest.record_id)[0]:
            return None
        made: dict[tuple[bytes, int], HolderProof | None] = {}

        async def proof(holder: Contact) -> HolderProof | None:
            key = (holder.public_key, bucket_of(self.clock_ms()))
            if key not in made:
                made[key] = await self.shards.holder_proof(manifest, holder.public_key, key[1])
            return made[key]

        return proof

    def record_key(self, handle: ReadHandle) -> bytes:
        """The record key, when this node itself is the reader."""
        return self.own_key(handle.grant)

    def own_key(self, grant: GrantInfo) -> bytes:
        """The record key a grant to this node seals."""
        return open_sealed_key(grant.sealed_key, self.identity)

    async def plaintext(
        self, handle: ReadHandle, record_key: bytes, first: int = 0, last: int | None = None
    ) -> AsyncIterator[bytes]:
        """The record's plaintext, segment by segment (decrypted in a worker thread).

        A whole read fetches a padded record's padding segments and checks them
        like the rest (holders see the same reads whatever the true size), then
        drops them. `first` and `last` (inclusive) read only those segments, for
        byte ranges.
        """
        manifest = handle.manifest
        meter = handle.meter
        meter.plaintext = True  # count the record's bytes, not the fetcher's ciphertext
        try:
            cipher = SegmentCipher(record_key, manifest.record_id)
            size = manifest.contents(cipher).size

            def decrypt(segment: int, ciphertext: memoryview) -> bytes:
                last = manifest.is_last(segment)
                return bytes(cipher.decrypt_segment_in_place(segment, last, ciphertext))

            # Decrypted in the fetcher's decode threads, two segments at once, in order.
            decrypted = handle.fetcher.ciphertext(first, finish=decrypt)
            async with contextlib.aclosing(decrypted) as segments:
                async for segment, plaintext in segments:
                    part = manifest.record_part(segment, plaintext, size)
                    meter.moved(len(part))
                    yield part
                    if last is not None and segment >= last:
                        meter.finished()  # before the fetcher is closed: a range, complete
                        return
        except BaseException as exc:
            meter.failed(exc)
            raise
        meter.finished()

    async def manifest_of(self, record: RecordInfo) -> Manifest:
        """The record's manifest, checked against the ledger's hash.

        Candidates are asked a few at a time and the first good answer wins,
        so holders that have left cost one call timeout in all, not each.
        """
        local = self.shards.manifest(record.record_id)
        if local is not None and local.digest() == record.manifest_hash:
            return local
        found: list[Manifest] = []
        limiter = trio.CapacityLimiter(MANIFEST_ASKS_AT_ONCE)

        async def ask(contact: Contact, done: trio.CancelScope) -> None:
            async with limiter:
                try:
                    answer = await self.port.call(
                        contact, GetManifest(record.record_id), self.config.call_timeout
                    )
                except RpcError:
                    return
            if not isinstance(answer, ManifestFound) or answer.manifest is None:
                return
            try:
                manifest = Manifest.decode(answer.manifest)
            except ManifestError:
                return
            if manifest.digest() == record.manifest_hash:
                found.append(manifest)
                done.cancel()

        async with trio.open_nursery() as nursery:
            for contact in await self._holder_candidates(record.record_id):
                nursery.start_soon(ask, contact, nursery.cancel_scope)
        if found:
            return found[0]
        raise RecordError(
            f"no holder of record {short(record.record_id)} served its manifest",
            reason=NO_MANIFEST,
        )

    async def _holder_candidates(self, record_id: bytes) -> list[Contact]:
        key = record_dht_key(record_id)
        found = await self.dht.find_providers(key)
        contacts = {p.provider.public_key: Contact.from_info(p.provider) for p in found.providers}
        for contact in [self.dht.contact, *found.closest]:
            contacts.setdefault(contact.public_key, contact)
        return list(contacts.values())

    def _known_candidates(self, record_id: bytes) -> list[Contact]:
        """Candidate holders from what this node already knows, without a lookup: itself,
        the provider records it stores for the key, its routing table's closest."""
        key = record_dht_key(record_id)
        contacts = {
            p.provider.public_key: Contact.from_info(p.provider)
            for p in self.dht.store.providers(key, self.dht.wall_clock())
        }
        for contact in [self.dht.contact, *self.dht.routing.closest(key)]:
            contacts.setdefault(contact.public_key, contact)
        return list(contacts.values())

    async def holdings_of(
        self, record_id: bytes, verify: bool = False, *, enough: int | None = None
    ) -> list[Holding]:
        """What each reachable candidate holder holds of the record.

        With `enough` (a reader's k), stop waiting READ_GRACE seconds after the
        answers cover that many distinct complete indices: a reader needs no
        census, and waiting out every departed candidate's timeout is most
        of a get's latency under churn. A reader first asks the candidates it
        knows without a DHT lookup (`_known_candidates`); the lookup runs only
        when their answers do not cover `enough` from `enough` distinct nodes
        (one member claiming every index cannot stop the lookup). Surveys
        (no `enough`) look up and wait for every answer.
        """
        results: list[Holding] = []
        asked: set[bytes] = set()
        if enough is not None:
            known = self._known_candidates(record_id)
            asked = {c.public_key for c in known}
            results = await self._ask_holdings(record_id, known, verify, enough)
            if _covers(results, enough):
                return sorted(results, key=lambda h: h.contact.node_id)
        more = [c for c in await self._holder_candidates(record_id) if c.public_key not in asked]
        results += await self._ask_holdings(record_id, more, verify, enough, results)
        return sorted(results, key=lambda h: h.contact.node_id)

    async def _held_of(
        self, manifest: Manifest, statement: bytes, found: HeldBlocks
    ) -> list[Holding]:
        """A small record's holdings and blocks in one round (FetchHeld, protocol.records.held)
        from the first candidates known without a lookup: k at once, a spare only when one
        of them fails or is late (`held.spare_delay`); stops as soon as k indices are whole
        and verified (no grace: the blocks are in hand). Candidates that do not know
        FetchHeld (older nodes), the rest of the known ones and, if still short, a lookup's
        are asked GetHoldings as before, and the fetcher asks FetchBlocks for what is missing."""
        record_id = manifest.record_id
        k = manifest.k
        known = self._known_candidates(record_id)
        first_count = held.first_asks(k, manifest.n)
        asks = held.held_asks(k, manifest.n)
        first, spare = known[:first_count], known[first_count:asks]
        results: list[Holding] = []
        older: list[Contact] = []
        started = trio.current_time()
        expected = max((self.latency.rank(c.public_key) for c in first), default=0.0)
        late = trio.CancelScope(deadline=started + held.spare_delay(-1.0, expected))

        async def ask(contact: Contact, nursery: trio.Nursery) -> None:
            before = len(found.indices)
            await self._ask_held(contact, statement, found, results, older)
            if len(found.indices) == before:
                late.cancel()  # no new whole index from this one: the spare, now
            now = trio.current_time()
            if found.whole():
                nursery.cancel_scope.cancel()
            elif k > 1 and len(found.indices) == k - 1:  # all but one in: the last is due
                due = started + held.spare_delay(now - started, expected)
                late.deadline = min(late.deadline, due)

        async def ask_spare(nursery: trio.Nursery) -> None:
            with late:
                await trio.sleep_forever()
            if found.whole():
                return
            for contact in spare:
                nursery.start_soon(ask, contact, nursery)

        async with trio.open_nursery() as nursery:
            for contact in first:
                nursery.start_soon(ask, contact, nursery)
            if spare:
                nursery.start_soon(ask_spare, nursery)
        if found.whole():
            return sorted(results, key=lambda h: h.contact.node_id)
        asked = {c.public_key for c in first} | {c.public_key for c in spare if late.cancel_called}
        unasked = [c for c in known if c.public_key not in asked]
        also = older if _covers(results, k) else [*older, *unasked]  # the rest only if short
        results += await self._ask_holdings(record_id, also, False, k, results)
        if not _covers(results, k):
            looked = await self._holder_candidates(record_id)
            known_keys = {c.public_key for c in known}
            more = [c for c in looked if c.public_key not in known_keys]
            results += await self._ask_holdings(record_id, more, False, k, results)
        return sorted(results, key=lambda h: h.contact.node_id)

    async def _ask_held(
        self,
        contact: Contact,
        statement: bytes,
        found: HeldBlocks,
        results: list[Holding],
        older: list[Contact],
    ) -> None:
        """One FetchHeld: its verified blocks into `found`, its holdings into `results`
        (an older node that does not know the message into `older`)."""
        started = trio.current_time()
        try:
            answer = await self.port.call(
                contact, FetchHeld(found.manifest.record_id, statement), self.config.call_timeout
            )
        except RemoteError as exc:
            if exc.code == ErrorCode.UNKNOWN_TYPE:
                older.append(contact)
            return
        except RpcError:
            return
        self.latency.note(contact.public_key, trio.current_time() - started)
        if not isinstance(answer, HeldFound):
            return
        if found.add(contact.public_key, answer):
            results.append(Holding(contact, HoldingsFound(answer.complete, answer.partial, ())))

    async def _ask_holdings(
        self,
        record_id: bytes,
        candidates: Sequence[Contact],
        verify: bool,
        enough: int | None,
        earlier: Sequence[Holding] = (),
    ) -> list[Holding]:
        """GetHoldings to every candidate at once; the answers that hold something."""
        results: list[Holding] = []
        covered: set[int] = {i for h in earlier for i in h.found.complete}

        async def ask(contact: Contact, nursery: trio.Nursery) -> None:
            try:
                answer = await self.port.call(
                    contact, GetHoldings(record_id, verify), self.config.call_timeout
                )
            except RpcError:
                return
            if isinstance(answer, HoldingsFound) and (
                answer.complete or answer.partial or answer.corrupt
            ):
                results.append(Holding(contact, answer))
                before = len(covered)
                covered.update(answer.complete)
                if enough is not None and before < enough <= len(covered):
                    nursery.cancel_scope.deadline = trio.current_time() + READ_GRACE

        async with trio.open_nursery() as nursery:
            for contact in candidates:
                nursery.start_soon(ask, contact, nursery)
        return results

    # -- the owner's entries ---------------------------------------------------------------

    def _owned(self, record_id: bytes) -> RecordInfo:
        record = self.lookup(record_id)
        if record.owner != self.public_key:
            raise RecordError(
                f"record {short(record_id)} is owned by {short(record.owner)}, not this node"
            )
        return record

    def _check_expiry(self, expires_at: int) -> None:
        if expires_at and expires_at <= self.clock_ms():
            raise RecordError(
                "the expiry is in the past; give a future time, or none", reason=BAD_REQUEST
            )

    async def grant(
        self, record_id: bytes, grantee: bytes, expires_at: int = 0, *, patient: bool = False
    ) -> Entry:
        """Grant a long-term key (32 bytes, old format) or an address (66 bytes: a
        stealth grant at the record's next free index; `patient`: she co-owns sharing)."""
        self._check_expiry(expires_at)
        self._owned(record_id)
        _check_grantee(grantee)
        if patient and (len(grantee) != ADDRESS_SIZE or expires_at):
            raise RecordError("a co-owner (patient) grant goes to an address and never expires")
        own = self.grant_of(record_id, self.public_key)
        record_key = open_sealed_key(own.sealed_key, self.identity)
        if len(grantee) == ADDRESS_SIZE:
            index = self.ledger.stealth.next_index(record_id)
            return await self.ledger.append(
                self._stealth(
                    record_id, record_key, grantee, index, expires_at=expires_at, patient=patient
                )
            )
        return await self.ledger.append(
            GrantBody(record_id, grantee, self._seal(record_key, grantee), expires_at)
        )

    async def revoke(self, record_id: bytes, grantee: bytes) -> Entry:
        self._owned(record_id)
        if self.ledger.state().grant_for(record_id, grantee, self.clock_ms()) is None:
            raise RecordError(f"key {short(grantee)} holds no grant on record {short(record_id)}")
        return await self.ledger.append(RevokeBody(record_id, grantee))

    async def delete(self, record_id: bytes) -> Entry:
        """Tombstone the record: every holder deletes its shards when it sees the entry."""
        self._owned(record_id)
        return await self.ledger.append(TombstoneBody(record_id))

    def resolve(self, prefix: str) -> bytes:
        """The record whose id starts with `prefix` (hex, at least 8 digits): unique or refused."""
        text = prefix.lower()
        if not 8 <= len(text) <= 64 or any(c not in "0123456789abcdef" for c in text):
            raise RecordError(f"{prefix!r} is not a record id or a prefix of 8+ hex digits")
        found = [r for r in self.ledger.state().records if r.hex().startswith(text)]
        if not found:
            raise RecordError(f"unknown record {text[:16]}")
        if len(found) > 1:
            raise RecordError(f"{text} is the start of {len(found)} record ids; give more digits")
        return found[0]

    async def submit(self, raw: bytes) -> None:
        """Accept an entry a person signed elsewhere (e.g. an attestation made with --as).

        It must verify, follow its author's feed head, and keep the ledger's
        rules: a refused entry is never written (nor gossiped).
        """
        try:
            entry = decode_entry(raw)
        except InvalidEntry as exc:
            raise RecordError(f"the entry does not verify: {exc}") from None
        head = self.ledger.book.head_entry(entry.author)
        expected = (1, b"") if head is None else (head.seq + 1, head.hash)
        if (entry.seq, entry.prev) != expected:
            raise RecordError(
                f"the entry does not follow its author's feed (seq {entry.seq}, the next is"
                f" {expected[0]}): it may be a duplicate or signed against an old head"
            )
        await self.ledger.check_rules([entry])
        if not await self.ledger.ingest([raw]):
            raise RecordError("the entry was not accepted")


def _covers(holdings: Sequence[Holding], k: int) -> bool:
    """Whether `k` distinct nodes answered with complete indices that together are `k`
    or more (what one node claims, however much, counts as one)."""
    nodes = [h for h in holdings if h.found.complete]
    return len(nodes) >= k and len({i for h in nodes for i in h.found.complete}) >= k


def _upkeep_read_id(record_id: bytes, now_ms: int) -> bytes:
    """One read id per record and UTC day for this node's own operations reads."""
    day = (now_ms // 86_400_000).to_bytes(8, "big")
    return hashlib.blake2b(record_id + day, digest_size=16, person=b"medvault-upkeep").digest()
