"""Record encryption: per-segment XChaCha20-Poly1305 and key sealing.

Each record has its own random 256-bit key. A segment's nonce and associated
data bind the record id, the segment index and the last-segment flag, so a
segment moved to another record or position, a reordering, a truncation (the
"last" segment missing) or an extension (a segment after the last) all fail
authentication. The key reaches a grantee sealed to their X25519 key (the
curve form of their Ed25519 identity) in libsodium's sealed-box format; the
ephemeral secret is passed in so this module makes no randomness of its own.

`encrypt_segment_into` writes a segment's ciphertext straight into the
caller's buffer (the segment codec's pooled buffer, where the erasure code
splits it) through `nacl._sodium`, pynacl's own cffi binding of libsodium, as
protocol.net.boxstream does: pynacl's public function returns new `bytes`,
which costs a fresh zeroed buffer, a copy, and the page faults of both (the
encryption of 1 MiB took 2.3x as long through it, docs/records.md). Same
function, same bytes (tested against the public one). Decryption likewise
has an in-place form, `decrypt_segment_in_place`, for a segment the decoder
assembled in a reused buffer (libsodium allows the plaintext over its
ciphertext).
"""

from __future__ import annotations

import struct

import nacl.exceptions
import nacl.public
import nacl.signing
from nacl import bindings
from nacl._sodium import ffi, lib  # pynacl's own libsodium binding: encrypting in place

from storage.errors import DecryptionError, KeyFormatError

KEY_SIZE = 32
RECORD_ID_SIZE = 32
MAC_SIZE = bindings.crypto_aead_xchacha20poly1305_ietf_ABYTES
SEALED_KEY_SIZE = bindings.crypto_box_SEALBYTES + KEY_SIZE

_SEGMENT_AD = b"medvault/segment/v1"
_METADATA_AD = b"medvault/metadata/v1"
_KIND_SEGMENT = 1
_KIND_METADATA = 2
_NONCE = struct.Struct(">BQB14x")


class SegmentCipher:
    """Encrypts and decrypts the segments and metadata of one record."""

    def __init__(self, key: bytes, record_id: bytes) -> None:
        if len(key) != KEY_SIZE:
            raise KeyFormatError(f"a record key is {KEY_SIZE} bytes, got {len(key)}")
        if len(record_id) != RECORD_ID_SIZE:
            raise KeyFormatError(f"a record id is {RECORD_ID_SIZE} bytes, got {len(record_id)}")
        self._key = bytes(key)
        self._record_id = bytes(record_id)

    def __repr__(self) -> str:  # never show the key
        return f"SegmentCipher(record_id={self._record_id.hex()[:16]}...)"

    def _bind(self, kind: int, index: int, last: bool) -> tuple[bytes, bytes]:
        if index < 0:
            raise ValueError(f"segment index must be >= 0, got {index}")
        nonce = _NONCE.pack(kind, index, int(last))
        tag = _SEGMENT_AD if kind == _KIND_SEGMENT else _METADATA_AD
        return nonce, tag + self._record_id + nonce[1:10]

    def encrypt_segment(self, index: int, last: bool, plaintext: bytes) -> bytes:
        nonce, ad = self._bind(_KIND_SEGMENT, index, last)
        return bindings.crypto_aead_xchacha20poly1305_ietf_encrypt(plaintext, ad, nonce, self._key)

    def encrypt_segment_into(
        self, index: int, last: bool, plaintext: bytes | memoryview, out: memoryview
    ) -> int:
        """Write the segment's ciphertext into out[:len(plaintext) + MAC_SIZE]; its length.

        `out` must be writable and must not overlap `plaintext`.
        """
        size = len(plaintext) + MAC_SIZE
        if out.readonly or len(out) < size:
            raise ValueError(f"the output needs {size} writable bytes, got {len(out)}")
        nonce, ad = self._bind(_KIND_SEGMENT, index, last)
        written = ffi.new("unsigned long long *")
        # Buffer exports released at once, not when a frame (kept by a traceback) dies.
        with ffi.from_buffer(out) as target, ffi.from_buffer(plaintext) as source:
            failed = lib.crypto_aead_xchacha20poly1305_ietf_encrypt(
                target, written, source, len(plaintext), ad, len(ad), ffi.NULL, nonce, self._key
            )
        if failed or written[0] != size:
            raise RuntimeError("libsodium refused to encrypt a segment")
        return size

    def decrypt_segment_in_place(self, index: int, last: bool, buffer: memoryview) -> memoryview:
        """Decrypt the ciphertext that fills `buffer` where it lies; the plaintext's view
        (the buffer's first len - MAC_SIZE bytes). DecryptionError as `decrypt_segment`;
        the buffer's contents are then unspecified."""
        if buffer.readonly or len(buffer) < MAC_SIZE:
            raise ValueError(f"need a writable buffer of at least {MAC_SIZE} bytes")
        nonce, ad = self._bind(_KIND_SEGMENT, index, last)
        written = ffi.new("unsigned long long *")
        # The export is released before any error is raised: a cffi buffer still held by
        # a traceback's frame crashed the interpreter's garbage collector here.
        with ffi.from_buffer(buffer) as target:
            failed = lib.crypto_aead_xchacha20poly1305_ietf_decrypt(
                target, written, ffi.NULL, target, len(buffer), ad, len(ad), nonce, self._key
            )
        if failed:
            raise DecryptionError(
                f"segment {index} failed authentication"
                " (wrong key, tampered, or not this record's segment at this position)"
            )
        return buffer[: written[0]]

    def decrypt_segment(self, index: int, last: bool, ciphertext: bytes) -> bytes:
        nonce, ad = self._bind(_KIND_SEGMENT, index, last)
        try:
            return bindings.crypto_aead_xchacha20poly1305_ietf_decrypt(
                ciphertext, ad, nonce, self._key
            )
        except nacl.exceptions.CryptoError:
            raise DecryptionError(
                f"segment {index} failed authentication"
                " (wrong key, tampered, or not this record's segment at this position)"
            ) from None

    def encrypt_metadata(self, plaintext: bytes) -> bytes:
        nonce, ad = self._bind(_KIND_METADATA, 0, True)
        return bindings.crypto_aead_xchacha20poly1305_ietf_encrypt(plaintext, ad, nonce, self._key)

    def decrypt_metadata(self, ciphertext: bytes) -> bytes:
        nonce, ad = self._bind(_KIND_METADATA, 0, True)
        try:
            return bindings.crypto_aead_xchacha20poly1305_ietf_decrypt(
                ciphertext, ad, nonce, self._key
            )
        except nacl.exceptions.CryptoError:
            raise DecryptionError("record metadata failed authentication (wrong key?)") from None


def _curve_public(ed25519_public: bytes) -> bytes:
    if len(ed25519_public) != 32:
        raise KeyFormatError(f"an Ed25519 public key is 32 bytes, got {len(ed25519_public)}")
    try:
        return bindings.crypto_sign_ed25519_pk_to_curve25519(ed25519_public)
    except (nacl.exceptions.CryptoError, nacl.exceptions.RuntimeError):
        raise KeyFormatError("not a valid Ed25519 public key") from None


def check_recipient(public_key: bytes) -> None:
    """KeyFormatError unless a record key can be sealed to `public_key`."""
    _curve_public(public_key)


def seal_key(record_key: bytes, recipient: bytes, ephemeral_secret: bytes) -> bytes:
    """Seal `record_key` to the holder of Ed25519 public key `recipient`.

    Output is a libsodium sealed box (ephemeral public key, then the box);
    `ephemeral_secret` must be 32 fresh random bytes, used once.
    """
    if len(record_key) != KEY_SIZE:
        raise KeyFormatError(f"a record key is {KEY_SIZE} bytes, got {len(record_key)}")
    if len(ephemeral_secret) != 32:
        raise KeyFormatError("the ephemeral secret must be 32 bytes")
    recipient_curve = _curve_public(recipient)
    ephemeral_public = bindings.crypto_scalarmult_base(ephemeral_secret)
    nonce = bindings.crypto_generichash_blake2b_salt_personal(
        ephemeral_public + recipient_curve, digest_size=bindings.crypto_box_NONCEBYTES
    )
    box = bindings.crypto_box(record_key, nonce, recipient_curve, ephemeral_secret)
    return ephemeral_public + box


def open_sealed_key(sealed: bytes, recipient: nacl.signing.SigningKey) -> bytes:
    """Recover a record key sealed to `recipient`'s public key."""
    if len(sealed) != SEALED_KEY_SIZE:
        raise DecryptionError(f"a sealed key is {SEALED_KEY_SIZE} bytes, got {len(sealed)}")
    private = recipient.to_curve25519_private_key()
    try:
        return nacl.public.SealedBox(private).decrypt(sealed)
    except nacl.exceptions.CryptoError:
        raise DecryptionError("the sealed key does not open with this key") from None
