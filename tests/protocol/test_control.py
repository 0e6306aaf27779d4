"""The control protocol's frames: every request round-trips; bad frames are refused."""

from __future__ import annotations

import msgpack
import pytest

from protocol import control
from protocol.control import BadControlMessage, decode_reply, decode_request, encode_request
from protocol.net.wire import FrameDecoder

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
    control.ListRecords(KEY),
    control.Grant(RECORD, KEY, 0),
    control.Revoke(RECORD, KEY),
    control.Delete(RECORD),
    control.FeedHead(KEY, RECORD),
    control.Submit(b"entry"),
    control.Ledger(None, 10),
    control.Check(RECORD, True, False),
]


def frame_payload(frame: bytes) -> bytes:
    (payload,) = FrameDecoder(control.MAX_CONTROL_FRAME).feed(frame)
    return payload


@pytest.mark.parametrize("request_", REQUESTS, ids=lambda r: r.OP)
def test_requests_round_trip(request_: control.ControlRequest) -> None:
    assert decode_request(frame_payload(encode_request(request_))) == request_


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (["nope", {}], "unknown control op 'nope'"),
        ({"op": "status"}, r"a control request is \[op, body\]"),
        (["get", {"record_id": RECORD}], "fields"),
        (["get", {"record_id": b"short", "reader": None}], "record id must be 32 bytes"),
        (["grant", {"record_id": RECORD, "grantee": KEY, "expires_at": -1}], "expires_at"),
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
                },
            ],
            "grantee key must be 32 bytes",
        ),
    ],
)
def test_bad_requests_are_refused_with_a_reason(value: object, reason: str) -> None:
    with pytest.raises(BadControlMessage, match=reason):
        decode_request(msgpack.packb(value, use_bin_type=True))


def test_garbage_is_not_msgpack() -> None:
    with pytest.raises(BadControlMessage, match="not valid msgpack"):
        decode_request(b"\xc1\xc1\xc1")


def test_replies_need_an_ok_flag() -> None:
    assert decode_reply(msgpack.packb({"ok": True, "x": 1}))["x"] == 1
    with pytest.raises(BadControlMessage, match="`ok` flag"):
        decode_reply(msgpack.packb({"x": 1}))
