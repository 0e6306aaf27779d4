"""What a patient discloses with a claim: salted, committed in the ledger, sealed to grantees.

The ledger is read by every member, so the disclosed fields (service date,
document type, provider display) are not written there in plain text: the
claim entry carries a salted BLAKE2b commitment to them and the same bytes
sealed under a key derived from the record key (only holders of a grant of
the record, the insurer she shared with among them, can open it). An event
carries the opened fields and the salt, so anyone can check them against the
signed commitment without the record key. Pure: the salt and nonce are given.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

import msgpack
import nacl.bindings
import nacl.exceptions

from protocol.errors import ProtocolError

VERSION = 1
SALT_SIZE = 16
NONCE_SIZE = 24
MAX_TEXT = 256  # characters per disclosed field
FIELDS = ("date", "type", "provider")  # what a patient may choose to disclose
DEFAULT_FIELDS = ("date", "type")
_COMMIT_TAG = b"medvault/claim/disclosure/v1"
_SEAL_TAG = b"medvault/claim/seal-key/v1"
_AD_TAG = b"medvault/claim/sealed/v1"
_DATE = re.compile(r"\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])")


class DisclosureError(ProtocolError):
    """A disclosure that does not decode, open, or match its commitment."""


@dataclass(frozen=True)
class Disclosure:
    """The fields she chose to show ("" where not disclosed) and the commitment's salt."""

    salt: bytes
    service_date: str = ""  # YYYY-MM-DD
    type_system: str = ""
    type_code: str = ""
    type_display: str = ""
    provider_display: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.salt, bytes) or len(self.salt) != SALT_SIZE:
            raise DisclosureError(f"a disclosure's salt is {SALT_SIZE} bytes")
        for name in _TEXT_FIELDS:
            value = getattr(self, name)
            if not isinstance(value, str) or len(value) > MAX_TEXT:
                raise DisclosureError(f"{name} must be text of at most {MAX_TEXT} characters")
            if not value.isprintable():
                raise DisclosureError(f"{name} has control characters")
        if self.service_date and not _DATE.fullmatch(self.service_date):
            raise DisclosureError("service date must be YYYY-MM-DD")

    def encode(self) -> bytes:
        return _pack([VERSION, self.salt, *(getattr(self, n) for n in _TEXT_FIELDS)])

    @classmethod
    def decode(cls, raw: bytes) -> Disclosure:
        try:
            value = msgpack.unpackb(raw, raw=False, strict_map_key=True, ext_hook=_no_ext)
        except Exception as exc:  # msgpack raises many types on garbage
            raise DisclosureError(f"malformed disclosure ({type(exc).__name__})") from None
        if not isinstance(value, list) or len(value) != 2 + len(_TEXT_FIELDS):
            raise DisclosureError("malformed disclosure: wrong number of fields")
        if value[0] != VERSION:
            raise DisclosureError(f"unsupported disclosure version {value[0]!r}")
        found = cls(value[1], *value[2:])
        if found.encode() != raw:
            raise DisclosureError("disclosure is not in canonical encoding")
        return found

    def shown(self) -> tuple[str, ...]:
        """Which of FIELDS it discloses."""
        return tuple(
            name
            for name, present in (
                ("date", bool(self.service_date)),
                ("type", bool(self.type_code or self.type_display)),
                ("provider", bool(self.provider_display)),
            )
            if present
        )


_TEXT_FIELDS = ("service_date", "type_system", "type_code", "type_display", "provider_display")


def commitment(disclosure: Disclosure) -> bytes:
    """What the claim entry signs: a salted hash (the salt stops guessing the few dates
    and codes a field can hold)."""
    return hashlib.blake2b(disclosure.encode(), digest_size=32, key=_COMMIT_TAG).digest()


def _key(record_key: bytes) -> bytes:
    return hashlib.blake2b(record_key, digest_size=32, key=_SEAL_TAG).digest()


def _ad(record_id: bytes, manifest_hash: bytes) -> bytes:
    return _AD_TAG + record_id + manifest_hash


def seal(
    record_key: bytes, record_id: bytes, manifest_hash: bytes, disclosure: Disclosure, nonce: bytes
) -> bytes:
    """nonce || XChaCha20-Poly1305 of the disclosure, bound to the record and manifest."""
    if len(nonce) != NONCE_SIZE:
        raise DisclosureError(f"the nonce is {NONCE_SIZE} bytes")
    box = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_encrypt(
        disclosure.encode(), _ad(record_id, manifest_hash), nonce, _key(record_key)
    )
    return nonce + box


def open_sealed(
    record_key: bytes, record_id: bytes, manifest_hash: bytes, sealed: bytes, committed: bytes
) -> Disclosure:
    """The sealed disclosure, opened and checked against the signed commitment."""
    try:
        plain = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_decrypt(
            sealed[NONCE_SIZE:], _ad(record_id, manifest_hash), sealed[:NONCE_SIZE],
            _key(record_key),
        )  # fmt: skip
    except (nacl.exceptions.CryptoError, ValueError, TypeError):
        raise DisclosureError("the sealed disclosure does not open with this record key") from None
    disclosure = Disclosure.decode(plain)
    if commitment(disclosure) != committed:
        raise DisclosureError("the sealed disclosure differs from the one the claim signed")
    return disclosure


def _pack(value: Any) -> bytes:
    packed: bytes = msgpack.packb(value, use_bin_type=True)
    return packed


def _no_ext(code: int, data: bytes) -> Any:
    raise ValueError("extension types are not allowed")
