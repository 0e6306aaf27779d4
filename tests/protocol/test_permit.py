"""Read permits and holder-proof segments: what verifies, and each way one is refused."""

from __future__ import annotations

import msgpack
import nacl.signing
import pytest

from protocol.privacy import PersonKey, make_grant, open_grant
from protocol.records import permit
from protocol.records.holder_proof import BUCKET_MS, accepted_segments, bucket_of, proof_segment
from protocol.records.purpose import Purpose, parse_purpose
from tests.protocol.keys import seed

READER = nacl.signing.SigningKey(seed("permit reader"))
OTHER = nacl.signing.SigningKey(seed("permit other"))
RECORD = b"r" * 32
NODE = b"n" * 32
NOW = 1_700_000_000_000
RID = b"i" * permit.READ_ID_SIZE


def test_a_permit_names_its_reader_for_its_record_and_node() -> None:
    raw = permit.sign(READER, RECORD, NODE, NOW, read_id=RID)
    assert permit.check(raw, record_id=RECORD, node=NODE, now_ms=NOW).reader == bytes(
        READER.verify_key
    )
    assert len(raw) <= permit.MAX_PERMIT_SIZE


@pytest.mark.parametrize(
    ("record", "node", "now", "reason"),
    [
        (b"x" * 32, NODE, NOW, "another record"),
        (RECORD, b"m" * 32, NOW, "another node"),
        (RECORD, NODE, NOW + permit.LIFETIME_MS + 1, "stale"),
        (RECORD, NODE, NOW - permit.MAX_SKEW_MS - 1, "stale"),
    ],
)
def test_a_permit_is_refused_elsewhere_or_out_of_time(
    record: bytes, node: bytes, now: int, reason: str
) -> None:
    raw = permit.sign(READER, RECORD, NODE, NOW, read_id=RID)
    with pytest.raises(permit.PermitError, match=reason):
        permit.check(raw, record_id=record, node=node, now_ms=now)


def test_a_permit_is_good_within_its_window_at_both_ends() -> None:
    raw = permit.sign(READER, RECORD, NODE, NOW, read_id=RID)
    for now in (NOW - permit.MAX_SKEW_MS, NOW + permit.LIFETIME_MS):
        assert permit.check(raw, record_id=RECORD, node=NODE, now_ms=now)


def test_a_forged_or_altered_or_malformed_permit_is_refused() -> None:
    raw = permit.sign(READER, RECORD, NODE, NOW, read_id=RID)
    fields = msgpack.unpackb(raw)
    swapped = msgpack.packb([*fields[:2], bytes(OTHER.verify_key), *fields[3:]])
    later = msgpack.packb([*fields[:4], NOW + 1, *fields[5:]])
    other_read = msgpack.packb([*fields[:6], b"j" * permit.READ_ID_SIZE, fields[7]])
    cases = {
        "bad signature": [swapped, later, other_read, raw[:-1] + bytes([raw[-1] ^ 1])],
        "malformed": [b"", b"\x91\x02", msgpack.packb(fields[:5])],
        "oversize": [b"\x00" * (permit.MAX_PERMIT_SIZE + 1)],
        "integer": [msgpack.packb([*fields[:4], float(NOW), *fields[5:]])],
        "canonical": [raw[:1] + b"\xcc\x02" + raw[2:]],  # the version 2 in two bytes
    }
    for reason, bad in cases.items():
        for value in bad:
            with pytest.raises(permit.PermitError, match=reason):
                permit.check(value, record_id=RECORD, node=NODE, now_ms=NOW)


def test_a_series_of_permits_covers_a_long_read_one_span_at_a_time() -> None:
    series = permit.sign_series(READER, RECORD, NODE, NOW, 3, read_id=RID)
    for now in range(NOW, NOW + 3 * permit.LIFETIME_MS, permit.LIFETIME_MS // 4):
        good = [p for p in series if permit.fresh(permit.decode(p).issued_at_ms, now)]
        assert good
    assert not permit.fresh(permit.decode(series[-1]).issued_at_ms, NOW)  # not yet


def test_the_proof_segment_depends_on_the_server_and_the_time() -> None:
    picks = {proof_segment(bytes([i]) * 32, RECORD, 1000, bucket_of(NOW)) for i in range(20)}
    assert len(picks) > 10  # each holder asks for a different block
    over_time = {proof_segment(NODE, RECORD, 1000, b) for b in range(20)}
    assert len(over_time) > 10
    assert proof_segment(NODE, RECORD, 1000, 7) == proof_segment(NODE, RECORD, 1000, 7)
    accepted = accepted_segments(NODE, RECORD, 1000, NOW)
    assert proof_segment(NODE, RECORD, 1000, bucket_of(NOW - BUCKET_MS)) in accepted
    assert proof_segment(NODE, RECORD, 1000, bucket_of(NOW + BUCKET_MS)) in accepted
    with pytest.raises(ValueError):
        proof_segment(NODE, RECORD, 0, 1)


def test_a_stealth_grantee_signs_permits_with_her_one_time_key() -> None:
    """The reader is P: a holder sees a key the ledger granted, never her long-term key."""
    person = PersonKey(seed("permit person"))
    context = RECORD + b"\x00\x00"
    grant = make_grant(person.address, b"k" * 32, seed("permit grant"), context)
    one_time = open_grant(person, grant, context).one_time_key
    raw = permit.sign(one_time, RECORD, NODE, NOW, read_id=RID)
    assert permit.check(raw, record_id=RECORD, node=NODE, now_ms=NOW).reader == grant.one_time
    assert person.spend_public not in raw
    series = permit.sign_series(one_time, RECORD, NODE, NOW, 2, read_id=RID)
    assert all(permit.decode(p).reader == grant.one_time for p in series)


def test_a_permit_for_p_signed_by_anyone_else_is_refused() -> None:
    """Mallory knows P (it is public in the ledger) but not its scalar."""
    person = PersonKey(seed("permit person"))
    context = RECORD + b"\x00\x00"
    grant = make_grant(person.address, b"k" * 32, seed("permit grant"), context)
    fields = [permit.PERMIT_VERSION, RECORD, grant.one_time, NODE, NOW, "TREAT", RID]
    forged = msgpack.packb([*fields, OTHER.sign(b"x").signature], use_bin_type=True)
    with pytest.raises(permit.PermitError, match="bad signature"):
        permit.check(forged, record_id=RECORD, node=NODE, now_ms=NOW)


def _v1(signer: nacl.signing.SigningKey) -> bytes:
    """A version 1 permit as older readers signed it (no purpose, no read id)."""
    fields = [1, RECORD, bytes(signer.verify_key), NODE, NOW]
    tag = b"medvault/read-permit/v1"
    signature = signer.sign(tag + msgpack.packb(fields, use_bin_type=True)).signature
    return bytes(msgpack.packb([*fields, signature], use_bin_type=True))


def test_a_statement_carries_its_purpose_and_read_id() -> None:
    raw = permit.sign(READER, RECORD, NODE, NOW, read_id=RID, purpose=Purpose.ETREAT)
    found = permit.check(raw, record_id=RECORD, node=NODE, now_ms=NOW)
    assert (found.purpose, found.read_id) == (Purpose.ETREAT, RID)
    assert permit.decode(permit.sign(READER, RECORD, NODE, NOW, read_id=RID)).purpose is (
        Purpose.TREAT
    )
    series = permit.sign_series(READER, RECORD, NODE, NOW, 3, read_id=RID, purpose=Purpose.HPAYMT)
    assert {(permit.decode(p).read_id, permit.decode(p).purpose) for p in series} == {
        (RID, Purpose.HPAYMT)
    }


def test_a_version_1_permit_is_refused_as_old() -> None:
    """Well signed, but it states no purpose and no read: refused with its own error."""
    with pytest.raises(permit.OldPermit, match="version 1"):
        permit.check(_v1(READER), record_id=RECORD, node=NODE, now_ms=NOW)


def test_an_unknown_purpose_is_refused_even_when_signed() -> None:
    """The vocabulary is closed: a reader cannot state a purpose of its own making."""
    fields = [permit.PERMIT_VERSION, RECORD, bytes(READER.verify_key), NODE, NOW, "MARKETING", RID]
    tag = b"medvault/read-permit/v2"
    signature = READER.sign(tag + msgpack.packb(fields, use_bin_type=True)).signature
    raw = msgpack.packb([*fields, signature], use_bin_type=True)
    with pytest.raises(permit.PermitError, match="unknown purpose"):
        permit.check(raw, record_id=RECORD, node=NODE, now_ms=NOW)
    with pytest.raises(ValueError):
        permit.sign(READER, RECORD, NODE, NOW, read_id=RID, purpose="MARKETING")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        permit.sign(READER, RECORD, NODE, NOW, read_id=b"short")


def test_purpose_names_parse_and_others_are_refused() -> None:
    assert parse_purpose("treatment") is Purpose.TREAT
    assert parse_purpose("ETREAT") is Purpose.ETREAT
    assert parse_purpose("emergency") is Purpose.ETREAT
    assert parse_purpose("patient-request") is Purpose.PATRQT
    with pytest.raises(ValueError, match="unknown purpose"):
        parse_purpose("curiosity")
