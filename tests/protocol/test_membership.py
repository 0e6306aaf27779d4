"""Membership certificates: issued by an authority, checked for key, authority and time."""

from __future__ import annotations

import contextlib
import dataclasses

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.membership.certificate import (
    TEXT_PREFIX,
    Certificate,
    CertificateError,
    check,
    decode,
    from_text,
    issue,
)
from tests.protocol.keys import signing_key

AUTHORITY = signing_key("authority")
OTHER_AUTHORITY = signing_key("other authority")
NODE = bytes(signing_key("node").verify_key)
AUTHORITIES = {bytes(AUTHORITY.verify_key)}


def cert(**changes: object) -> Certificate:
    fields: dict[str, object] = {"issued_at": 1000, "expires_at": 5000, **changes}
    return issue(AUTHORITY, NODE, "hospital-a", **fields)  # type: ignore[arg-type]


def test_a_certificate_round_trips_as_bytes_and_text() -> None:
    good = cert()
    assert decode(good.encode()) == good
    assert from_text(good.text()) == good
    assert good.text().startswith(TEXT_PREFIX) and "\n" not in good.text()
    check(good, node_key=NODE, authorities=AUTHORITIES, now_ms=1000)


@pytest.mark.parametrize(
    ("now", "reason"),
    [(999, "not valid yet"), (5000, "expired"), (10**12, "expired")],
)
def test_a_certificate_holds_only_while_current(now: int, reason: str) -> None:
    with pytest.raises(CertificateError, match=reason):
        check(cert(), node_key=NODE, authorities=AUTHORITIES, now_ms=now)
    check(cert(expires_at=0), node_key=NODE, authorities=AUTHORITIES, now_ms=10**12)


def test_another_key_or_authority_is_refused() -> None:
    with pytest.raises(CertificateError, match="another key"):
        check(cert(), node_key=b"x" * 32, authorities=AUTHORITIES, now_ms=2000)
    foreign = issue(OTHER_AUTHORITY, NODE, "hospital-a", issued_at=1000)
    with pytest.raises(CertificateError, match="not signed by this network"):
        check(foreign, node_key=NODE, authorities=AUTHORITIES, now_ms=2000)


def test_a_changed_field_breaks_the_signature() -> None:
    good = cert()
    for change in (
        {"site": "hospital-b"},
        {"expires_at": 0},
        {"node_key": b"y" * 32},
        {"issued_at": 0},
    ):
        forged = dataclasses.replace(good, **change)
        with pytest.raises(CertificateError, match="bad certificate signature"):
            decode(forged.encode())
    # The authority field swapped for the network's: the signature is the other's.
    foreign = issue(OTHER_AUTHORITY, NODE, "hospital-a", issued_at=1000)
    claimed = dataclasses.replace(foreign, authority=bytes(AUTHORITY.verify_key))
    with pytest.raises(CertificateError, match="bad certificate signature"):
        decode(claimed.encode())


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"\xc1", "not a certificate"),
        (msgpack.packb([1, 2, 3]), "7 fields"),
        (msgpack.packb([2, b"n" * 32, "s", 1, 0, b"a" * 32, b"s" * 64]), "version"),
        (msgpack.packb([1, b"n" * 31, "s", 1, 0, b"a" * 32, b"s" * 64]), "node key"),
        (msgpack.packb([1, b"n" * 32, "", 1, 0, b"a" * 32, b"s" * 64]), "site"),
        (msgpack.packb([1, b"n" * 32, "a\nb", 1, 0, b"a" * 32, b"s" * 64]), "control"),
        (msgpack.packb([1, b"n" * 32, "s", 5, 3, b"a" * 32, b"s" * 64]), "expires after"),
        (msgpack.packb([1, b"n" * 32, "s", -1, 0, b"a" * 32, b"s" * 64]), "issued_at"),
        (b"\x00" * 600, "at most"),
    ],
)
def test_malformed_certificates_name_the_problem(raw: bytes, reason: str) -> None:
    with pytest.raises(CertificateError, match=reason):
        decode(raw)


def test_text_form_errors() -> None:
    with pytest.raises(CertificateError, match="starts with"):
        from_text("hello")
    with pytest.raises(CertificateError, match="not base64"):
        from_text(TEXT_PREFIX + "!!!")


def test_a_non_canonical_encoding_is_refused() -> None:
    good = cert()  # issued_at 1000 is a uint16; the same value as a uint32 is not canonical
    raw = good.encode().replace(b"\xcd\x03\xe8", b"\xce\x00\x00\x03\xe8", 1)
    assert raw != good.encode()
    with pytest.raises(CertificateError, match="canonical"):
        decode(raw)


@given(st.binary(max_size=600))
def test_arbitrary_bytes_raise_only_certificate_errors(raw: bytes) -> None:
    with contextlib.suppress(CertificateError):
        decode(raw)
