"""DHT identifiers: node ids (BLAKE2b-160 of the Ed25519 public key), records' DHT keys.

An id cannot be chosen without its key (S/Kademlia's first defence).
"""

from __future__ import annotations

import functools
import hashlib

NODE_ID_SIZE = 20
PUBLIC_KEY_SIZE = 32
_NODE_ID_TAG = b"medvault/node-id/v1"


@functools.lru_cache(maxsize=1 << 16)
def node_id(public_key: bytes) -> bytes:
    """The 160-bit DHT id of the node whose Ed25519 public key this is."""
    if len(public_key) != PUBLIC_KEY_SIZE:
        raise ValueError(f"an Ed25519 public key is {PUBLIC_KEY_SIZE} bytes, got {len(public_key)}")
    return hashlib.blake2b(public_key, digest_size=NODE_ID_SIZE, key=_NODE_ID_TAG).digest()


_RECORD_KEY_TAG = b"medvault/record-dht-key/v1"


def record_dht_key(record_id: bytes) -> bytes:
    """Where a record lives in the DHT: its holders are the nodes closest to this key."""
    if len(record_id) != 32:
        raise ValueError(f"a record id is 32 bytes, got {len(record_id)}")
    return hashlib.blake2b(record_id, digest_size=NODE_ID_SIZE, key=_RECORD_KEY_TAG).digest()
