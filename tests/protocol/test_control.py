"""The control protocol's frames: every request round-trips; bad frames are refused."""

from __future__ import annotations

import msgpack
import pytest

from protocol.control import commands as control
from protocol.control import replies
from protocol.control.commands import decode_request, encode_request
from protocol.control.frames import MAX_CONTROL_FRAME, BadControlMessage
from protocol.control.replies import decode_reply, encode_reply
from protocol.ledger.trail import TrailRow
from protocol.net.wire import FrameDecoder
from protocol.records.health import RecordHealth
from protocol.records.messages import HoldingsFound

KEY = bytes(range(32))
RECORD = bytes(range(32, 64))

REQUESTS: list[control.ControlRequest] = [
    control.Status(),
    control.Peers(),
    control.Put("application/pdf", "scan.pdf", KEY, (KEY, RECORD), 5, True),
    control.Put("", "", None, (), 0, False),
    control.Chunk(b"\x00" * 1000, False),
    control.Get(RECORD, None),
    control.Get(RECORD, KEY),
    control.Get(RECORD, KEY, (b"permit", b"another")),
    control.NodeKey(),
    control.PeerCertificate(KEY),
    control.ListRecords(KEY),
    control.Grant(RECORD, KEY, 0),
    control.Grant(RECORD, b"a" * 66, 0, patient=True),
    control.Put("", "", b"a" * 66, (b"b" * 66, KEY), 5, True),
    control.StealthGrants(0),
    control.StealthGrants(7, limit=10, record_id=RECORD),
    control.Revoke(RECORD, KEY),
    control.Delete(RECORD),
    control.FeedHead(KEY, RECORD),
    control.Submit(b"entry"),
    control.Ledger(None, 10),
    control.Check(RECORD, True, False),
    control.Check(None, False, True, True),
    control.Gc(3600),
    control.ResumeFeed(),
    control.ResolveRecord("abcdef12"),
    control.PublishRevocation(b"revocation"),
    control.Revocations(),
    control.EmergencyRequest((RECORD, KEY), "unconscious", 3_600_000),
    control.EmergencyReview(),
    control.EmergencyReview(all=True),
    control.EmergencyPending(),
    control.EmergencyDecide("0123abcd", approve=True),
    control.EmergencySignoff("abcdef12", "checked"),
    control.Audit(RECORD),
]


def frame_payload(frame: bytes) -> bytes:
    (payload,) = FrameDecoder(MAX_CONTROL_FRAME).feed(frame)
    return payload


@pytest.mark.parametrize("request_", REQUESTS, ids=lambda r: r.OP)
def test_requests_round_trip(request_: control.ControlRequest) -> None:
    assert decode_request(frame_payload(encode_request(request_))) == request_


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (["nope", {}], "unknown control request 'nope'"),
        ({"op": "status"}, r"a control request is \[kind, body\]"),
        (["get", {"record_id": RECORD}], "fields"),
        (
            ["get", {"record_id": b"short", "reader": None, "permits": [], "purpose": "TREAT"}],
            "record id must be 32 bytes",
        ),
        (
            [
                "get",
                {"record_id": RECORD, "reader": KEY, "permits": [b"p"] * 65, "purpose": "TREAT"},
            ],
            "at most 64 permits",
        ),
        (["grant", {"record_id": RECORD, "grantee": KEY, "expires_at": -1}], "expires_at"),
        (["peer_certificate", {"node_key": b"short"}], "node key must be 32 bytes"),
        (["chunk", {"data": "text", "last": True}], "expected bytes"),
        (
            [
                "put",
                {
                    "content_type": "",
                    "filename": "",
                    "patient": None,
                    "grantees": [b"x"],
                    "expires_at": 0,
                    "attached": False,
                    "size": 0,
                    "require_full": False,
                },
            ],
            "grantee key must be a 32-byte key or a 66-byte address",
        ),
    ],
)
def test_bad_requests_are_refused_with_a_reason(value: object, reason: str) -> None:
    with pytest.raises(BadControlMessage, match=reason):
        decode_request(msgpack.packb(value, use_bin_type=True))


def test_garbage_is_not_msgpack() -> None:
    with pytest.raises(BadControlMessage, match="not valid msgpack"):
        decode_request(b"\xc1\xc1\xc1")


HEALTH = RecordHealth.of(
    RECORD, 2, 3, [(KEY, HoldingsFound((0, 2), (1,), ()))], sites={KEY: "a"}, network_sites=2
)
REPLIES: list[replies.ControlReply] = [
    replies.ErrorReply("unknown record 0011"),
    replies.EmergencyOutcomes(
        (
            replies.EmergencyOutcome(RECORD, KEY, "granted", "", "", 1_000, ""),
            replies.EmergencyOutcome(RECORD, KEY, "refused", "not_allowed", "no", 0, ""),
        )
    ),
    replies.EmergencyReviewReply(
        (
            replies.EmergencyRow(KEY, RECORD, KEY, "site-1", "why", 2_000, 1_000, 0, None),
            replies.EmergencyRow(KEY, RECORD, KEY, None, "why", 2_000, 1_000, 3_000, "ok"),
        )
    ),
    replies.EmergencyPendingReply(
        (replies.EmergencyPendingRow("0123abcd", RECORD, KEY, None, "why", 60_000, 1_000),)
    ),
    replies.EmergencyDecided(True, 2_000, (b"entry", b"another")),
    replies.Done(),
    replies.StatusReply(
        KEY, KEY[:20], "127.0.0.1:1", "a", 1.5, 3, 2, 10, 4, 2, 99, 0, 4, 8, 6, 1, 0, 2, 9, True, 1
    ),
    replies.GcReply(1, 2, 3000),
    replies.RevocationPublished(KEY, True, 3),
    replies.RevocationsReply(
        (
            replies.RevocationRow(KEY, 5, RECORD, "authority"),
            replies.RevocationRow(RECORD, 0, b"", "config"),
        )
    ),
    replies.FeedResumed(b"t" * 32),
    replies.Written(b"entry"),
    replies.RecordResolved(RECORD),
    replies.PeersReply((replies.PeerRow(KEY, KEY[:20], "h:1", None, False),)),
    replies.UploadReady(65536),
    replies.UploadProgress(8 << 20),
    replies.PutReply(RECORD, 10, 1, 5, 3, True, ("4 of 5 shards on distinct nodes",), (KEY,)),
    replies.GetHeader(10, 1, filename="a.pdf", content_type="application/pdf"),
    replies.GetHeader(10, 1, manifest=b"m", sealed_key=b"s"),
    replies.DataChunk(0, b"\x00" * 100),
    replies.RecordsReply(
        (
            replies.RecordRow(RECORD, KEY, 10, 2, 3, 7, (KEY,), ()),
            replies.RecordRow(RECORD, KEY, 10, 2, 3, 7, (), (KEY,), "a.pdf", "application/pdf"),
            replies.RecordRow(
                RECORD, KEY, 1, 2, 3, 7, (), (), sealed_metadata=b"m", sealed_key=b"k"
            ),
        )
    ),
    replies.FeedHeadReply(1, b"", b"h" * 32),
    replies.FeedHeadReply(3, b"p" * 32, b"h" * 32, next_index=2),
    replies.StealthGrantsReply(
        (
            replies.StealthGrantRow(
                1, RECORD, 0, b"g" * 114, 0, True, KEY, 5, b"e" * 32, True, None
            ),
            replies.StealthGrantRow(
                2, RECORD, 1, b"g" * 114, 9, False, KEY, 6, b"f" * 32, False, "why"
            ),
        ),
        2,
        2,
    ),
    replies.NodeKeyReply(KEY),
    replies.PeerCertificateReply(b"certificate"),
    replies.PeerCertificateReply(None),
    replies.LedgerReply((replies.LedgerRow(b"raw", None), replies.LedgerRow(b"x", "why"))),
    replies.CheckReply(
        (
            replies.CheckRow(replies.HealthReport.of(HEALTH)),
            replies.CheckRow(
                replies.HealthReport.of(HEALTH),
                replies.RepairOutcome({"1": KEY}, {"2": KEY}, {KEY.hex(): "timed out"}, ""),
                None,
                replies.HealthReport.of(HEALTH),
            ),
        )
    ),
    replies.AuditReply(
        RECORD,
        KEY,
        (
            TrailRow("grant", 60_000, KEY, True, KEY, RECORD, expires_at=5, patient=True),
            TrailRow(
                "read",
                61_000,
                KEY,
                False,
                KEY,
                bytes(16),
                node=KEY,
                site="site-1",
                purpose="HPAYMT",
                loggers=(KEY,),
                flags=("reader never granted",),
            ),
            TrailRow("a-kind-from-later", 62_000, KEY, False, KEY, RECORD, flags=("EMERGENCY",)),
        ),
        hidden_reads=2,
    ),
]


@pytest.mark.parametrize("reply", REPLIES, ids=lambda r: r.KIND)
def test_replies_round_trip(reply: replies.ControlReply) -> None:
    assert decode_reply(frame_payload(encode_reply(reply))) == reply


def test_every_reply_kind_is_tested() -> None:
    assert {type(r) for r in REPLIES} == set(replies.REPLIES.kinds.values())


def test_a_health_report_keeps_what_the_cli_shows() -> None:
    report = replies.HealthReport.of(HEALTH)
    assert report.holders == {KEY.hex(): (0, 2)} and report.partial == {KEY.hex(): (1,)}
    assert report.missing == (1,) and report.readable and not report.healthy


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (["teleported", {}], "unknown control reply 'teleported'"),
        ({"ok": True}, r"a control reply is \[kind, body\]"),
        (["put", {"record_id": RECORD}], "fields"),
        (["data", {"segment": "0", "data": b""}], "expected an integer"),
    ],
)
def test_bad_replies_are_refused_with_a_reason(value: object, reason: str) -> None:
    with pytest.raises(BadControlMessage, match=reason):
        decode_reply(msgpack.packb(value, use_bin_type=True))
