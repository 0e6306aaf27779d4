"""Typed messages and the envelope that carries them.

An envelope is the msgpack array [version, kind, request id, type, body].
Each message type is a frozen dataclass registered under its type name; its
body is a map of exactly its fields, each checked against the field's
annotation when decoded. What cannot be decoded raises a RemoteProtocolError
subclass that keeps the request id when it was readable, so the receiver can
answer with a typed error instead of just hanging up.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

import msgpack

from protocol import schema
from protocol.errors import LocalProtocolError, RemoteProtocolError
from protocol.net.unpack import unpack_views

PROTOCOL_VERSION = 1
MAX_REQUEST_ID = 2**32 - 1


class Kind(enum.IntEnum):
    REQUEST = 0
    RESPONSE = 1
    ERROR = 2


class ErrorCode(enum.StrEnum):
    UNKNOWN_TYPE = "unknown_type"
    UNSUPPORTED_VERSION = "unsupported_version"
    BAD_REQUEST = "bad_request"
    NOT_FOUND = "not_found"
    UNAVAILABLE = "unavailable"
    INTERNAL = "internal"
    # Reads (FetchBlocks): the permit or proof itself is refused (never worth a retry)...
    FORBIDDEN = "forbidden"
    # ...a version 1 permit: it states no purpose of use and no read (never retried).
    OLD_PERMIT = "old_permit"
    # ...or this holder's ledger does not know the record, or gives the reader no
    # current grant: either may be a ledger that lags (a reader retries a few times).
    NOT_RECORDED = "not_recorded"
    NO_GRANT = "no_grant"
    # ...or a repair read (holder proof) of a record this holder last saw healthy: it
    # looks again, so a repairer whose survey is newer retries a little later.
    NOT_NEEDED = "not_needed"


class Message:
    """Base of every typed message; subclasses are frozen dataclasses."""

    TYPE: ClassVar[str] = ""


M = TypeVar("M", bound=type[Message])
_REGISTRY: dict[str, type[Message]] = {}


def register(cls: M) -> M:
    """Class decorator: make a frozen dataclass message decodable by its TYPE."""
    params = getattr(cls, "__dataclass_params__", None)
    if params is None or not params.frozen:
        raise TypeError(f"{cls.__name__} must be a frozen dataclass")
    if not cls.TYPE or cls.TYPE in _REGISTRY:
        raise TypeError(f"message type {cls.TYPE!r} is empty or already registered")
    schema.decoder(cls)  # compile now: a field type without a wire form fails at import
    _REGISTRY[cls.TYPE] = cls
    return cls


def registered() -> list[type[Message]]:
    """Every message class registered so far."""
    return list(_REGISTRY.values())


def message_type(name: str) -> type[Message] | None:
    return _REGISTRY.get(name)


class BadMessage(RemoteProtocolError):
    """A message the peer sent does not decode; `request_id` may be known."""

    code = ErrorCode.BAD_REQUEST

    def __init__(self, reason: str, request_id: int | None = None, kind: Kind | None = None):
        super().__init__(reason)
        self.request_id = request_id
        self.kind = kind


class UnknownMessageType(BadMessage):
    code = ErrorCode.UNKNOWN_TYPE


class UnsupportedVersion(BadMessage):
    code = ErrorCode.UNSUPPORTED_VERSION


@dataclass(frozen=True)
class Envelope:
    kind: Kind
    request_id: int
    message: Message


def _fields(envelope: Envelope) -> list[Any]:
    if not 0 <= envelope.request_id <= MAX_REQUEST_ID:
        raise LocalProtocolError(f"request id {envelope.request_id} out of range")
    message = envelope.message
    if _REGISTRY.get(message.TYPE) is not type(message):
        raise LocalProtocolError(f"{type(message).__name__} is not a registered message")
    return [
        PROTOCOL_VERSION,
        int(envelope.kind),
        envelope.request_id,
        message.TYPE,
        schema.encoder(type(message))(message),
    ]


def encode_envelope(envelope: Envelope) -> bytes:
    return msgpack.packb(_fields(envelope), use_bin_type=True)  # type: ignore[no-any-return]


# Byte strings at least this long are not copied into the encoding (see below).
LARGE_BYTES = 32 * 1024
Buffer = bytes | bytearray | memoryview


def encode_envelope_parts(envelope: Envelope) -> list[Buffer]:
    """The envelope's msgpack encoding as a list of pieces to send one after another.

    Large byte strings (shard blocks) stay where they are: the pieces are the
    msgpack around them and the strings themselves, so a multi-megabyte
    message is never copied just to be framed. Joined, the pieces are a
    valid msgpack encoding of the same value (bin 32 headers for the large
    strings), which `decode_envelope` reads like any other.
    """
    parts: list[Buffer] = []
    small = bytearray()
    _emit(_fields(envelope), parts, small)
    if small:
        parts.append(bytes(small))
    return parts


def _emit(value: Any, parts: list[Buffer], small: bytearray) -> None:
    """Encode `value` onto `small`, moving it to `parts` before each large string.

    A module function, not a closure: a nested function that calls itself is a
    reference cycle, and it held every block of every sent message until the
    cyclic GC ran (rarely, in a put: few, large objects), so a writer grew by
    most of what it had sent.
    """
    if isinstance(value, bytes | bytearray | memoryview) and _large(value):
        small += b"\xc6" + memoryview(value).nbytes.to_bytes(4, "big")
        parts.append(bytes(small))
        small.clear()
        parts.append(value)
    elif isinstance(value, list | tuple) and _holds_large(value):
        small += _header(len(value), 0x90, 0xDC)
        for item in value:
            _emit(item, parts, small)
    elif isinstance(value, dict) and _holds_large(value):
        small += _header(len(value), 0x80, 0xDE)
        for key, item in value.items():
            small += msgpack.packb(key, use_bin_type=True)
            _emit(item, parts, small)
    else:
        small += msgpack.packb(value, use_bin_type=True)


def _large(value: Buffer) -> bool:
    return memoryview(value).nbytes >= LARGE_BYTES


def _holds_large(value: Any) -> bool:
    if isinstance(value, bytes | bytearray | memoryview):
        return _large(value)
    if isinstance(value, list | tuple):
        return any(_holds_large(item) for item in value)
    if isinstance(value, dict):
        return any(_holds_large(item) for item in value.values())
    return False


def _header(count: int, fix: int, wide: int) -> bytes:
    """A msgpack array (fix 0x90, wide 0xdc) or map (0x80, 0xde) header."""
    if count < 16:
        return bytes([fix | count])
    if count < 2**16:
        return bytes([wide]) + count.to_bytes(2, "big")
    return bytes([wide + 1]) + count.to_bytes(4, "big")


def _reject_ext(code: int, data: bytes) -> Any:
    raise ValueError(f"msgpack extension type {code} is not allowed")


# Payloads longer than this are unpacked a piece at a time: msgpack's C unpacker
# holds the GIL for a whole call (~30 ms for 4 MiB of small maps), so a worker
# thread decoding a large envelope in one call would stall the event loop that
# long. Its state machine resumes where the previous piece ended.
UNPACK_PIECE = 64 * 1024
# A large payload is first read by `unpack_views`, which leaves its large byte
# strings (shard blocks) in place as views; it gives up after this many values
# (a payload of many small items), and msgpack decodes the payload instead.
VIEW_BUDGET = 1024


def _unpack(payload: Buffer) -> Any:
    if len(payload) <= UNPACK_PIECE:
        return msgpack.unpackb(
            payload, raw=False, strict_map_key=True, use_list=True, ext_hook=_reject_ext
        )
    try:
        return unpack_views(payload, view_from=LARGE_BYTES, budget=VIEW_BUDGET)
    except (ValueError, IndexError, KeyError):
        pass  # many small items, or a defect msgpack names below
    return _unpack_pieces(payload)


def _unpack_pieces(payload: Buffer) -> Any:
    unpacker = msgpack.Unpacker(
        raw=False,
        strict_map_key=True,
        use_list=True,
        ext_hook=_reject_ext,
        max_buffer_size=len(payload),
    )
    view = memoryview(payload)
    for offset in range(0, len(payload), UNPACK_PIECE):
        unpacker.feed(view[offset : offset + UNPACK_PIECE])
        try:
            value = unpacker.unpack()
        except msgpack.OutOfData:
            continue
        if unpacker.tell() != len(payload):
            raise ValueError("extra bytes after the message")
        return value
    raise ValueError("the message ends early")


def decode_envelope_quick(payload: Buffer, max_items: int) -> Envelope | None:
    """`decode_envelope` for a payload of at most `max_items` msgpack values (a batch of
    a few large blocks), else None: decode it with `decode_envelope` off the event loop.

    The work is bounded by `max_items` and a copy of the payload's bytes at most, so
    a caller may run it inline; a defect also answers None (the full decode names it).
    """
    try:
        value = unpack_views(payload, view_from=LARGE_BYTES, budget=max_items)
    except (ValueError, IndexError, KeyError):
        return None
    return _envelope(value)


def decode_envelope(payload: Buffer) -> Envelope:
    """Parse and validate one envelope; raises BadMessage (or a subclass).

    Large byte strings of a large payload come out as memoryviews into it: a
    field typed `bytes` gets a copy (schema), one typed `bytes | memoryview`
    (shard blocks) the view, which keeps `payload` alive while it is used.
    """
    try:
        value = _unpack(payload)
    except Exception as exc:  # msgpack raises many types on garbage
        raise BadMessage(f"message is not valid msgpack ({type(exc).__name__})") from None
    return _envelope(value)


def _envelope(value: Any) -> Envelope:
    if not isinstance(value, list) or len(value) != 5:
        raise BadMessage("message is not a 5-field envelope")
    version, kind_value, request_id, type_name, body = value
    if type(request_id) is not int or not 0 <= request_id <= MAX_REQUEST_ID:
        raise BadMessage(f"request id {request_id!r} is not a 32-bit unsigned integer")
    try:
        kind = Kind(kind_value) if type(kind_value) is int else None
    except ValueError:
        kind = None
    if kind is None:
        raise BadMessage(f"unknown message kind {kind_value!r}", request_id)
    if version != PROTOCOL_VERSION:
        raise UnsupportedVersion(
            f"protocol version {version!r} is not supported (this node speaks {PROTOCOL_VERSION})",
            request_id,
            kind,
        )
    cls = _REGISTRY.get(type_name) if isinstance(type_name, str) else None
    if cls is None:
        raise UnknownMessageType(f"unknown message type {type_name!r}", request_id, kind)
    try:
        message = schema.decoder(cls)(body)
    except schema.SchemaError as exc:
        raise BadMessage(f"{type_name}: {exc}", request_id, kind) from None
    return Envelope(kind, request_id, message)


@register
@dataclass(frozen=True)
class Ping(Message):
    """Liveness check; the nonce is echoed back."""

    TYPE: ClassVar[str] = "ping"
    nonce: int


@register
@dataclass(frozen=True)
class Pong(Message):
    TYPE: ClassVar[str] = "pong"
    nonce: int


@register
@dataclass(frozen=True)
class Echo(Message):
    """Diagnostic round trip carrying a payload (throughput checks)."""

    TYPE: ClassVar[str] = "echo"
    data: bytes


@register
@dataclass(frozen=True)
class EchoReply(Message):
    TYPE: ClassVar[str] = "echo_reply"
    data: bytes


@register
@dataclass(frozen=True)
class ErrorResponse(Message):
    """The typed answer to a request that failed; `code` is an ErrorCode value."""

    TYPE: ClassVar[str] = "error"
    code: str
    detail: str
