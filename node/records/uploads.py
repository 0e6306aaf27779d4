"""Who may upload what to this node, and how much: the admission of a batch.

A record the ledger does not know is uploaded by its owner alone (each batch
proves it by the nonce its id was derived from), its blocks are charged to
that writer (node.records.pending: past `pending_cap` bytes per writer a batch
is refused before anything is written), and its uploader may take back what
it sent (DropShards), after which batches still in flight are refused. A
recorded record (repair, a put the ledger already knows) is never charged
nor refused here.
"""

from __future__ import annotations

import collections
from collections.abc import Awaitable, Callable

from node.logs import RateLimitedLog, get_logger, short_key
from node.net.dispatch import Dispatcher
from node.net.errors import RequestError
from node.net.rpc_port import Caller
from node.records.pending import PendingBytes, Reservation
from protocol.ledger.entries import derive_record_id
from protocol.net.messages import ErrorCode
from protocol.records.messages import DropShards, ShardsDropped, StoreShards
from storage.store.holdings import ROW_WEIGHT, Holdings

log = get_logger("shards")
MAX_DROPPED = 4096  # dropped uploads remembered, to refuse their late blocks
DROPPED = "this upload was dropped by its writer"


class Uploads:
    def __init__(
        self,
        *,
        holdings: Holdings,
        pending: PendingBytes,
        recorded: Callable[[bytes], bool],
        refused: RateLimitedLog,
        delete_record: Callable[[bytes], Awaitable[int]],
    ) -> None:
        self.holdings = holdings
        self.recorded = recorded  # whether the ledger knows the record
        self.pending = pending  # each writer's bytes of records the ledger does not know
        self._refused = refused
        self._capped = RateLimitedLog(log, "pending shard bytes capped", period=3600.0)
        self.delete_record = delete_record
        # Uploads their writer dropped: blocks of them still in flight are refused.
        self._dropped: collections.OrderedDict[tuple[bytes, bytes], None] = (
            collections.OrderedDict()
        )  # (record, writer): that writer's late batches of that record are refused

    def install(self, dispatcher: Dispatcher) -> None:
        dispatcher.route(DropShards, self._on_drop)

    def admit(self, message: StoreShards, sender: bytes) -> Reservation | None:
        """Refuse a batch `sender` may not send (RequestError); else its charge to the
        writer (None: a recorded record, never charged)."""
        if self.dropped(message.record_id, sender):
            raise RequestError(ErrorCode.BAD_REQUEST, DROPPED)
        self._check_uploader(message, sender)
        return self._reserve(message, sender)

    def dropped(self, record_id: bytes, sender: bytes) -> bool:
        """Whether `sender` dropped its upload of this record (still unrecorded)."""
        return (record_id, sender) in self._dropped and not self.recorded(record_id)

    def settle(self, charge: Reservation | None, record_id: bytes, added: int, keep: bool) -> None:
        """A batch's charge becomes what it added (nothing if not kept or now recorded)."""
        if charge is not None:
            self.pending.settle(charge, added, keep=keep and not self.recorded(record_id))

    def _check_uploader(self, message: StoreShards, sender: bytes) -> None:
        """A record the ledger does not know is uploaded by its owner alone.

        Its id is derived from the owner's key and a nonce; a batch proves its
        sender is the owner by that nonce. Otherwise a member that saw a record
        id (it holds an index of a put in progress) could send other holders a
        manifest of its own for it and make the honest upload fail there, charge
        junk to the writer, or drop the writer's blocks as "its" upload.
        """
        if self.recorded(message.record_id):
            return
        nonce = message.owner_nonce
        if nonce is None:  # a repair onto this node, most likely, ahead of gossip
            raise RequestError(
                ErrorCode.NOT_RECORDED,
                f"record {message.record_id.hex()[:16]} is not in this node's ledger yet: only"
                " its owner uploads it before then (a repair can come back once gossip"
                " brought it)",
            )
        if derive_record_id(sender, nonce) != message.record_id:
            self._refused.note("upload of a record it does not own", short_key(sender))
            raise RequestError(
                ErrorCode.BAD_REQUEST,
                "only a record's owner uploads it before the ledger knows it (no or a wrong"
                " owner nonce)",
            )

    def _reserve(self, message: StoreShards, sender: bytes) -> Reservation | None:
        """Charge a batch of an unrecorded record to its writer, or refuse it (UNAVAILABLE)
        when the writer's pending bytes would pass the cap. None: a recorded record
        (repair, a put the ledger already knows), never charged nor refused."""
        if self.recorded(message.record_id):
            return None
        size = sum(len(block) for block in message.blocks) + ROW_WEIGHT
        size += len(message.manifest) if message.manifest is not None else 0
        charge = self.pending.reserve(message.record_id, sender, size)
        if charge is not None:
            return charge
        writer = self.pending.writer_of(message.record_id) or sender
        held = self.pending.of(writer)
        self._capped.note(
            "shards of records the ledger does not know, over the writer's cap",
            who=short_key(writer),
            pending_bytes=held,
            cap=self.pending.cap,
        )
        raise RequestError(
            ErrorCode.UNAVAILABLE,
            f"pending bytes cap: the writer has {held} bytes of shards here for records the"
            f" ledger does not know (at most {self.pending.cap}); more are refused until"
            " those are recorded or collected",
        )

    async def _on_drop(self, message: DropShards, caller: Caller) -> ShardsDropped:
        """The uploader of a record the ledger does not know takes back what it sent."""
        record_id = message.record_id
        if self.recorded(record_id):
            raise RequestError(
                ErrorCode.BAD_REQUEST,
                "the record is in the ledger: only its owner's tombstone deletes it",
            )
        uploader = self.holdings.uploader(record_id)
        if uploader is not None and uploader != caller.remote_public_key:
            raise RequestError(ErrorCode.BAD_REQUEST, "only a record's uploader may drop it")
        # Remembered even when nothing arrived yet: batches still in flight are refused.
        # (A record id is unpredictable before its upload starts, so nobody else's
        # upload can be refused this way.)
        self._dropped[(record_id, caller.remote_public_key)] = None
        while len(self._dropped) > MAX_DROPPED:
            self._dropped.popitem(last=False)
        if uploader is None:
            return ShardsDropped(0)
        return ShardsDropped(await self.delete_record(record_id))
