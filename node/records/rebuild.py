"""Rebuilding shard indices onto new holders from the blocks of k others.

Repair and a put's top-up both use it: for every segment, k verified blocks
are fetched from the current holders (the fastest first), the wanted indices
are rebuilt by Reed-Solomon (ciphertext: no record key is needed), every
rebuilt block is checked against the manifest before it is sent, and the
new holders check again. Fetching, rebuilding and sending overlap.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from node.config.storage import StorageConfig
from node.net.rpc_port import RpcPort
from node.records.errors import RecordError, short
from node.records.fetch import BlockFetcher, Permit, Proof, TooFewShards, no_permit
from node.records.transfer import HolderSender, holder_senders, send_to_holders
from protocol.dht.contact import Contact
from protocol.records.fetching import Latency
from storage.codec.erasure import ReedSolomon
from storage.codec.manifest import Manifest


async def rebuild_onto(
    *,
    port: RpcPort,
    permit: Permit = no_permit,
    proof: Proof | None = None,
    config: StorageConfig,
    latency: Latency,
    manifest: Manifest,
    sources: Mapping[int, Sequence[Contact]],
    targets: Sequence[tuple[int, Contact]],
    random_bytes: Callable[[int], bytes],
    owner_nonce: bytes | None = None,
) -> list[HolderSender]:
    """Stream the rebuilt blocks of `targets` ((index, new holder) pairs) from `sources`.

    `sources` maps each held index to the nodes holding it; they serve blocks
    for a `permit` (the owner's or a grantee's) or a holder `proof` (a
    repairer's, node.records.read_gate), or to the uploader of a record not
    recorded yet (a put's top-up). Returns the senders: each says whether its
    holder confirmed and proved it stores. RecordError when fewer
    than k indices can be fetched for some segment (nobody then claims).
    """
    senders = holder_senders(
        port=port,
        record_id=manifest.record_id,
        assignment=targets,
        batch_bytes=config.transfer_batch_bytes,
        timeout=config.call_timeout,
        random_bytes=random_bytes,
        owner_nonce=owner_nonce,
        known_manifest=manifest,
    )
    fetcher = BlockFetcher(
        port=port,
        manifest=manifest,
        holders={index: list(nodes) for index, nodes in sources.items()},
        latency=latency,
        timeout=config.call_timeout,
        permit=permit,
        proof=proof,
    )
    code = ReedSolomon(manifest.k, manifest.n)
    wanted = sorted({index for index, _ in targets})

    def rebuild(item: tuple[int, dict[int, bytes]]) -> dict[int, bytes]:
        segment, blocks = item
        return _rebuild_segment(code, manifest, segment, blocks, wanted)

    try:
        await send_to_holders(
            senders, lambda: manifest, fetcher.segment_blocks(), rebuild, lambda r: r
        )
    except (TooFewShards, RecordError) as exc:  # no holder got `complete`: nothing claimed
        raise RecordError(
            f"cannot rebuild shards of record {short(manifest.record_id)}: {exc}"
        ) from None
    return senders


def _rebuild_segment(
    code: ReedSolomon,
    manifest: Manifest,
    segment: int,
    blocks: dict[int, bytes],
    wanted: Sequence[int],
) -> dict[int, bytes]:
    """In a worker thread: the wanted blocks of one segment, checked against the manifest."""
    rebuilt = code.reconstruct(blocks, wanted)
    for index, block in rebuilt.items():
        if not manifest.verify_block(segment, index, block):
            raise RecordError(
                f"rebuilt block {segment}/{index} of record {short(manifest.record_id)} does"
                " not match its manifest (the record's shards are inconsistent)"
            )
    return rebuilt
