"""Break-glass on the requester's node: ask each record's owner node, gather the answers.

The owner is the record's author in the ledger; its node is found in the
routing table, else by a DHT lookup of its id. A granted answer carries the
grant and emergency entries, ingested here at once (gossip would bring them
too), so a read can follow straight away.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import trio

from node.dht.service import DhtService
from node.ledger.service import LedgerService
from node.logs import event, get_logger, short_key
from node.net.errors import RemoteError, RpcError
from node.net.rpc_port import RpcPort
from protocol.dht.contact import Contact
from protocol.emergency.messages import EmergencyAnswer, EmergencyAsk
from protocol.ids import node_id

log = get_logger("emergency")
ASKS_AT_ONCE = 8  # owners asked at the same time
MAX_RECORDS = 256  # records one emergency request names at most


@dataclass(frozen=True)
class Outcome:
    record_id: bytes
    owner: bytes
    status: str  # granted, queued, refused, unreachable
    code: str = ""
    detail: str = ""
    expires_at: int = 0
    request_id: str = ""


class EmergencyAsker:
    def __init__(
        self, *, dht: DhtService, port: RpcPort, ledger: LedgerService, timeout: float
    ) -> None:
        self.dht = dht
        self.port = port
        self.ledger = ledger
        self.timeout = timeout

    async def ask_all(
        self, record_ids: Sequence[bytes], reason: str, duration_ms: int
    ) -> list[Outcome]:
        """One outcome per record, in the order given."""
        outcomes: dict[bytes, Outcome] = {}
        limit = trio.CapacityLimiter(ASKS_AT_ONCE)

        async def one(record_id: bytes) -> None:
            async with limit:
                outcomes[record_id] = await self.ask(record_id, reason, duration_ms)

        async with trio.open_nursery() as nursery:
            for record_id in dict.fromkeys(record_ids):
                nursery.start_soon(one, record_id)
        return [outcomes[r] for r in dict.fromkeys(record_ids)]

    async def ask(self, record_id: bytes, reason: str, duration_ms: int) -> Outcome:
        record = self.ledger.state().records.get(record_id)
        if record is None:
            return Outcome(record_id, b"", "refused", "unknown_record", "not in this ledger")
        owner = record.owner
        contact = await self._contact(owner)
        if contact is None:
            return Outcome(record_id, owner, "unreachable", detail="the owner's node is not found")
        try:
            answer = await self.port.call(
                contact, EmergencyAsk(record_id, reason, duration_ms), self.timeout
            )
        except RemoteError as exc:
            return Outcome(record_id, owner, "refused", str(exc.code), exc.detail[:200])
        except RpcError as exc:
            return Outcome(record_id, owner, "unreachable", detail=str(exc)[:200])
        if not isinstance(answer, EmergencyAnswer):
            return Outcome(record_id, owner, "unreachable", detail="unexpected answer")
        if answer.status == "granted" and answer.entries:
            await self.ledger.ingest(answer.entries)  # checked like any gossiped entry
        event(
            log,
            logging.INFO,
            "emergency request answered",
            record=record_id.hex()[:16],
            owner=short_key(owner),
            status=answer.status,
            code=answer.code,
        )
        return Outcome(
            record_id,
            owner,
            answer.status,
            answer.code,
            answer.detail,
            answer.expires_at,
            answer.request_id,
        )

    async def _contact(self, owner: bytes) -> Contact | None:
        if owner == self.dht.contact.public_key:
            return self.dht.contact
        target = node_id(owner)
        known = self.dht.routing.get(target)
        if known is not None:
            return known
        found = await self.dht.find_node(target)
        return next((c for c in found.closest if c.public_key == owner), None)
