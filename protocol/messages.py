"""Typed messages and the envelope that carries them.

An envelope is the msgpack array [version, kind, request id, type, body].
Each message type is a frozen dataclass registered under its type name; its
body is a map of exactly its fields, each checked against the field's
annotation when decoded. What cannot be decoded raises a RemoteProtocolError
subclass that keeps the request id when it was readable, so the receiver can
answer with a typed error instead of just hanging up.
"""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

import msgpack

from protocol.errors import LocalProtocolError, RemoteProtocolError

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


class Message:
    """Base of every typed message; subclasses are frozen dataclasses."""

    TYPE: ClassVar[str] = ""


M = TypeVar("M", bound=type[Message])
_REGISTRY: dict[str, type[Message]] = {}
_HINTS: dict[type, dict[str, Any]] = {}


def register(cls: M) -> M:
    """Class decorator: make a frozen dataclass message decodable by its TYPE."""
    params = getattr(cls, "__dataclass_params__", None)
    if params is None or not params.frozen:
        raise TypeError(f"{cls.__name__} must be a frozen dataclass")
    if not cls.TYPE or cls.TYPE in _REGISTRY:
        raise TypeError(f"message type {cls.TYPE!r} is empty or already registered")
    _REGISTRY[cls.TYPE] = cls
    return cls


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


def encode_envelope(envelope: Envelope) -> bytes:
    if not 0 <= envelope.request_id <= MAX_REQUEST_ID:
        raise LocalProtocolError(f"request id {envelope.request_id} out of range")
    message = envelope.message
    if _REGISTRY.get(message.TYPE) is not type(message):
        raise LocalProtocolError(f"{type(message).__name__} is not a registered message")
    fields = [
        PROTOCOL_VERSION,
        int(envelope.kind),
        envelope.request_id,
        message.TYPE,
        _to_wire(message),
    ]
    return msgpack.packb(fields, use_bin_type=True)  # type: ignore[no-any-return]


def _reject_ext(code: int, data: bytes) -> Any:
    raise ValueError(f"msgpack extension type {code} is not allowed")


def decode_envelope(payload: bytes) -> Envelope:
    """Parse and validate one envelope; raises BadMessage (or a subclass)."""
    try:
        value = msgpack.unpackb(
            payload, raw=False, strict_map_key=True, use_list=True, ext_hook=_reject_ext
        )
    except Exception as exc:  # msgpack raises many types on garbage
        raise BadMessage(f"message is not valid msgpack ({type(exc).__name__})") from None
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
        message = _from_wire(cls, body, type_name)
    except _FieldError as exc:
        raise BadMessage(str(exc), request_id, kind) from None
    return Envelope(kind, request_id, message)


class _FieldError(Exception):
    pass


def _hints(cls: type) -> dict[str, Any]:
    hints = _HINTS.get(cls)
    if hints is None:
        hints = typing.get_type_hints(cls)
        _HINTS[cls] = hints
    return hints


def _to_wire(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _to_wire(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple | list):
        return [_to_wire(item) for item in value]
    if isinstance(value, dict):
        return {key: _to_wire(item) for key, item in value.items()}
    return value


def _from_wire(cls: type, body: Any, path: str) -> Any:
    if not isinstance(body, dict):
        raise _FieldError(f"{path}: body must be a map")
    names = [f.name for f in dataclasses.fields(cls)]
    if set(body) != set(names):
        raise _FieldError(f"{path}: fields {sorted(body)} differ from {sorted(names)}")
    hints = _hints(cls)
    values = {name: _check(body[name], hints[name], f"{path}.{name}") for name in names}
    try:
        return cls(**values)
    except (ValueError, TypeError) as exc:  # a __post_init__ may validate further
        raise _FieldError(f"{path}: {exc}") from None


def _exact(kind: type, label: str) -> Any:
    def check(value: Any, hint: Any, path: str) -> Any:
        if type(value) is not kind:
            raise _FieldError(f"{path}: expected {label}")
        return value

    return check


def _number(value: Any, hint: Any, path: str) -> float:
    if type(value) not in (int, float):
        raise _FieldError(f"{path}: expected a number")
    return float(value)


def _sequence(value: Any, hint: Any, path: str) -> tuple[Any, ...]:
    (item_hint, *_) = typing.get_args(hint)
    if not isinstance(value, list):
        raise _FieldError(f"{path}: expected a list")
    return tuple(_check(item, item_hint, f"{path}[{i}]") for i, item in enumerate(value))


def _mapping(value: Any, hint: Any, path: str) -> dict[str, Any]:
    _, value_hint = typing.get_args(hint)
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise _FieldError(f"{path}: expected a map with text keys")
    return {k: _check(v, value_hint, f"{path}.{k}") for k, v in value.items()}


def _optional(value: Any, hint: Any, path: str) -> Any:
    args = typing.get_args(hint)
    if value is None and type(None) in args:
        return None
    (inner,) = [a for a in args if a is not type(None)]
    return _check(value, inner, path)


_CHECKS: dict[Any, Any] = {
    int: _exact(int, "an integer"),
    bool: _exact(bool, "bool"),
    bytes: _exact(bytes, "bytes"),
    str: _exact(str, "str"),
    float: _number,
    tuple: _sequence,
    dict: _mapping,
    typing.Union: _optional,
    types.UnionType: _optional,
}


def _check(value: Any, hint: Any, path: str) -> Any:
    """Validate `value` against a field annotation (dispatch by table)."""
    check = _CHECKS.get(typing.get_origin(hint) or hint)
    if check is not None:
        return check(value, hint, path)
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return _from_wire(hint, value, path)
    raise _FieldError(f"{path}: unsupported field type {hint!r}")  # a bug in a message class


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
