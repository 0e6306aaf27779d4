"""Which block a repairing holder shows to be let read a record's other blocks.

A node that repairs a record is a holder, not a grantee: it proves it holds
a complete index of the same record by sending, with its FetchBlocks, its
block of that index at a segment the serving holder picks. The pick is
deterministic (a hash of the serving node's key, the record and a time
bucket), so the requester can compute it without a round trip, yet cannot
answer for every serving node and every bucket without holding every
segment of its index. The serving holder accepts the segments of the
buckets just before and after its own as well (clock skew).
"""

from __future__ import annotations

import hashlib

BUCKET_MS = 10 * 60 * 1000
_TAG = b"medvault/holder-proof/v1"


def bucket_of(now_ms: int) -> int:
    return now_ms // BUCKET_MS


def proof_segment(server: bytes, record_id: bytes, segment_count: int, bucket: int) -> int:
    """The segment whose block a requester shows `server` during `bucket`."""
    if segment_count <= 0:
        raise ValueError("a record has at least one segment")
    hasher = hashlib.blake2b(digest_size=8, key=_TAG)
    hasher.update(server)
    hasher.update(record_id)
    hasher.update(bucket.to_bytes(8, "big", signed=True))
    return int.from_bytes(hasher.digest(), "big") % segment_count


def accepted_segments(
    server: bytes, record_id: bytes, segment_count: int, now_ms: int
) -> frozenset[int]:
    """The segments `server` accepts a proof for now (its bucket and both neighbours)."""
    bucket = bucket_of(now_ms)
    return frozenset(
        proof_segment(server, record_id, segment_count, b) for b in (bucket - 1, bucket, bucket + 1)
    )
