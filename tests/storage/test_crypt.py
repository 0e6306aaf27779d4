from __future__ import annotations

import nacl.public
import nacl.signing
import pytest

from storage.codec.crypt import SEALED_KEY_SIZE, SegmentCipher, open_sealed_key, seal_key
from storage.errors import DecryptionError, KeyFormatError

KEY = bytes(range(32))
RECORD = b"R" * 32


@pytest.fixture
def cipher() -> SegmentCipher:
    return SegmentCipher(KEY, RECORD)


def test_segment_round_trip(cipher: SegmentCipher) -> None:
    ct = cipher.encrypt_segment(3, False, b"hello segment")
    assert b"hello" not in ct
    assert cipher.decrypt_segment(3, False, ct) == b"hello segment"


def test_segments_cannot_be_swapped_or_reordered(cipher: SegmentCipher) -> None:
    first = cipher.encrypt_segment(0, False, b"first")
    second = cipher.encrypt_segment(1, True, b"second")
    with pytest.raises(DecryptionError, match="segment 0"):
        cipher.decrypt_segment(0, False, second)
    with pytest.raises(DecryptionError, match="segment 1"):
        cipher.decrypt_segment(1, True, first)


def test_truncation_is_detected(cipher: SegmentCipher) -> None:
    # Dropping the real last segment makes a middle one pose as last: it fails.
    middle = cipher.encrypt_segment(1, False, b"middle")
    with pytest.raises(DecryptionError):
        cipher.decrypt_segment(1, True, middle)


def test_extension_is_detected(cipher: SegmentCipher) -> None:
    # A segment appended after the last one must claim a last flag it never had.
    last = cipher.encrypt_segment(2, True, b"end")
    with pytest.raises(DecryptionError):
        cipher.decrypt_segment(2, False, last)
    with pytest.raises(DecryptionError):
        cipher.decrypt_segment(3, True, last)


def test_segment_of_another_record_is_rejected(cipher: SegmentCipher) -> None:
    other = SegmentCipher(KEY, b"S" * 32)
    ct = other.encrypt_segment(0, True, b"theirs")
    with pytest.raises(DecryptionError):
        cipher.decrypt_segment(0, True, ct)


def test_wrong_key_and_tampering(cipher: SegmentCipher) -> None:
    ct = cipher.encrypt_segment(0, True, b"payload")
    with pytest.raises(DecryptionError):
        SegmentCipher(bytes(32), RECORD).decrypt_segment(0, True, ct)
    flipped = bytes([ct[0] ^ 1]) + ct[1:]
    with pytest.raises(DecryptionError):
        cipher.decrypt_segment(0, True, flipped)
    with pytest.raises(DecryptionError):
        cipher.decrypt_segment(0, True, ct[:-1])


def test_metadata_is_separate_from_segments(cipher: SegmentCipher) -> None:
    meta = cipher.encrypt_metadata(b"name=x.pdf")
    assert cipher.decrypt_metadata(meta) == b"name=x.pdf"
    with pytest.raises(DecryptionError):
        cipher.decrypt_segment(0, True, meta)
    with pytest.raises(DecryptionError, match="metadata"):
        cipher.decrypt_metadata(cipher.encrypt_segment(0, True, b"name=x.pdf"))


def test_bad_key_sizes() -> None:
    with pytest.raises(KeyFormatError, match="record key"):
        SegmentCipher(b"short", RECORD)
    with pytest.raises(KeyFormatError, match="record id"):
        SegmentCipher(KEY, b"short")


def test_repr_does_not_show_the_key(cipher: SegmentCipher) -> None:
    assert KEY.hex() not in repr(cipher)


def test_sealed_key_opens_only_for_the_recipient() -> None:
    alice = nacl.signing.SigningKey(b"A" * 32)
    mallory = nacl.signing.SigningKey(b"M" * 32)
    sealed = seal_key(KEY, bytes(alice.verify_key), b"e" * 32)
    assert len(sealed) == SEALED_KEY_SIZE
    assert KEY not in sealed
    assert open_sealed_key(sealed, alice) == KEY
    with pytest.raises(DecryptionError, match="does not open"):
        open_sealed_key(sealed, mallory)


def test_sealed_key_is_a_libsodium_sealed_box() -> None:
    alice = nacl.signing.SigningKey(b"A" * 32)
    sealed = seal_key(KEY, bytes(alice.verify_key), b"e" * 32)
    box = nacl.public.SealedBox(alice.to_curve25519_private_key())
    assert box.decrypt(sealed) == KEY
    # And the other way round: libsodium's own sealing opens with ours.
    theirs = nacl.public.SealedBox(alice.verify_key.to_curve25519_public_key()).encrypt(KEY)
    assert open_sealed_key(theirs, alice) == KEY


def test_sealing_is_deterministic_in_its_randomness() -> None:
    alice = nacl.signing.SigningKey(b"A" * 32)
    pk = bytes(alice.verify_key)
    assert seal_key(KEY, pk, b"e" * 32) == seal_key(KEY, pk, b"e" * 32)
    assert seal_key(KEY, pk, b"e" * 32) != seal_key(KEY, pk, b"f" * 32)


def test_tampered_or_truncated_sealed_key() -> None:
    alice = nacl.signing.SigningKey(b"A" * 32)
    sealed = seal_key(KEY, bytes(alice.verify_key), b"e" * 32)
    with pytest.raises(DecryptionError):
        open_sealed_key(sealed[:-1] + bytes([sealed[-1] ^ 1]), alice)
    with pytest.raises(DecryptionError, match="bytes"):
        open_sealed_key(sealed[:-1], alice)


def test_invalid_recipient_keys() -> None:
    with pytest.raises(KeyFormatError, match="32 bytes"):
        seal_key(KEY, b"short", b"e" * 32)
    # y = 2 is not on the curve: no Ed25519 point decodes from it.
    not_a_point = (2).to_bytes(32, "little")
    with pytest.raises(KeyFormatError, match="not a valid"):
        seal_key(KEY, not_a_point, b"e" * 32)
    with pytest.raises(KeyFormatError, match="ephemeral"):
        seal_key(KEY, bytes(nacl.signing.SigningKey(b"A" * 32).verify_key), b"e")
