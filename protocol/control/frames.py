"""Control frames: a length prefix, then msgpack [kind, body] checked against a typed schema.

The control socket is local (mode 0600), but the daemon still trusts nothing
it is sent and the CLI nothing it receives: both sides decode with the same
schema checks as peer messages.
"""

from __future__ import annotations

from typing import Any, TypeVar

import msgpack

from protocol import schema
from protocol.errors import RemoteProtocolError
from protocol.net.wire import encode_frame

# A download frame holds at most one segment (<= 64 MiB) and its header the
# manifest (<= 16 MiB); the cap leaves room for both and the map around them.
MAX_CONTROL_FRAME = 81 * 1024 * 1024

T = TypeVar("T")


class BadControlMessage(RemoteProtocolError):
    """A control frame that does not decode; the message says why."""


def encode_typed(kind: str, cls: type, value: Any) -> bytes:
    """One frame (length prefix included) carrying `value` of dataclass `cls` as `kind`."""
    body = schema.encoder(cls)(value)
    return encode_frame(msgpack.packb([kind, body], use_bin_type=True), MAX_CONTROL_FRAME)


def decode_typed(payload: bytes, kinds: dict[str, type[T]], what: str) -> T:
    """The value a frame carries, of the class its kind names in `kinds`."""
    value = _unpack(payload)
    if not isinstance(value, list) or len(value) != 2 or not isinstance(value[0], str):
        raise BadControlMessage(f"a control {what} is [kind, body]")
    cls = kinds.get(value[0])
    if cls is None:
        raise BadControlMessage(f"unknown control {what} {value[0]!r}")
    try:
        decoded: T = schema.decoder(cls)(value[1])
    except schema.SchemaError as exc:
        raise BadControlMessage(f"{value[0]}: {exc}") from None
    return decoded


def _reject_ext(code: int, data: bytes) -> Any:
    raise ValueError(f"msgpack extension type {code} is not allowed")


def _unpack(payload: bytes) -> Any:
    try:
        return msgpack.unpackb(payload, raw=False, strict_map_key=True, ext_hook=_reject_ext)
    except Exception as exc:  # msgpack raises many types on garbage
        raise BadControlMessage(f"frame is not valid msgpack ({type(exc).__name__})") from None
