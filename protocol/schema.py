"""Compiled converters between frozen dataclasses and msgpack-ready values.

Each type annotation is turned once into a small encoder and a decoder
function (cached), so a message with twenty nested contacts costs twenty
straight calls, not twenty walks over `typing` machinery. Decoders check
exact types (an int is not a bool), exact field sets, and run a dataclass's
own `__post_init__` checks; an error names the path to the bad field, which
is assembled only when something fails.

A list or map field may carry its cap, `Annotated[tuple[X, ...], MaxItems(n)]`:
a longer one is refused before any of its items is decoded, so a peer's huge
list costs one length check, not a walk.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable
from typing import Any

Converter = Callable[[Any], Any]


@dataclasses.dataclass(frozen=True)
class MaxItems:
    """The most items a list or map field may hold on the wire."""

    count: int


class SchemaError(Exception):
    """A value does not fit its annotation; `path` leads to the bad field."""

    def __init__(self, reason: str, path: tuple[str, ...] = ()) -> None:
        self.reason = reason
        self.path = path
        super().__init__(reason)

    def within(self, segment: str) -> SchemaError:
        return SchemaError(self.reason, (segment, *self.path))

    def __str__(self) -> str:
        where = "".join(s if s.startswith("[") else f".{s}" for s in self.path).lstrip(".")
        return f"{where}: {self.reason}" if where else self.reason


def _identity(value: Any) -> Any:
    return value


_encoders: dict[Any, Converter] = {}
_decoders: dict[Any, Converter] = {}


def encoder(hint: Any) -> Converter:
    """value -> msgpack-ready value, for values of type `hint`."""
    built = _encoders.get(hint)
    if built is None:
        annotated = typing.get_origin(hint) is typing.Annotated  # caps matter to decoding
        built = _encoders[hint] = _build_encoder(typing.get_args(hint)[0] if annotated else hint)
    return built


def decoder(hint: Any) -> Converter:
    """msgpack value -> value of type `hint`; raises SchemaError."""
    built = _decoders.get(hint)
    if built is None:
        built = _decoders[hint] = _build_decoder(hint)
    return built


def _build_encoder(hint: Any) -> Converter:
    origin = typing.get_origin(hint)
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        hints = typing.get_type_hints(hint, include_extras=True)
        fields = [(f.name, encoder(hints[f.name])) for f in dataclasses.fields(hint)]
        return lambda value: {name: enc(getattr(value, name)) for name, enc in fields}
    if origin is tuple:
        inner = encoder(typing.get_args(hint)[0])
        return _identity if inner is _identity else (lambda value: [inner(v) for v in value])
    if origin is dict:
        inner = encoder(typing.get_args(hint)[1])
        if inner is _identity:
            return _identity
        return lambda value: {k: inner(v) for k, v in value.items()}
    if origin in (typing.Union, types.UnionType) and hint != BytesView:
        (inner_hint,) = [a for a in typing.get_args(hint) if a is not type(None)]
        inner = encoder(inner_hint)
        return _identity if inner is _identity else (lambda v: None if v is None else inner(v))
    return _identity


def _exact(kind: type, label: str) -> Converter:
    def check(value: Any) -> Any:
        if type(value) is not kind:
            raise SchemaError(f"expected {label}")
        return value

    return check


def _number(value: Any) -> float:
    if type(value) not in (int, float):
        raise SchemaError("expected a number")
    return float(value)


def _bytes(value: Any) -> bytes:
    """A bytes field owns its bytes: a view into a received message is copied."""
    kind = type(value)
    if kind is bytes:
        return value  # type: ignore[no-any-return]
    if kind is memoryview:
        return bytes(value)
    raise SchemaError("expected bytes")


def _bytes_or_view(value: Any) -> bytes | memoryview:
    """A `bytes | memoryview` field (shard blocks) keeps a view into the message."""
    if type(value) not in (bytes, memoryview):
        raise SchemaError("expected bytes")
    return value  # type: ignore[no-any-return]


# Fields of this type may be decoded as views into the received message.
BytesView = bytes | memoryview

_SCALARS: dict[Any, Converter] = {
    int: _exact(int, "an integer"),
    bool: _exact(bool, "bool"),
    bytes: _bytes,
    BytesView: _bytes_or_view,
    str: _exact(str, "str"),
    float: _number,
}


def _build_decoder(hint: Any, limit: int | None = None) -> Converter:
    if hint in _SCALARS:
        return _SCALARS[hint]
    origin = typing.get_origin(hint)
    if origin is typing.Annotated:
        base, *extras = typing.get_args(hint)
        caps = [extra.count for extra in extras if isinstance(extra, MaxItems)]
        return _build_decoder(base, min(caps) if caps else None)
    if origin is tuple:
        return _sequence(decoder(typing.get_args(hint)[0]), limit)
    if origin is dict:
        return _mapping(decoder(typing.get_args(hint)[1]), limit)
    if origin in (typing.Union, types.UnionType):
        (inner_hint,) = [a for a in typing.get_args(hint) if a is not type(None)]
        inner = decoder(inner_hint)
        return lambda value: None if value is None else inner(value)
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return _record(hint)
    raise TypeError(f"no wire form for {hint!r}")  # a bug in a message class


def _too_many(count: int, limit: int | None) -> SchemaError | None:
    if limit is not None and count > limit:
        return SchemaError(f"{count} items, at most {limit} allowed")
    return None


def _sequence(inner: Converter, limit: int | None = None) -> Converter:
    def decode(value: Any) -> tuple[Any, ...]:
        if type(value) is not list:
            raise SchemaError("expected a list")
        if (error := _too_many(len(value), limit)) is not None:
            raise error
        out = []
        for index, item in enumerate(value):
            try:
                out.append(inner(item))
            except SchemaError as exc:
                raise exc.within(f"[{index}]") from None
        return tuple(out)

    return decode


def _mapping(inner: Converter, limit: int | None = None) -> Converter:
    def decode(value: Any) -> dict[str, Any]:
        if type(value) is not dict:
            raise SchemaError("expected a map with text keys")
        if (error := _too_many(len(value), limit)) is not None:
            raise error
        if not all(type(k) is str for k in value):
            raise SchemaError("expected a map with text keys")
        out = {}
        for key, item in value.items():
            try:
                out[key] = inner(item)
            except SchemaError as exc:
                raise exc.within(key) from None
        return out

    return decode


def _record(cls: type) -> Converter:
    hints = typing.get_type_hints(cls, include_extras=True)
    fields = [(f.name, decoder(hints[f.name])) for f in dataclasses.fields(cls)]
    names = {name for name, _ in fields}

    def decode(body: Any) -> Any:
        if type(body) is not dict:
            raise SchemaError("body must be a map")
        if body.keys() != names:
            raise SchemaError(f"fields {sorted(map(str, body))} differ from {sorted(names)}")
        values = {}
        for name, field_decoder in fields:
            try:
                values[name] = field_decoder(body[name])
            except SchemaError as exc:
                raise exc.within(name) from None
        try:
            return cls(**values)
        except (ValueError, TypeError) as exc:  # the class's own __post_init__ checks
            raise SchemaError(str(exc)) from None

    return decode
