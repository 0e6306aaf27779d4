"""An emergency's reason and a sign-off's note, sealed so the ledger shows no text.

Every member reads the ledger, and a reason ("unconscious after a car crash,
ED Kantonsspital") says much about a patient. The entry carries it under an
XChaCha20-Poly1305 key derived from the record key, as protocol.claims does
for disclosures: the owner, the patient and every grantee (the requester among
them) read it; nobody else does. The associated data binds it to its record
and to what it explains (the requester, or the emergency entry signed off), so
a sealed reason cannot be copied onto another entry. Pure: the nonce is given.
"""

from __future__ import annotations

import hashlib

import nacl.bindings
import nacl.exceptions

from protocol.errors import ProtocolError

NONCE_SIZE = 24
MAX_TEXT_BYTES = 1024  # UTF-8 bytes of a reason or note
MAX_REASON_CHARS = 500  # what the CLI and the RPC accept (so its UTF-8 fits the above)
_KEY_TAG = b"medvault/emergency/seal-key/v1"
_AD_TAG = b"medvault/emergency/sealed/v1"


class SealError(ProtocolError):
    """A sealed text that does not open with this record key, or text that cannot be sealed."""


def check_text(text: str, what: str = "reason") -> str:
    """A reason or note as accepted: printable, at most MAX_REASON_CHARS characters."""
    if len(text) > MAX_REASON_CHARS:
        raise SealError(f"the {what} is at most {MAX_REASON_CHARS} characters")
    if not text.isprintable():
        raise SealError(f"the {what} has control characters")
    return text


def _key(record_key: bytes) -> bytes:
    return hashlib.blake2b(record_key, digest_size=32, key=_KEY_TAG).digest()


def _ad(kind: bytes, record_id: bytes, subject: bytes) -> bytes:
    return _AD_TAG + kind + record_id + subject


def seal(
    record_key: bytes, kind: bytes, record_id: bytes, subject: bytes, text: str, *, nonce: bytes
) -> bytes:
    """nonce || AEAD(text), bound to (kind, record, subject): b"reason" and the requester
    key, or b"note" and the emergency entry's hash."""
    if len(nonce) != NONCE_SIZE:
        raise SealError(f"the nonce is {NONCE_SIZE} bytes")
    plain = check_text(text).encode("utf-8")
    if len(plain) > MAX_TEXT_BYTES:
        raise SealError(f"the text is at most {MAX_TEXT_BYTES} bytes")
    box = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_encrypt(
        plain, _ad(kind, record_id, subject), nonce, _key(record_key)
    )
    return nonce + box


def open_text(
    record_key: bytes, kind: bytes, record_id: bytes, subject: bytes, sealed: bytes
) -> str:
    """The sealed text, or SealError if this record key (or binding) does not open it."""
    try:
        plain = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_decrypt(
            sealed[NONCE_SIZE:], _ad(kind, record_id, subject), sealed[:NONCE_SIZE],
            _key(record_key),
        )  # fmt: skip
        return plain.decode("utf-8")
    except (nacl.exceptions.CryptoError, ValueError, TypeError):
        raise SealError("the sealed text does not open with this record key") from None


REASON = b"reason"
NOTE = b"note"
