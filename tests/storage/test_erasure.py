from __future__ import annotations

import itertools
import os

import pytest
import reedsolo
from hypothesis import given
from hypothesis import strategies as st

from storage.codec import isal
from storage.codec.erasure import ReedSolomon

# Every test runs on both backends: their bytes must be the same, reedsolo's.
BACKENDS = [
    "numpy",
    pytest.param(
        "isal",
        marks=pytest.mark.skipif(
            isinstance(isal.load(), isal.Unavailable), reason="no libisal on this machine"
        ),
    ),
]
pytestmark = pytest.mark.parametrize("backend", BACKENDS)


@st.composite
def code_and_data(draw: st.DrawFn, max_n: int = 40, max_size: int = 3000) -> tuple[int, int, bytes]:
    n = draw(st.integers(1, max_n))
    k = draw(st.integers(1, n))
    data = draw(st.binary(max_size=max_size))
    return k, n, data


@given(code_and_data())
def test_every_byte_column_is_a_reedsolo_codeword(
    backend: str, params: tuple[int, int, bytes]
) -> None:
    k, n, data = params
    shards = ReedSolomon(k, n, backend=backend).encode(data)
    assert len(shards) == n
    length = len(shards[0])
    assert all(len(s) == length for s in shards)
    # Data shards are the segment, split in order and zero-padded.
    assert b"".join(shards[:k])[: len(data)] == data
    if n == k:
        return
    codec = reedsolo.RSCodec(n - k, nsize=n)
    for p in range(length):
        message = bytes(shards[i][p] for i in range(k))
        assert bytes(codec.encode(message)) == bytes(shards[i][p] for i in range(n))


@given(code_and_data(max_n=60), st.data())
def test_any_k_shards_decode(
    backend: str, params: tuple[int, int, bytes], draw: st.DataObject
) -> None:
    k, n, data = params
    code = ReedSolomon(k, n, backend=backend)
    shards = code.encode(data)
    chosen = draw.draw(st.lists(st.sampled_from(range(n)), min_size=k, max_size=n, unique=True))
    assert code.decode({i: shards[i] for i in chosen}, len(data)) == data


def test_every_k_subset_decodes_small_code(backend: str) -> None:
    code = ReedSolomon(3, 7, backend=backend)
    data = os.urandom(1000)
    shards = code.encode(data)
    for subset in itertools.combinations(range(7), 3):
        assert code.decode({i: shards[i] for i in subset}, len(data)) == data


@pytest.mark.parametrize(("k", "n"), [(4, 6), (10, 14), (16, 20), (3, 20), (100, 255)])
def test_large_segment_worst_case(k: int, n: int, backend: str) -> None:
    # Big enough that the kernel works in several blocks; all data shards it can lose are lost.
    code = ReedSolomon(k, n, backend=backend)
    data = os.urandom(1024 * 1024 + 7)
    shards = code.encode(data)
    lost = min(k, n - k)
    survivors = {i: shards[i] for i in range(lost, n)}
    assert code.decode(survivors, len(data)) == data


@given(code_and_data(max_n=30), st.data())
def test_reconstruct_rebuilds_lost_shards_exactly(
    backend: str, params: tuple[int, int, bytes], draw: st.DataObject
) -> None:
    k, n, data = params
    code = ReedSolomon(k, n, backend=backend)
    shards = code.encode(data)
    keep = draw.draw(st.lists(st.sampled_from(range(n)), min_size=k, max_size=n, unique=True))
    lost = [i for i in range(n) if i not in keep]
    rebuilt = code.reconstruct({i: shards[i] for i in keep}, lost)
    assert rebuilt == {i: shards[i] for i in lost}


def test_encode_accepts_any_buffer(backend: str) -> None:
    code = ReedSolomon(4, 6, backend=backend)
    data = os.urandom(999)
    assert code.encode(bytearray(data)) == code.encode(memoryview(data)) == code.encode(data)


@pytest.mark.parametrize(
    ("k", "n", "message"),
    [
        (0, 4, "k must be at least 1"),
        (-1, 4, "k must be at least 1"),
        (5, 4, "k must not exceed n"),
        (4, 256, "n must be at most 255"),
    ],
)
def test_invalid_parameters(k: int, n: int, message: str, backend: str) -> None:
    with pytest.raises(ValueError, match=message):
        ReedSolomon(k, n, backend=backend)


def test_non_integer_parameters(backend: str) -> None:
    with pytest.raises(TypeError):
        ReedSolomon(2.0, 4, backend=backend)  # type: ignore[arg-type]


def test_too_few_shards(backend: str) -> None:
    code = ReedSolomon(4, 6, backend=backend)
    shards = code.encode(b"x" * 100)
    with pytest.raises(ValueError, match="need at least k=4 shards to decode, got 3"):
        code.decode({0: shards[0], 1: shards[1], 5: shards[5]}, 100)


def test_unequal_shard_lengths(backend: str) -> None:
    code = ReedSolomon(2, 4, backend=backend)
    shards = code.encode(b"y" * 100)
    with pytest.raises(ValueError, match="unequal lengths"):
        code.decode({0: shards[0], 3: shards[3][:-1]}, 100)


def test_out_of_range_index(backend: str) -> None:
    code = ReedSolomon(2, 4, backend=backend)
    shards = code.encode(b"z" * 10)
    with pytest.raises(ValueError, match="out of range"):
        code.decode({0: shards[0], 4: shards[1]}, 10)
    with pytest.raises(ValueError, match="out of range"):
        code.reconstruct({0: shards[0], 1: shards[1]}, [9])


def test_size_that_does_not_fit_the_shards(backend: str) -> None:
    code = ReedSolomon(4, 6, backend=backend)
    shards = code.encode(b"q" * 100)  # 25-byte shards
    parts = {i: shards[i] for i in range(4)}
    with pytest.raises(ValueError, match="does not fit"):
        code.decode(parts, 101)
    with pytest.raises(ValueError, match="does not fit"):
        code.decode(parts, 96)


def test_parity_needs_exactly_k_shards(backend: str) -> None:
    code = ReedSolomon(3, 5, backend=backend)
    with pytest.raises(ValueError, match="exactly k=3"):
        code.parity([b"ab", b"cd"])
