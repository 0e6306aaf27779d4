"""Finding and opening the grants to a person.

Scanning needs only the view key: per grant one X25519 (the floor: the
shared secret cannot be had for less) and a one-byte BLAKE2b view tag, which
rejects 255 of 256 grants to others; only the rest pay for recomputing the
one-time key P = S + hB to confirm. Opening needs the spend secret as well:
the sealing key mixes in X25519(r, P), which the grantee recomputes as
x * E with the one-time private scalar x = s + h, and the view secret alone
does not give x.

A grant whose points are off the curve or of small order is nobody's: scanning
skips it (one bad grant never stops a wallet), opening says why it failed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import nacl.bindings as sodium
import nacl.exceptions

from protocol.privacy.curve import (
    VIEW_TAG_TAG,
    edwards_to_montgomery,
    montgomery_to_edwards,
    times,
)
from protocol.privacy.errors import InvalidKey, NotForThisKey, SealBroken
from protocol.privacy.grant import (
    StealthGrant,
    blind,
    blinding_scalar,
    sealing_key,
    view_tag,
)
from protocol.privacy.keys import PersonKey, ViewKey
from protocol.privacy.signing import OneTimeKey


@dataclass(frozen=True, slots=True)
class Found:
    """A grant recognised as the person's: what the view key learned about it."""

    shared: bytes = field(repr=False)  # the view shared secret d
    blinding: bytes = field(repr=False)  # h, with P = S + hB


@dataclass(frozen=True, slots=True)
class Opened:
    """What the full key gets from its grant: the record key and the grant's signing key."""

    record_key: bytes = field(repr=False)
    one_time_key: OneTimeKey


def _confirm(view: ViewKey, grant: StealthGrant, context: bytes, shared: bytes) -> Found | None:
    """After a matching view tag: is the one-time key really S + hB?"""
    h = blinding_scalar(shared, grant.ephemeral, context)
    try:
        one_time = blind(view.spend_public, h)
    except InvalidKey:  # h = 0: probability 2^-252
        return None
    return Found(shared, h) if one_time == grant.one_time else None


def recognise(view: ViewKey, grant: StealthGrant, context: bytes = b"") -> Found | None:
    """The grant is to the holder of `view` (Found) or not (None)."""
    try:
        shared = sodium.crypto_scalarmult(view.secret, grant.ephemeral)
    except nacl.exceptions.CryptoError:  # small-order ephemeral: nobody's grant
        return None
    if view_tag(shared, grant.ephemeral, context) != grant.view_tag:
        return None
    return _confirm(view, grant, context, shared)


def scan(
    view: ViewKey, grants: Iterable[tuple[StealthGrant, bytes]]
) -> Iterator[tuple[int, Found]]:
    """(position, Found) of each of the person's grants among (grant, context) pairs.

    The loop is `recognise` inlined: one C call for X25519 and one for the tag
    per grant, everything else only after a tag match.
    """
    secret = view.secret
    scalarmult = sodium.crypto_scalarmult
    blake2b = hashlib.blake2b
    for position, (grant, context) in enumerate(grants):
        ephemeral = grant.ephemeral
        try:
            shared = scalarmult(secret, ephemeral)
        except nacl.exceptions.CryptoError:
            continue
        tag = blake2b(shared + ephemeral + context, digest_size=1, key=VIEW_TAG_TAG).digest()
        if tag[0] != grant.view_tag:
            continue
        found = _confirm(view, grant, context, shared)
        if found is not None:
            yield position, found


def open_grant(
    person: PersonKey, grant: StealthGrant, context: bytes = b"", found: Found | None = None
) -> Opened:
    """The record key and one-time signing key of a grant to `person`.

    `found` (from `scan` with this person's view key) saves recognising again.
    Raises NotForThisKey for another person's grant, SealBroken for a grant to
    her whose sealed key does not open.
    """
    found = found or recognise(person.view, grant, context)
    if found is None:
        raise NotForThisKey("this grant is not addressed to this key")
    scalar = sodium.crypto_core_ed25519_scalar_add(person.spend_scalar, found.blinding)
    if scalar == bytes(32):  # h = -s mod L: needs the discrete log of S
        raise SealBroken("the grant's one-time key is the neutral point")
    try:
        seal_point = times(scalar, montgomery_to_edwards(grant.ephemeral), "ephemeral key")
    except InvalidKey as exc:
        raise SealBroken(f"the grant's {exc}") from None
    key = sealing_key(
        found.shared, edwards_to_montgomery(seal_point), grant.ephemeral, grant.one_time, context
    )
    try:
        record_key = sodium.crypto_aead_xchacha20poly1305_ietf_decrypt(
            grant.sealed_key, grant.associated_data(context), bytes(24), key
        )
    except nacl.exceptions.CryptoError:
        raise SealBroken("the grant's sealed record key does not open (tampered)") from None
    return Opened(record_key, OneTimeKey(scalar))
