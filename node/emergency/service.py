"""Break-glass on the owner's node: decide by policy, grant, queue, sign off, review.

A requester's node asks (EmergencyAsk) over the authenticated connection; the
owner's policy (node.config.emergency) decides by the caller's node key or
certified site. Allowed: a normal grant to the requester's node key that
expires, and an `emergency` entry whose reason is sealed to the record key,
written together; or, when a human must approve, a place in a bounded queue.
Refusals are answered with a code and logged once per requester and code.
Reasons never reach the log: they may say much about a patient.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import nacl.signing

from node.config.emergency import EmergencyConfig
from node.emergency.queue import ApprovalQueue, Pending, QueueFull
from node.ledger.service import LedgerService
from node.logs import RateLimitedLog, event, get_logger, short_key
from node.net.dispatch import Dispatcher
from node.net.rpc_port import Caller
from node.records.errors import RecordError
from protocol.emergency import sealing
from protocol.emergency.messages import EmergencyAnswer, EmergencyAsk
from protocol.emergency.policy import Allow, Refusal, Refuse, decide
from protocol.emergency.review import Access, accesses
from protocol.ledger.entries import (
    EmergencyBody,
    EmergencySignoffBody,
    Entry,
    GrantBody,
)
from storage.codec.crypt import open_sealed_key, seal_key

log = get_logger("emergency")
HOUR_MS = 3_600_000


@dataclass(frozen=True)
class Reviewed:
    """An emergency access as the owner's operator reviews it (reason opened here)."""

    access: Access
    site: str | None
    reason: str
    note: str | None


class EmergencyService:
    def __init__(
        self,
        *,
        identity_key: Callable[[bytes], bytes],
        public_key: bytes,
        ledger: LedgerService,
        config: EmergencyConfig,
        site_of: Callable[[bytes], str | None],
        clock_ms: Callable[[], int],
        random_bytes: Callable[[int], bytes],
    ) -> None:
        self._open_key = identity_key  # a sealed record key in, the record key out
        self.public_key = public_key
        self.ledger = ledger
        self.config = config
        self.site_of = site_of
        self.clock_ms = clock_ms
        self.random_bytes = random_bytes
        self.queue = ApprovalQueue(
            most=config.max_pending, per_requester=config.max_pending_per_requester
        )
        self.refused = 0  # requests refused (tests and status)
        self._granted: dict[bytes, deque[int]] = {}  # requester -> grant times this hour
        self._refusals = RateLimitedLog(log, "emergency access refused", period=300.0)

    def install(self, dispatcher: Dispatcher) -> None:
        dispatcher.route(EmergencyAsk, self._on_ask)

    # -- a request arrives ---------------------------------------------------------------

    async def _on_ask(self, message: EmergencyAsk, caller: Caller) -> EmergencyAnswer:
        requester = caller.remote_public_key
        site = self.site_of(requester)
        decision = self._decide(message, requester, site)
        if isinstance(decision, Refuse):
            return self._refuse(requester, message.record_id, decision)
        if decision.approval:
            return self._enqueue(message, requester, site, decision.duration_ms)
        try:
            entries = await self.grant(
                message.record_id, requester, message.reason, decision.duration_ms
            )
        except _Refused as exc:
            return self._refuse(requester, message.record_id, exc.refusal)
        body = entries[-1].body
        assert isinstance(body, EmergencyBody)
        return EmergencyAnswer(
            "granted", expires_at=body.expires_at, entries=tuple(e.raw for e in entries)
        )

    def _decide(self, message: EmergencyAsk, requester: bytes, site: str | None) -> Allow | Refuse:
        decision = decide(self.config.policy, requester, site, message.duration_ms)
        if isinstance(decision, Refuse):
            return decision
        state = self.ledger.state()
        record = state.records.get(message.record_id)
        if (
            record is None
            or record.owner != self.public_key
            or message.record_id in (state.tombstones)
        ):
            return Refuse(Refusal.UNKNOWN_RECORD, "this node owns no such record")
        return decision

    def _refuse(self, requester: bytes, record_id: bytes, refusal: Refuse) -> EmergencyAnswer:
        self.refused += 1
        self._refusals.note(
            str(refusal.code),
            short_key(requester),
            record=record_id.hex()[:16],
            site=self.site_of(requester) or "",
        )
        return EmergencyAnswer("refused", code=str(refusal.code), detail=refusal.detail)

    def _enqueue(
        self, message: EmergencyAsk, requester: bytes, site: str | None, duration_ms: int
    ) -> EmergencyAnswer:
        item = Pending(
            self.random_bytes(8).hex(),
            message.record_id,
            requester,
            site,
            message.reason,
            duration_ms,
            self.clock_ms(),
        )
        try:
            queued = self.queue.add(item)
        except QueueFull as exc:
            return self._refuse(requester, message.record_id, Refuse(Refusal.QUEUE_FULL, str(exc)))
        if queued is item:
            event(
                log,
                logging.WARNING,
                "emergency access queued for approval",
                request=item.request_id,
                record=item.record_id.hex()[:16],
                requester=short_key(requester),
                site=site or "",
            )
        return EmergencyAnswer("queued", request_id=queued.request_id)

    # -- granting ---------------------------------------------------------------------

    async def grant(
        self, record_id: bytes, requester: bytes, reason: str, duration_ms: int
    ) -> list[Entry]:
        """Write the expiring grant and its emergency entry (one batch); an active
        emergency grant to the same node is answered again instead of written twice."""
        now = self.clock_ms()
        state = self.ledger.state()
        current = state.grant_for(record_id, requester, now)
        for access in reversed(accesses(self._record_entries(record_id))):
            body = access.body
            if (
                body.requester == requester
                and current is not None
                and current.expires_at == body.expires_at
            ):
                return [self._entry(current.entry), access.entry]
        if current is not None and (
            current.expires_at == 0 or current.expires_at >= now + duration_ms
        ):
            # An emergency grant would replace (and so shorten) the ordinary one.
            raise _Refused(
                Refuse(
                    Refusal.ALREADY_GRANTED,
                    "the requester already holds a grant of this record; read it as usual",
                )
            )
        self._count_grant(requester, now)
        own = state.grant_for(record_id, self.public_key, now)
        if own is None:
            raise _Refused(Refuse(Refusal.UNKNOWN_RECORD, "this node holds no key of the record"))
        record_key = self._open_key(own.sealed_key)
        expires_at = math.ceil((now + duration_ms) / 1000) * 1000  # on a second
        sealed = sealing.seal(
            record_key,
            sealing.REASON,
            record_id,
            requester,
            reason,
            nonce=self.random_bytes(sealing.NONCE_SIZE),
        )
        entries = await self.ledger.append_all(
            [
                GrantBody(
                    record_id,
                    requester,
                    seal_key(record_key, requester, self.random_bytes(32)),
                    expires_at,
                ),
                EmergencyBody(record_id, requester, expires_at, sealed),
            ]
        )
        event(
            log,
            logging.WARNING,
            "emergency access granted",
            record=record_id.hex()[:16],
            requester=short_key(requester),
            site=self.site_of(requester) or "",
            expires_at=expires_at,
            entry=entries[-1].hash.hex()[:16],
        )
        return entries

    def _count_grant(self, requester: bytes, now: int) -> None:
        times = self._granted.setdefault(requester, deque())
        while times and now - times[0] >= HOUR_MS:
            times.popleft()
        if len(times) >= self.config.max_grants_per_hour:
            raise _Refused(
                Refuse(Refusal.TOO_MANY, f"at most {self.config.max_grants_per_hour} an hour")
            )
        times.append(now)

    def _entry(self, entry_hash: bytes) -> Entry:
        found = self.ledger.book.get(entry_hash)
        assert found is not None
        return found

    def _record_entries(self, record_id: bytes | None) -> list[tuple[Entry, str | None]]:
        rejected = self.ledger.state().rejected
        return [
            (e, rejected.get(e.hash))
            for e in self.ledger.book.entries()
            if record_id is None or e.record_id == record_id
        ]

    # -- operators --------------------------------------------------------------------

    async def approve(self, request_id: str) -> list[Entry]:
        item = self.queue.take(request_id)
        if item is None:
            raise RecordError(f"no emergency request {request_id!r} is waiting")
        try:
            return await self.grant(item.record_id, item.requester, item.reason, item.duration_ms)
        except _Refused as exc:
            raise RecordError(f"cannot grant: {exc.refusal.detail}") from None

    def deny(self, request_id: str) -> Pending:
        item = self.queue.take(request_id)
        if item is None:
            raise RecordError(f"no emergency request {request_id!r} is waiting")
        event(
            log,
            logging.WARNING,
            "emergency access denied",
            request=request_id,
            record=item.record_id.hex()[:16],
            requester=short_key(item.requester),
        )
        return item

    def resolve(self, prefix: str) -> Access:
        """This node's emergency access whose entry hash starts with `prefix` (8+ hex)."""
        text = prefix.lower()
        if not 8 <= len(text) <= 64 or any(c not in "0123456789abcdef" for c in text):
            raise RecordError(f"{prefix!r} is not an emergency id (8+ hex digits)")
        found = [a for a in self.accesses() if a.entry.hash.hex().startswith(text)]
        if len(found) != 1:
            raise RecordError(
                f"{len(found)} emergency accesses of this node start with {text}; give more"
            )
        return found[0]

    async def signoff(self, prefix: str, note: str) -> Entry:
        """The owner's sign-off entry: the access was reviewed (and stops being flagged)."""
        access = self.resolve(prefix)
        if access.signed_off:
            raise RecordError(f"emergency access {prefix} is signed off already")
        record_key = self._record_key(access.body.record_id)
        sealed = sealing.seal(
            record_key,
            sealing.NOTE,
            access.body.record_id,
            access.entry.hash,
            sealing.check_text(note, "note"),
            nonce=self.random_bytes(sealing.NONCE_SIZE),
        )
        entry = await self.ledger.append(
            EmergencySignoffBody(access.body.record_id, access.entry.hash, sealed)
        )
        event(
            log,
            logging.INFO,
            "emergency access signed off",
            emergency=access.entry.hash.hex()[:16],
            record=access.body.record_id.hex()[:16],
        )
        return entry

    def accesses(self) -> list[Access]:
        """Emergency accesses to this node's own records, oldest first."""
        found = accesses(self._record_entries(None))
        return [a for a in found if a.entry.author == self.public_key]

    def review(self, *, include_signed: bool) -> list[Reviewed]:
        rows = []
        for access in self.accesses():
            if access.signed_off and not include_signed:
                continue
            rows.append(self._reviewed(access))
        return rows

    def _reviewed(self, access: Access) -> Reviewed:
        body = access.body
        reason, note = "(the reason does not open here)", None
        try:
            key = self._record_key(body.record_id)
            reason = sealing.open_text(
                key, sealing.REASON, body.record_id, body.requester, body.reason
            )
            if access.signoff is not None:
                signoff = access.signoff.body
                assert isinstance(signoff, EmergencySignoffBody)
                note = sealing.open_text(
                    key, sealing.NOTE, body.record_id, access.entry.hash, signoff.note
                )
        except (sealing.SealError, RecordError):
            pass
        return Reviewed(access, self.site_of(body.requester), reason, note)

    def _record_key(self, record_id: bytes) -> bytes:
        state = self.ledger.state()
        own = state.grants.get((record_id, self.public_key))
        if own is None:
            raise RecordError(f"this node holds no key of record {record_id.hex()[:16]}")
        return self._open_key(own.sealed_key)


class _Refused(Exception):
    def __init__(self, refusal: Refuse) -> None:
        super().__init__(refusal.detail)
        self.refusal = refusal


def opener(identity: nacl.signing.SigningKey) -> Callable[[bytes], bytes]:
    """How the service opens this node's sealed record keys (its identity stays put)."""

    def open_key(sealed: bytes) -> bytes:
        return open_sealed_key(sealed, identity)

    return open_key
