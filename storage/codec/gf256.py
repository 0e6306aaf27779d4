"""GF(2^8) arithmetic and matrices for the Reed-Solomon code.

The field is the one `reedsolo` uses by default: primitive polynomial 0x11d,
generator 2. Only small things happen here (building generator and decoding
matrices); the per-byte work lives in `storage.codec.erasure` (ISA-L, or numpy).
"""

from __future__ import annotations

from collections.abc import Sequence

PRIMITIVE_POLY = 0x11D
GENERATOR = 2

Matrix = list[list[int]]


def _build_tables() -> tuple[list[int], list[int]]:
    exp = [0] * 512
    log = [0] * 256
    x = 1
    for power in range(255):
        exp[power] = x
        log[x] = power
        x <<= 1
        if x & 0x100:
            x ^= PRIMITIVE_POLY
    for power in range(255, 512):
        exp[power] = exp[power - 255]
    return exp, log


EXP, LOG = _build_tables()


def mul(a: int, b: int) -> int:
    """Product of two field elements."""
    if a == 0 or b == 0:
        return 0
    return EXP[LOG[a] + LOG[b]]


def inverse(a: int) -> int:
    """Multiplicative inverse; 0 has none."""
    if a == 0:
        raise ZeroDivisionError("0 has no inverse in GF(2^8)")
    return EXP[255 - LOG[a]]


def poly_mul(p: Sequence[int], q: Sequence[int]) -> list[int]:
    """Product of two polynomials, coefficients highest degree first."""
    out = [0] * (len(p) + len(q) - 1)
    for i, a in enumerate(p):
        for j, b in enumerate(q):
            out[i + j] ^= mul(a, b)
    return out


def generator_poly(nsym: int) -> list[int]:
    """g(x) = prod_{i<nsym} (x - 2^i): reedsolo's generator with fcr=0."""
    g = [1]
    for i in range(nsym):
        g = poly_mul(g, [1, EXP[i]])
    return g


def parity_of(message: Sequence[int], nsym: int) -> list[int]:
    """The nsym parity symbols of a systematic RS codeword for `message`.

    Remainder of message(x) * x^nsym divided by the monic generator, exactly
    as reedsolo computes it (message[0] is the highest-degree coefficient).
    """
    gen = generator_poly(nsym)
    work = list(message) + [0] * nsym
    for i in range(len(message)):
        coef = work[i]
        if coef:
            for j in range(1, len(gen)):
                work[i + j] ^= mul(gen[j], coef)
    return work[len(message) :]


def systematic_generator(k: int, n: int) -> Matrix:
    """The n x k generator matrix: identity on top, parity rows below.

    Row k+j, column i is parity symbol j of the unit message e_i; the code is
    linear, so any message's parity is these columns combined.
    """
    nsym = n - k
    parity_columns = [parity_of([1 if c == i else 0 for c in range(k)], nsym) for i in range(k)]
    identity = [[1 if c == r else 0 for c in range(k)] for r in range(k)]
    parity_rows = [[parity_columns[i][j] for i in range(k)] for j in range(nsym)]
    return identity + parity_rows


def invert(matrix: Matrix) -> Matrix:
    """Inverse of a square matrix by Gauss-Jordan elimination."""
    size = len(matrix)
    work = [list(row) + [1 if c == r else 0 for c in range(size)] for r, row in enumerate(matrix)]
    for col in range(size):
        pivot = next((r for r in range(col, size) if work[r][col]), None)
        if pivot is None:
            raise ValueError("matrix is singular")
        work[col], work[pivot] = work[pivot], work[col]
        scale = inverse(work[col][col])
        work[col] = [mul(v, scale) for v in work[col]]
        for r in range(size):
            factor = work[r][col]
            if r != col and factor:
                work[r] = [a ^ mul(factor, b) for a, b in zip(work[r], work[col], strict=True)]
    return [row[size:] for row in work]


def mat_mul(a: Matrix, b: Matrix) -> Matrix:
    """Matrix product over the field."""
    out: Matrix = []
    for row in a:
        acc = [0] * len(b[0])
        for coef, brow in zip(row, b, strict=True):
            if coef:
                for c, value in enumerate(brow):
                    acc[c] ^= mul(coef, value)
        out.append(acc)
    return out
