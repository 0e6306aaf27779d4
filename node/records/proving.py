"""Storage proofs asked apart from the batch (ProveShards): keyed hashes of the named
blocks, which only a node keeping the blocks can answer.

Only the node that just completed an index here may ask, once: a proof reads
up to MAX_PROOF_SEGMENTS blocks from disk, so anyone else's would be disk work
for the asking (audits by others fetch a block, under the read rules). A
completing StoreAndProve batch is proved from its own blocks instead
(node.records.intake).
"""

from __future__ import annotations

import collections

from node.logs import RateLimitedLog, short_key
from node.net.dispatch import Dispatcher
from node.net.errors import RequestError
from node.net.rpc_port import Caller
from node.offload import in_worker
from node.records.manifests import ManifestCache
from node.records.scrub import Scrubber
from protocol.net.messages import ErrorCode
from protocol.records.messages import ProveShards, ProveShardsV2, ShardsProven
from protocol.records.proofs import NONCE_SIZE, block_proof
from storage.codec.manifest import Manifest
from storage.errors import CorruptShard, ShardNotFound
from storage.store.shard_store import ShardStore

MAX_CHALLENGERS = 4096  # completed indices whose sender may still ask for their proof


def check_nonce(nonce: bytes) -> None:
    """A challenge's nonce is NONCE_SIZE bytes (a shorter one would let answers be
    precomputed)."""
    if len(nonce) != NONCE_SIZE:
        raise RequestError(ErrorCode.BAD_REQUEST, f"a proof nonce is {NONCE_SIZE} bytes")


class Challenges:
    def __init__(
        self,
        *,
        store: ShardStore,
        manifests: ManifestCache,
        scrubber: Scrubber,
        refused: RateLimitedLog,
    ) -> None:
        self.store = store
        self.manifests = manifests
        self.scrubber = scrubber  # told of blocks found lost or corrupt
        self._refused = refused
        # (record, index) -> the node that completed it here: the one that may prove it.
        self._challengers: collections.OrderedDict[tuple[bytes, int], bytes] = (
            collections.OrderedDict()
        )

    def install(self, dispatcher: Dispatcher) -> None:
        dispatcher.route(ProveShards, self._on_prove)
        dispatcher.route(ProveShardsV2, self._on_prove)

    def may_challenge(self, record_id: bytes, index: int, sender: bytes) -> None:
        """`sender` just completed this index here: it may ask for its proof, once."""
        self._challengers[(record_id, index)] = sender
        self._challengers.move_to_end((record_id, index))
        while len(self._challengers) > MAX_CHALLENGERS:
            self._challengers.popitem(last=False)

    async def _on_prove(self, message: ProveShards, caller: Caller) -> ShardsProven:
        """Keyed hashes of the named blocks: only a node keeping the blocks can answer."""
        check_nonce(message.nonce)
        key = (message.record_id, message.index)
        if self._challengers.get(key) != caller.remote_public_key:
            self._refused.note(
                "storage proof asked by a node that did not send the shard",
                short_key(caller.remote_public_key),
            )
            raise RequestError(
                ErrorCode.BAD_REQUEST,
                "only the node that sent this shard index asks for its proof, once",
            )
        del self._challengers[key]
        manifest = self.manifests.get(message.record_id)
        if manifest is None or not 0 <= message.index < manifest.n:
            return ShardsProven(tuple(None for _ in message.segments))
        return ShardsProven(await in_worker(self._prove, manifest, message))

    def _prove(self, manifest: Manifest, message: ProveShards) -> tuple[bytes | None, ...]:
        """In a worker thread: read (and so verify) each named block, hash it under the nonce."""
        out: list[bytes | None] = []
        for segment in message.segments:
            if not 0 <= segment < manifest.segment_count:
                out.append(None)
                continue
            try:
                block = self.store.get(manifest.block_hash(segment, message.index))
            except (ShardNotFound, CorruptShard):
                self.scrubber.demote_on_read(manifest.record_id, message.index)
                out.append(None)
                continue
            out.append(block_proof(message.nonce, block, message.PROOF))
        return tuple(out)
