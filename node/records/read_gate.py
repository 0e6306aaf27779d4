"""Whom a holder serves a record's blocks: checked at every FetchBlocks, by its own ledger.

Served: a request with a read permit (protocol.records.permit) that verifies,
names the calling node, is fresh, and whose reader this holder's ledger
makes the record's owner or a current grantee (expiry applied; revoked and
tombstoned refused); a request with a holder proof (a block of the caller's
own complete index at the segment this node picks, protocol.records.holder_proof),
which repair needs since a repairer is a holder, not a grantee, but only
while the record needs repair as this holder lately surveyed it
(node.records.views); and,
while the ledger does not know the record yet, its uploader (a put's top-up
reads back what it just sent). A permit is tried first: an owner or grantee
repairing or auditing reads as what it is. Anything else is refused with a
specific code and logged once per offender and reason (rate-limited).
"""

from __future__ import annotations

from collections.abc import Callable

from node.logs import RateLimitedLog, get_logger, short_key
from node.net.errors import RequestError
from node.offload import in_worker
from node.records.views import RecordViews
from protocol.ledger.state import LedgerState
from protocol.net.messages import ErrorCode
from protocol.records import permit
from protocol.records.holder_proof import accepted_segments
from protocol.records.messages import FetchBlocks, HolderProof
from storage.codec.manifest import Manifest
from storage.store.holdings import Holdings

log = get_logger("reads")
REFUSALS_LOGGED_EVERY = 60.0  # seconds: one line per offender and reason


class ReadGate:
    def __init__(
        self,
        *,
        state: Callable[[], LedgerState],
        holdings: Holdings,
        own_key: bytes,
        clock_ms: Callable[[], int],
        views: RecordViews | None = None,
        site_of: Callable[[bytes], str | None] = lambda node: None,
    ) -> None:
        self.state = state
        self.holdings = holdings
        self.own_key = own_key
        self.clock_ms = clock_ms
        # None: holder proofs are not weighed against the record's need (a bare shard
        # service in unit tests); a node always has views (node.assembly).
        self.views = views
        self.site_of = site_of  # a caller's certified site
        self.refusals = RateLimitedLog(log, "read refused", period=REFUSALS_LOGGED_EVERY)
        self.foreign = RateLimitedLog(
            log, "blocks of another record refused", period=REFUSALS_LOGGED_EVERY
        )

    async def admit(
        self, message: FetchBlocks, manifest: Manifest, caller: bytes
    ) -> permit.ReadPermit | None:
        """The access statement `caller` reads under (None: a repair read or an upload's
        read-back) if it may have the record's blocks; RequestError (logged) if not."""
        try:
            return await self._admit(message, manifest, caller)
        except RequestError as exc:
            self.refusals.note(
                exc.code, who=short_key(caller), record=message.record_id.hex()[:16], why=exc.detail
            )
            raise

    def refused_foreign(self, caller: bytes, record_id: bytes, count: int) -> None:
        """Blocks named by this record's manifest were noted first for another record."""
        self.foreign.note(
            "named by a later record",
            who=short_key(caller),
            record=record_id.hex()[:16],
            blocks=count,
        )

    async def _admit(
        self, message: FetchBlocks, manifest: Manifest, caller: bytes
    ) -> permit.ReadPermit | None:
        record_id = message.record_id
        state = self.state()
        record = state.records.get(record_id)
        if record is None and caller == self.holdings.uploader(record_id):
            return None  # its own upload, not recorded yet: nothing it did not send itself
        if message.proof is None and message.permit is None:
            raise RequestError(
                ErrorCode.FORBIDDEN,
                "a read needs a permit signed by the record's owner or a grantee",
            )
        if record is None:
            raise RequestError(
                ErrorCode.NOT_RECORDED,
                f"record {record_id.hex()[:16]} is not in this holder's ledger (yet)",
            )
        if record_id in state.tombstones:
            raise RequestError(ErrorCode.NO_GRANT, f"record {record_id.hex()[:16]} was deleted")
        now = self.clock_ms()
        if message.permit is not None:
            statement = self._statement(message, caller, now)
            if statement is not None:
                reader = statement.reader
                if reader == record.owner or state.grant_for(record_id, reader, now) is not None:
                    return statement
                if message.proof is None:
                    raise RequestError(
                        ErrorCode.NO_GRANT,
                        f"key {reader.hex()[:16]} holds no current grant on record"
                        f" {record_id.hex()[:16]} in this holder's ledger (revoked, expired,"
                        " or not arrived yet)",
                    )
        proof = message.proof
        assert proof is not None
        if caller != record.owner and state.grant_ended(record_id, caller, now):
            # A grantee node whose grant ended may hold an index too: as a repairer
            # it would read what its revocation took away.
            raise RequestError(
                ErrorCode.NO_GRANT,
                f"node {caller.hex()[:16]} was granted record {record_id.hex()[:16]} and"
                " no longer is: it may not read it, for repair either",
            )
        await self._check_proof(proof, manifest)
        self._check_need(message, proof, caller)
        return None

    @staticmethod
    def _statement(message: FetchBlocks, caller: bytes, now: int) -> permit.ReadPermit | None:
        """The request's access statement if it holds (None: it does not, and a holder
        proof came along); RequestError with the specific code when it is all there is."""
        assert message.permit is not None
        try:
            return permit.check(message.permit, record_id=message.record_id, node=caller,
                                now_ms=now)  # fmt: skip
        except permit.OldPermit as exc:
            if message.proof is None:
                raise RequestError(ErrorCode.OLD_PERMIT, str(exc)) from None
        except permit.PermitError as exc:
            if message.proof is None:
                raise RequestError(ErrorCode.FORBIDDEN, str(exc)) from None
        return None

    def _check_need(self, message: FetchBlocks, proof: HolderProof, caller: bytes) -> None:
        """A proven holder reads only to repair, while the record needs it."""
        views = self.views
        if views is None:
            return
        record_id = message.record_id
        if views.repair_read(record_id, caller, proof.index, self.site_of(caller)):
            return
        views.look_again(record_id)  # the asker's survey may be newer than this holder's
        raise RequestError(
            ErrorCode.NOT_NEEDED,
            f"record {record_id.hex()[:16]} needs no repair as this holder saw it lately (it"
            " looks again): another holder reads it only to repair it",
        )

    async def _check_proof(self, proof: HolderProof, manifest: Manifest) -> None:
        wanted = accepted_segments(
            self.own_key, manifest.record_id, manifest.segment_count, self.clock_ms()
        )
        if proof.segment not in wanted or proof.index >= manifest.n:
            raise RequestError(
                ErrorCode.FORBIDDEN, "the holder proof is not for a segment this holder asks now"
            )
        if not await in_worker(manifest.verify_block, proof.segment, proof.index, proof.block):
            raise RequestError(
                ErrorCode.FORBIDDEN, "the holder proof's block does not match the manifest"
            )


def needs_retry(code: str) -> bool:
    """A refusal that a lagging ledger explains, which may pass a little later."""
    return code in (ErrorCode.NOT_RECORDED, ErrorCode.NO_GRANT, ErrorCode.NOT_NEEDED)


def read_refused(code: str) -> bool:
    """Any refusal of the gate (as against a lost block or an unreachable holder)."""
    return code in (
        ErrorCode.FORBIDDEN,
        ErrorCode.OLD_PERMIT,
        ErrorCode.NOT_RECORDED,
        ErrorCode.NO_GRANT,
        ErrorCode.NOT_NEEDED,
    )
