"""How a record operation fails: one line an operator can act on."""

from __future__ import annotations

# Why a record operation failed, as a small fixed vocabulary: metrics label
# failures by it (never by the message, which names records and keys), and
# callers such as an HTTP API may map it to a status code.
ERROR = "error"  # anything not classified below
BAD_REQUEST = "bad_request"  # the caller's input: a key, an expiry, a permit, the upload
NETWORK_TOO_SMALL = "network_too_small"  # fewer nodes answered than a put needs
TOO_FEW_HOLDERS = "too_few_holders"  # a put's holders fell short of its promise
NOT_FOUND = "not_found"  # unknown or deleted record
NO_GRANT = "no_grant"  # the reader holds no current grant
NO_MANIFEST = "no_manifest"  # no holder served the record's manifest


class RecordError(Exception):
    """A record operation cannot be done; the message says why, in one line, and
    `reason` which of the kinds above it is (by default its class's REASON)."""

    REASON = ERROR

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason or self.REASON


class UnknownRecord(RecordError):
    """The ledger knows no such record, or it was deleted."""

    REASON = NOT_FOUND


class NoGrant(RecordError):
    """The reader holds no current grant on the record."""

    REASON = NO_GRANT


class NetworkTooSmall(RecordError):
    """Fewer nodes answered than a put needs."""

    REASON = NETWORK_TOO_SMALL


def short(value: bytes) -> str:
    """A record id or key as operators see it: its first 16 hex digits."""
    return value.hex()[:16]
