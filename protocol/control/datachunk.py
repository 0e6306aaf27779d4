"""A download's DataChunk frame, split at its data: the same bytes, without the copies.

A DataChunk frame is a length prefix, msgpack `["data", {"segment": s, "data": <bin>}]`,
and the data last. The daemon sends the head (everything before the data) and then
the data from where it lies, instead of packing a megabyte into a msgpack buffer and
copying that behind a prefix; the client reads the head, then hands the data to its
sink as it arrives, instead of assembling the frame, copying it into bytes and msgpack
copying the data out again. The bytes on the socket are exactly `encode_reply`'s, so
a client or daemon of either kind reads the other (tests/protocol/test_datachunk.py).

`parse_head` accepts only that head in msgpack's own encoding (unsigned segment,
bin data whose length ends the frame); anything else is left to the full schema
decoder, which reads it or names what is wrong.
"""

from __future__ import annotations

from protocol.control.frames import MAX_CONTROL_FRAME
from protocol.control.replies import REPLIES, DataChunk
from protocol.errors import LocalProtocolError
from protocol.net.wire import PREFIX_SIZE, frame_prefix

# ["data", {"segment": ...: msgpack's array of 2, "data", a map of 2, "segment"
_START = b"\x92\xa4data\x82\xa7segment"
_DATA_KEY = b"\xa4data"
# the head's longest form: start, a uint64 segment (9 bytes), the key, a bin32 header
HEAD_MAX = len(_START) + 9 + len(_DATA_KEY) + 5
_UINTS = {0xCC: 1, 0xCD: 2, 0xCE: 4, 0xCF: 8}
_BINS = {0xC4: 1, 0xC5: 2, 0xC6: 4}


def _bin_header(size: int) -> bytes:
    if size < 1 << 8:
        return b"\xc4" + size.to_bytes(1, "big")
    if size < 1 << 16:
        return b"\xc5" + size.to_bytes(2, "big")
    if size < 1 << 32:
        return b"\xc6" + size.to_bytes(4, "big")
    raise LocalProtocolError(f"a {size}-byte chunk does not fit a msgpack bin")


def frame_head(segment: int, size: int) -> bytes:
    """The frame of DataChunk(segment, data) up to its `size`-byte data (prefix included):
    this, then the data, is byte for byte `encode_reply(DataChunk(segment, data))`."""
    empty = REPLIES.encode(DataChunk(segment, b""))[PREFIX_SIZE:]
    if not empty.endswith(b"\xc4\x00"):  # the schema put something after the data
        raise LocalProtocolError("DataChunk's data is not the last thing it encodes")
    body = empty[:-2] + _bin_header(size)
    return frame_prefix(len(body) + size, MAX_CONTROL_FRAME) + body


def _number(view: bytes, at: int, widths: dict[int, int]) -> tuple[int, int] | None:
    """The unsigned number whose msgpack marker (one of `widths`) is at `at`, and where it
    ends; None if another marker is there or the bytes run out."""
    if at >= len(view) or view[at] not in widths:
        return None
    end = at + 1 + widths[view[at]]
    return (int.from_bytes(view[at + 1 : end], "big"), end) if end <= len(view) else None


def parse_head(head: bytes | bytearray | memoryview, payload_size: int) -> tuple[int, int] | None:
    """(segment, head length) when `head` (the first HEAD_MAX bytes of a `payload_size`-byte
    payload, or all of it if shorter) starts a DataChunk whose data runs to the end of
    the payload; None for any other frame, or a DataChunk in another encoding."""
    view = bytes(head[:HEAD_MAX])
    at = len(_START)
    if not view.startswith(_START) or at >= len(view):
        return None
    segment: tuple[int, int] | None = (view[at], at + 1)  # a positive fixint
    if view[at] >= 0x80:
        segment = _number(view, at, _UINTS)
    if segment is None or view[segment[1] : segment[1] + len(_DATA_KEY)] != _DATA_KEY:
        return None
    data = _number(view, segment[1] + len(_DATA_KEY), _BINS)
    if data is None or data[1] + data[0] != payload_size:
        return None
    return segment[0], data[1]
