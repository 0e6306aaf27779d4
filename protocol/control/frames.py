"""Control frames: a length prefix, then msgpack [kind, body] checked against a typed schema.

The control socket is local (mode 0600), but the daemon still trusts nothing
it is sent and the CLI nothing it receives: both sides decode with the same
schema checks as peer messages.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

import msgpack

from protocol import schema
from protocol.errors import RemoteProtocolError
from protocol.net.wire import encode_frame

# A download frame holds at most one segment (<= 64 MiB) and its header the
# manifest (<= 16 MiB); the cap leaves room for both and the map around them.
MAX_CONTROL_FRAME = 81 * 1024 * 1024

T = TypeVar("T")
C = TypeVar("C", bound=type)


class BadControlMessage(RemoteProtocolError):
    """A control frame that does not decode; the message says why."""


class Registry(Generic[T]):
    """The classes one side may send, by kind: registered once, encoded and decoded by kind.

    `what` names the side in errors ("request", "reply"); `kind_of` reads a
    class's kind (its OP or KIND class attribute).
    """

    def __init__(self, what: str, kind_of: Callable[[Any], str]) -> None:
        self.what = what
        self.kind_of = kind_of
        self.kinds: dict[str, type[T]] = {}

    def register(self, cls: C) -> C:
        kind = self.kind_of(cls)
        if not kind or kind in self.kinds:
            raise TypeError(f"control {self.what} {kind!r} is empty or already registered")
        schema.decoder(cls)  # built now: a class without a wire form fails at import
        self.kinds[kind] = cls
        return cls

    def encode(self, value: T) -> bytes:
        """One frame (length prefix included) carrying `value`."""
        cls = type(value)
        kind = self.kind_of(cls)
        if self.kinds.get(kind) is not cls:
            raise TypeError(f"{cls.__name__} is not a registered control {self.what}")
        body = schema.encoder(cls)(value)
        return encode_frame(msgpack.packb([kind, body], use_bin_type=True), MAX_CONTROL_FRAME)

    def decode(self, payload: bytes | bytearray | memoryview) -> T:
        """The value a frame carries, of the class its kind names."""
        value = _unpack(payload)
        if not isinstance(value, list) or len(value) != 2 or not isinstance(value[0], str):
            raise BadControlMessage(f"a control {self.what} is [kind, body]")
        cls = self.kinds.get(value[0])
        if cls is None:
            raise BadControlMessage(f"unknown control {self.what} {value[0]!r}")
        try:
            decoded: T = schema.decoder(cls)(value[1])
        except schema.SchemaError as exc:
            raise BadControlMessage(f"{value[0]}: {exc}") from None
        return decoded


def _reject_ext(code: int, data: bytes) -> Any:
    raise ValueError(f"msgpack extension type {code} is not allowed")


def _unpack(payload: bytes | bytearray | memoryview) -> Any:
    try:
        return msgpack.unpackb(payload, raw=False, strict_map_key=True, ext_hook=_reject_ext)
    except Exception as exc:  # msgpack raises many types on garbage
        raise BadControlMessage(f"frame is not valid msgpack ({type(exc).__name__})") from None
