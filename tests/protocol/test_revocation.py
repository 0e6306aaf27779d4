"""Node revocations: only an authority's count, an authority cannot be revoked, and a
list that keeps them costs a member nothing to flood."""

from __future__ import annotations

import base64
import contextlib

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

import protocol.membership.revocation as revocation_module
from protocol.membership.certificate import issue
from protocol.membership.revocation import (
    MAX_ENCODED,
    TEXT_PREFIX,
    ForgedRevocation,
    Revocation,
    RevocationError,
    RevocationList,
    check,
    decode,
    from_text,
    parse,
    revoke,
)
from tests.protocol.keys import signing_key

AUTHORITY = signing_key("authority")
SECOND_AUTHORITY = signing_key("second authority")
MEMBER = signing_key("member")
NODE = bytes(signing_key("node").verify_key)
AUTHORITIES = {bytes(AUTHORITY.verify_key), bytes(SECOND_AUTHORITY.verify_key)}


def test_a_revocation_round_trips_as_bytes_and_text() -> None:
    good = revoke(AUTHORITY, NODE, revoked_at=1234)
    assert decode(good.encode()) == good
    assert from_text(good.text()) == good
    assert good.text().startswith(TEXT_PREFIX) and "\n" not in good.text()
    assert len(good.encode()) <= MAX_ENCODED
    check(good, AUTHORITIES)


def test_a_forged_signature_is_refused() -> None:
    good = revoke(AUTHORITY, NODE, revoked_at=1)
    # A member claims the authority signed a revocation of someone else.
    forged = Revocation(b"v" * 32, 1, good.authority, good.signature)
    with pytest.raises(ForgedRevocation, match="bad revocation signature"):
        decode(forged.encode())
    # Its own signature over the authority's name is no better.
    claimed = Revocation(NODE, 1, good.authority, MEMBER.sign(good.signed_bytes()).signature)
    with pytest.raises(ForgedRevocation):
        decode(claimed.encode())


def test_a_certificates_signature_cannot_pass_for_a_revocation() -> None:
    # Same authority, same key: a domain tag of its own keeps the two apart.
    cert = issue(AUTHORITY, NODE, "a", issued_at=1)
    lookalike = Revocation(NODE, 1, cert.authority, cert.signature)
    with pytest.raises(ForgedRevocation):
        decode(lookalike.encode())


def test_only_a_configured_authority_counts_and_it_cannot_be_revoked() -> None:
    by_member = revoke(MEMBER, NODE, revoked_at=1)  # well signed, by the wrong key
    with pytest.raises(RevocationError, match="not signed by this network"):
        check(by_member, AUTHORITIES)
    for target in AUTHORITIES:  # neither itself nor another authority
        with pytest.raises(RevocationError, match="authority's key cannot be revoked"):
            check(revoke(AUTHORITY, target, revoked_at=1), AUTHORITIES)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"\xc1", "not a revocation"),
        (msgpack.packb([1, NODE, 1, NODE]), "expected 5 fields"),
        (msgpack.packb([2, NODE, 1, NODE, b"s" * 64]), "unsupported revocation version"),
        (msgpack.packb([True, NODE, 1, NODE, b"s" * 64]), "unsupported revocation version"),
        (msgpack.packb([1, NODE[:31], 1, NODE, b"s" * 64]), "node key is 32 bytes"),
        (msgpack.packb([1, NODE, -1, NODE, b"s" * 64]), "revoked_at"),
        (msgpack.packb([1, NODE, 1, NODE, b"s" * 63]), "signature is 64 bytes"),
        (b"\x00" * (MAX_ENCODED + 1), "at most"),
    ],
)
def test_malformed_revocations_are_refused_with_a_reason(raw: bytes, reason: str) -> None:
    with pytest.raises(RevocationError, match=reason):
        parse(raw)


def test_a_non_canonical_encoding_is_refused() -> None:
    good = revoke(AUTHORITY, NODE, revoked_at=5)
    fields = msgpack.unpackb(good.encode())
    # The same values with revoked_at as a uint64 instead of a fixint.
    wide = b"\x95" + b"".join(
        b"\xcf" + value.to_bytes(8, "big") if i == 2 else msgpack.packb(value)
        for i, value in enumerate(fields)
    )
    assert msgpack.unpackb(wide) == fields
    with pytest.raises(RevocationError, match="canonical"):
        parse(wide)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("medvault-certificate-v1:AAAA", "starts with"),
        (TEXT_PREFIX + "!!!", "not base64"),
        (TEXT_PREFIX + "A" * 10_000, "at most"),
    ],
)
def test_bad_text_is_refused(text: str, reason: str) -> None:
    with pytest.raises(RevocationError, match=reason):
        from_text(text)


@given(st.binary(max_size=MAX_ENCODED + 8))
def test_arbitrary_bytes_raise_only_revocation_errors(raw: bytes) -> None:
    with contextlib.suppress(RevocationError):
        decode(raw)
    with contextlib.suppress(RevocationError):
        from_text(TEXT_PREFIX + base64.b64encode(raw).decode())


class CountingVerify:
    """Counts signature checks: what a flood costs is how many of these it causes."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        real = revocation_module.verify

        def counted(revocation: Revocation) -> None:
            self.calls += 1
            real(revocation)

        monkeypatch.setattr(revocation_module, "verify", counted)


def test_the_list_keeps_one_per_key_and_a_repeat_costs_no_signature_check(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    verify = CountingVerify(monkeypatch)
    kept = RevocationList(AUTHORITIES)
    first = revoke(AUTHORITY, NODE, revoked_at=1)
    assert kept.learn_raw(first.encode()) == first and NODE in kept and verify.calls == 1
    again = revoke(SECOND_AUTHORITY, NODE, revoked_at=2)  # another authority, later
    assert kept.learn_raw(first.encode()) is None
    assert kept.learn_raw(again.encode()) is None
    # A forgery for a key revoked already changes nothing, and is not even checked.
    forged = Revocation(NODE, 3, first.authority, b"\x01" * 64)
    assert kept.learn_raw(forged.encode()) is None
    assert verify.calls == 1 and kept.all() == [first] and kept.get(NODE) == first


def test_a_flood_of_non_authority_revocations_costs_no_cryptography(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    verify = CountingVerify(monkeypatch)
    kept = RevocationList(AUTHORITIES)
    for index in range(1000):
        fake = revoke(MEMBER, index.to_bytes(32, "big"), revoked_at=index)
        with pytest.raises(RevocationError, match="not signed by this network"):
            kept.learn_raw(fake.encode())
    assert verify.calls == 0 and len(kept) == 0


def test_the_list_is_capped_and_refuses_authority_keys() -> None:
    kept = RevocationList(AUTHORITIES, limit=3)
    for index in range(3):
        assert kept.learn(revoke(AUTHORITY, index.to_bytes(32, "big"), revoked_at=index))
    with pytest.raises(RevocationError, match="at most 3"):
        kept.learn(revoke(AUTHORITY, NODE, revoked_at=9))
    with pytest.raises(RevocationError, match="cannot be revoked"):
        RevocationList(AUTHORITIES).learn(
            revoke(SECOND_AUTHORITY, bytes(AUTHORITY.verify_key), revoked_at=1)
        )
    assert [r.revoked_at for r in kept.all()] == [0, 1, 2] and NODE not in kept
