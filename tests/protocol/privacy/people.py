"""Deterministic people, record keys and randomness for the privacy tests."""

from __future__ import annotations

import hashlib

from protocol.privacy import PersonKey, StealthGrant, make_grant
from tests.protocol.keys import seed


def person(label: str) -> PersonKey:
    return PersonKey(seed(f"person {label}"))


def noise(label: str, size: int = 32) -> bytes:
    return hashlib.shake_256(label.encode()).digest(size)


def grant_to(who: PersonKey, label: str, context: bytes = b"") -> StealthGrant:
    """A grant of the record key `noise(label + ' key')` to `who`."""
    return make_grant(who.address, noise(f"{label} key"), noise(f"{label} random"), context)


ALICE = person("alice")
BOB = person("bob")
