"""Padmé: pad a length so that sizes leak O(log log M) bits, at most ~12% overhead.

From "Reducing Metadata Leakage from Encrypted Files and Communication with
PURBs" (Nikitin et al., PETS 2019), section 4: a length L with E = floor(log2 L)
is rounded up to a multiple of 2^(E - S), S = floor(log2 E) + 1, i.e. its
binary form keeps only its top S+1 significant bits. The overhead is below
2^-S, at most 11.6% (L = 129 -> 144); padded sizes in [1, M] number
O(log^2 M), so one names O(log log M) bits (1 MiB: 300 sizes, 8.2 bits).
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
