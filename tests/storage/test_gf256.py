from __future__ import annotations

import random

import reedsolo
from hypothesis import given
from hypothesis import strategies as st

from storage.codec import gf256


def test_multiplication_matches_reedsolo_field() -> None:
    reedsolo.init_tables(0x11D)
    for a in range(256):
        for b in range(0, 256, 7):
            assert gf256.mul(a, b) == reedsolo.gf_mul(a, b)


def test_every_nonzero_element_has_an_inverse() -> None:
    for a in range(1, 256):
        assert gf256.mul(a, gf256.inverse(a)) == 1


def test_generator_polynomial_matches_reedsolo() -> None:
    reedsolo.init_tables(0x11D)
    for nsym in (1, 2, 4, 10, 32):
        assert gf256.generator_poly(nsym) == list(reedsolo.rs_generator_poly(nsym))


@given(st.integers(1, 12), st.randoms(use_true_random=False))
def test_invert_gives_identity(size: int, rnd: random.Random) -> None:
    # A Vandermonde-like matrix of distinct points is always invertible.
    points = rnd.sample(range(1, 256), size)
    matrix = [[gf256.EXP[(gf256.LOG[p] * c) % 255] for c in range(size)] for p in points]
    product = gf256.mat_mul(matrix, gf256.invert(matrix))
    assert product == [[int(r == c) for c in range(size)] for r in range(size)]


def test_singular_matrix_is_rejected() -> None:
    try:
        gf256.invert([[1, 2], [1, 2]])
    except ValueError as exc:
        assert "singular" in str(exc)
    else:
        raise AssertionError("a singular matrix was inverted")
