"""Deterministic keys for protocol tests (made here, never committed elsewhere)."""

from __future__ import annotations

import hashlib

import nacl.signing


def seed(label: str) -> bytes:
    return hashlib.sha256(label.encode()).digest()


def signing_key(label: str) -> nacl.signing.SigningKey:
    return nacl.signing.SigningKey(seed(label))


NETWORK = seed("network")
OTHER_NETWORK = seed("other network")
