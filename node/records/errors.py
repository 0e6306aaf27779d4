"""How a record operation fails: one line an operator can act on."""

from __future__ import annotations


class RecordError(Exception):
    """A record operation cannot be done; the message says why, in one line."""


class UnknownRecord(RecordError):
    """The ledger knows no such record, or it was deleted."""


class NoGrant(RecordError):
    """The reader holds no current grant on the record."""


class NetworkTooSmall(RecordError):
    """Fewer nodes answered than a put needs."""


def short(value: bytes) -> str:
    """A record id or key as operators see it: its first 16 hex digits."""
    return value.hex()[:16]
