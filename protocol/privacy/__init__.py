"""Unlinkable grants, pure: dual view/spend keys, stealth grants, scanning, one-time
signatures and Padmé padding (docs/privacy.md explains the construction)."""

from protocol.privacy.errors import (
    InvalidKey,
    MalformedGrant,
    NotForThisKey,
    PrivacyError,
    SealBroken,
)
from protocol.privacy.grant import StealthGrant, make_grant
from protocol.privacy.keys import Address, PersonKey, ViewKey
from protocol.privacy.padme import padme
from protocol.privacy.scanning import Found, Opened, open_grant, recognise, scan
from protocol.privacy.signing import OneTimeKey, sign_with_scalar

__all__ = [
    "Address",
    "Found",
    "InvalidKey",
    "MalformedGrant",
    "NotForThisKey",
    "OneTimeKey",
    "Opened",
    "PersonKey",
    "PrivacyError",
    "SealBroken",
    "StealthGrant",
    "ViewKey",
    "make_grant",
    "open_grant",
    "padme",
    "recognise",
    "scan",
    "sign_with_scalar",
]
