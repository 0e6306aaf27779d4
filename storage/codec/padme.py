"""Padmé lengths for the codec: storage's copy of protocol.privacy.padme.

`storage/` may not import `protocol/`, so the rule is kept twice;
tests/test_cores_agree.py proves the copies agree. Padmé (Nikitin et al.,
PURBs, PETS 2019, section 4) keeps only the top floor(log2 E) + 2 significant
bits of a length L (E = floor(log2 L)): at most 11.6% more bytes, and a padded
length names only O(log log M) bits of the original.
"""

from __future__ import annotations


def padme(length: int) -> int:
    """The padded length of `length` bytes (>= length; 0 and 1 stay)."""
    if type(length) is not int or length < 0:
        raise ValueError("a length to pad is a non-negative integer")
    if length < 2:
        return length
    exponent = length.bit_length() - 1  # E = floor(log2 L)
    mantissa_bits = exponent.bit_length()  # S = floor(log2 E) + 1
    mask = (1 << (exponent - mantissa_bits)) - 1
    return (length + mask) & ~mask


def is_padded(length: int) -> bool:
    """True when `length` is a Padmé length (what a padded record may be)."""
    return padme(length) == length
