"""FetchHeld, a small record's get in one round (protocol.records.held): both sides.

The reader keeps what the answers brought (HeldBlocks): every block verified
against the manifest; a holder whose blocks do not match is noted corrupt for
that index and its claims are not used.

The holder (HeldServer) answers with its indices and one whole index. The
blocks go through the same path as a FetchBlocks (node.records.serving's fetch
handler): the read gate checks the reader's permit against this node's
ledger, the witness logs the read if the reader's node does not, and at
most one index of a small record is read (protocol.records.held bounds it),
on the trio thread: a worker thread's hand-off cost a busy holder more than
the read (docs/throughput.md, "1 MiB get, after (issue 17, round 3)").
A refused permit is answered with the indices alone (the refusal logged,
rate-limited, by the gate): the reader then asks FetchBlocks, whose answer
carries the refusal's code and its retries for a lagging ledger.
"""

from __future__ import annotations

from node.net.dispatch import Dispatcher
from node.net.errors import RequestError
from node.net.rpc_port import Caller
from node.records.shard_service import ShardService
from protocol.records.held import served_index, small
from protocol.records.messages import BlockRef, FetchBlocks, FetchHeld, HeldFound
from storage.codec.manifest import Manifest


class HeldServer:
    def __init__(self, shards: ShardService) -> None:
        self.shards = shards

    def install(self, dispatcher: Dispatcher) -> None:
        dispatcher.route(FetchHeld, self._on_fetch_held)

    async def _on_fetch_held(self, message: FetchHeld, caller: Caller) -> HeldFound:
        complete, partial = self.shards.holdings.indices(message.record_id)
        held = (tuple(complete), tuple(partial))
        manifest = self.shards.manifest(message.record_id)
        if manifest is None:
            return HeldFound(*held, None, ())
        index = served_index(complete, manifest.k)
        sizes = [manifest.block_size(s) for s in range(manifest.segment_count)]
        if index is None or not small(sizes):
            return HeldFound(*held, None, ())
        wanted = tuple(BlockRef(segment, index) for segment in range(manifest.segment_count))
        request = FetchBlocks(message.record_id, wanted, message.permit)
        try:
            # Inline: one small index (HELD_MAX_BYTES at most) from the page cache reads
            # and hashes in a fraction of what a worker thread's hand-off costs here.
            found = await self.shards.serve_fetch(request, caller, inline=True)
        except RequestError:
            return HeldFound(*held, None, ())
        return HeldFound(*held, index, found.blocks)


class HeldBlocks:
    """What FetchHeld answers brought: each answer's blocks verified against the manifest
    (a holder whose blocks do not match is noted corrupt for that index and its claims
    are not used); whole indices kept until k are in hand."""

    def __init__(self, manifest: Manifest) -> None:
        self.manifest = manifest
        self.indices: dict[int, list[bytes]] = {}  # whole, verified: index -> its blocks
        self.corrupt: dict[bytes, set[int]] = {}

    def add(self, holder: bytes, answer: HeldFound) -> bool:
        """Take an answer's blocks; whether its holdings claims are usable."""
        m = self.manifest
        index = answer.index
        if index is None or not answer.blocks:
            return True  # holdings only (it serves nothing now): the fallback asks
        if (
            not 0 <= index < m.n  # no hash to check it by: a lie, not an IndexError
            or index not in answer.complete
            or len(answer.blocks) != m.segment_count
        ):
            self.corrupt.setdefault(holder, set()).add(index)
            return False
        # Checked even when the index is in hand already: a claim counts only beside an
        # index that verifies, so a member's claims cannot cover k for indices it does
        # not serve and keep the reader from asking the holders that do (TooFewShards
        # with the record intact). At most one index per answer, k + 1 answers.
        blocks: list[bytes] = []
        for segment, block in enumerate(answer.blocks):
            if block is None:
                # Claimed whole and not served: lost since (an honest holder demotes it
                # as it answers) or a lie; either way its claims do not count.
                return False
            if not m.verify_block(segment, index, block):
                self.corrupt.setdefault(holder, set()).add(index)
                return False
            blocks.append(block)
        if index not in self.indices and len(self.indices) < m.k:
            self.indices[index] = blocks
        return True

    def whole(self) -> bool:
        return len(self.indices) >= self.manifest.k

    def chosen(self) -> dict[int, dict[int, bytes]]:
        """Per segment, the verified blocks by index (k at most), for the fetcher."""
        out: dict[int, dict[int, bytes]] = {}
        for index, blocks in self.indices.items():
            for segment, block in enumerate(blocks):
                out.setdefault(segment, {})[index] = block
        return out
