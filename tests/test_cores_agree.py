"""Where the two pure cores each keep a copy of a rule (they may not import each other),
the copies agree."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from protocol.control.commands import RECORD_ID_SIZE as CONTROL_RECORD_ID_SIZE
from protocol.ledger import entries
from protocol.privacy.padme import padme as protocol_padme
from storage.codec import crypt, hashing
from storage.codec.padme import padme as storage_padme


@given(st.binary(min_size=32, max_size=32), st.binary(min_size=16, max_size=64))
def test_record_ids_are_derived_alike(owner: bytes, nonce: bytes) -> None:
    assert entries.derive_record_id(owner, nonce) == hashing.derive_record_id(owner, nonce)


def test_record_id_tags_and_sizes_agree() -> None:
    assert entries.RECORD_ID_TAG == hashing.RECORD_ID_TAG
    assert crypt.RECORD_ID_SIZE == CONTROL_RECORD_ID_SIZE == hashing.DIGEST_SIZE
    assert len(entries.derive_record_id(b"o" * 32, b"n" * 16)) == crypt.RECORD_ID_SIZE


@given(st.integers(min_value=0, max_value=2**64))
def test_padme_is_computed_alike(length: int) -> None:
    """The ledger's and the manifest's padded sizes follow one rule."""
    assert storage_padme(length) == protocol_padme(length)


def test_padme_agrees_on_every_small_length_and_on_refusals() -> None:
    for length in range(70_000):
        assert storage_padme(length) == protocol_padme(length)
    for bad in (-1, 1.5, True, "3"):
        for pad in (storage_padme, protocol_padme):
            try:
                pad(bad)  # type: ignore[arg-type]
            except ValueError:
                continue
            raise AssertionError(f"{pad.__module__} padded {bad!r}")
