"""What can go wrong with private keys, addresses and stealth grants, each by name.

Every error is a ProtocolError, so a caller that handles protocol faults
handles these; the message says what was wrong and never holds secret bytes.
"""

from __future__ import annotations

from protocol.errors import ProtocolError


class PrivacyError(ProtocolError):
    """Base of the errors of `protocol.privacy`."""


class InvalidKey(PrivacyError):
    """A key, point or scalar of the wrong length, off the curve, of small order or zero."""


class MalformedGrant(PrivacyError):
    """Encoded grant bytes that do not decode: wrong length, version or point encoding."""


class NotForThisKey(PrivacyError):
    """A grant that is not addressed to this person (or was altered so it no longer is)."""


class SealBroken(PrivacyError):
    """A grant addressed to this person whose sealed record key does not open: tampered."""
