"""Audits: a holder's claim to hold an index is checked, not believed.

For every index a holder says it holds complete, the auditor asks for the
block of one randomly chosen segment and compares it with the manifest's
hash (the manifest is checked against the ledger). A holder that does not
answer, answers nothing, or answers a wrong block fails that index: it does
not count in the record's health (so `check` reports it and repair rebuilds
it elsewhere), and the holder is avoided by placement for a while. One
random block per claim catches a holder that kept nothing at once, and one
that kept a fraction f of an index with probability 1 - f per audit.

An audit is a read: holders serve the block only for this node's permit
(its owner's or a grantee's) or its holder proof (node.records.read_gate).
A holder that refuses it for that reason has not failed (it may be right:
this node may not read the record, or its ledger lags) and is not avoided;
the caller decides whether its claim counts (node.records.repair). Audits
read by permit only (the owner's or a grantee's node): a holder proof buys
no blocks of a healthy record (node.records.views), and blocks handed out
as audits would let a holder gather k of one segment.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import trio

from node.logs import RateLimitedLog, get_logger
from node.net.errors import RemoteError, RpcError
from node.net.rpc_port import RpcPort
from node.records.errors import short
from node.records.fetch import Permit, Proof, no_permit
from node.records.read_gate import read_refused
from protocol.dht.contact import Contact
from protocol.records.messages import BlockRef, BlocksFound, FetchBlocks, HoldingsFound
from storage.codec.hashing import block_matches
from storage.codec.manifest import Manifest

log = get_logger("audit")
AUDITS_AT_ONCE = 8  # holders audited concurrently
_offences = RateLimitedLog(log, "holder failed an audit", period=600.0)
_refusals = RateLimitedLog(log, "audit read refused", period=600.0, level=logging.INFO)


@dataclass(frozen=True)
class AuditResult:
    failed: dict[bytes, tuple[int, ...]]  # holder -> claimed indices it could not show
    audited_bytes: int
    # holder -> claimed indices it would not show this node (no permit or proof it honours)
    refused: dict[bytes, tuple[int, ...]] = field(default_factory=dict)


async def audit_holders(
    *,
    port: RpcPort,
    manifest: Manifest,
    claims: Sequence[tuple[Contact, HoldingsFound]],
    random_bytes: Callable[[int], bytes],
    timeout: float,
    permit: Permit = no_permit,
    proof: Proof | None = None,
) -> AuditResult:
    """Ask each holder for one random block of every index it claims complete."""
    rng = random.Random(int.from_bytes(random_bytes(16), "big"))
    failed: dict[bytes, tuple[int, ...]] = {}
    refused: dict[bytes, tuple[int, ...]] = {}
    audited = 0
    limiter = trio.CapacityLimiter(AUDITS_AT_ONCE)

    async def audit(contact: Contact, claimed: tuple[int, ...]) -> None:
        nonlocal audited
        refs = [
            BlockRef(rng.randrange(manifest.segment_count), index)
            for index in claimed
            if 0 <= index < manifest.n
        ]
        async with limiter:
            shown = await proof(contact) if proof is not None else None
            request = FetchBlocks(manifest.record_id, tuple(refs), permit(), shown)
            try:
                answer = await port.call(contact, request, timeout)
            except RemoteError as exc:
                if read_refused(exc.code):
                    refused[contact.public_key] = tuple(sorted({r.index for r in refs}))
                    _refusals.note(
                        exc.code, short(contact.public_key), record=short(manifest.record_id)
                    )
                    return
                answer = None
            except RpcError:
                answer = None
        blocks = answer.blocks if isinstance(answer, BlocksFound) else ()
        bad = []
        for number, ref in enumerate(refs):
            block = blocks[number] if number < len(blocks) else None
            if block is None or not kept(manifest, ref, block):
                bad.append(ref.index)
            else:
                audited += len(block)
        if bad:
            failed[contact.public_key] = tuple(sorted(bad))
            _offences.note(
                "claims blocks it does not serve",
                short(contact.public_key),
                record=short(manifest.record_id),
                indices=",".join(map(str, sorted(bad))),
            )

    async with trio.open_nursery() as nursery:
        for contact, found in claims:
            if found.complete:
                nursery.start_soon(audit, contact, tuple(found.complete))
    return AuditResult(failed, audited, refused)


def kept(manifest: Manifest, ref: BlockRef, block: bytes) -> bool:
    """Whether `block` is what a holder stored under the name the manifest lists for `ref`.

    Checked as holders check a name (either block hash: hashing.block_matches), not
    as a reader checks a block (the manifest version's hash, at the segment's block
    length): a writer whose manifest lists the other algorithm's hashes or blocks of
    another length gets them stored as named, and the audit must not then fail every
    honest holder of the record (distrusted for a day, its index rebuilt elsewhere).
    """
    return block_matches(manifest.block_hash(ref.segment, ref.index), block)
