"""The ISA-L backend: same bytes as the numpy kernel (itself proven equal to reedsolo) at
every shape the SIMD code treats specially, buffers at any offset, the reused-buffer
calls, and the fallback where no working libisal loads."""

from __future__ import annotations

import importlib.metadata
import os
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

import numpy as np
import pytest
import reedsolo
from hypothesis import given
from hypothesis import strategies as st

from storage.codec import erasure, isal

if TYPE_CHECKING:
    from typing_extensions import Buffer
from storage.codec.erasure import ReedSolomon

HAVE_ISAL = not isinstance(isal.load(), isal.Unavailable)
needs_isal = pytest.mark.skipif(not HAVE_ISAL, reason="no libisal on this machine")
BOTH = ["numpy", pytest.param("isal", marks=needs_isal)]


@pytest.fixture
def no_libisal(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A process where no candidate library loads (the cached result is forgotten)."""
    monkeypatch.setattr(isal, "candidate_libraries", lambda: iter(["/nonexistent/libisal.so"]))
    isal.load.cache_clear()
    yield
    isal.load.cache_clear()


@pytest.fixture
def restore_selection() -> Iterator[None]:
    yield
    erasure.select_backend("auto")


def test_the_bundled_library_loads_where_pyeclib_is_installed() -> None:
    # pyeclib is a runtime dependency on Linux x86_64/aarch64: there, auto must mean isal.
    try:
        importlib.metadata.distribution("pyeclib")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("pyeclib is not installed here (no wheel for this platform)")
    loaded = isal.load()
    assert isinstance(loaded, isal.Isal), loaded
    assert "libisal" in loaded.source
    assert ReedSolomon(4, 6, backend="auto").backend == "isal"


@needs_isal
@given(
    st.integers(1, 40).flatmap(lambda n: st.tuples(st.integers(1, n), st.just(n))),
    st.binary(max_size=5000),
    st.data(),
)
def test_isal_bytes_equal_numpy_bytes(
    code: tuple[int, int], data: bytes, draw: st.DataObject
) -> None:
    k, n = code
    fast, slow = ReedSolomon(k, n, backend="isal"), ReedSolomon(k, n, backend="numpy")
    shards = fast.encode(data)
    assert shards == slow.encode(data)
    keep = draw.draw(st.lists(st.sampled_from(range(n)), min_size=k, max_size=n, unique=True))
    lost = [i for i in range(n) if i not in keep]
    survivors = {i: shards[i] for i in keep}
    assert fast.reconstruct(survivors, lost) == slow.reconstruct(survivors, lost)
    assert fast.decode(survivors, len(data)) == data


@needs_isal
@pytest.mark.parametrize("length", [1, 2, 15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 129, 4097])
def test_odd_shard_lengths_around_the_simd_widths(length: int) -> None:
    # ISA-L runs 16/32/64-byte vectors and finishes tails apart: each edge must agree.
    data = np.random.default_rng(length).bytes(length * 10 - 3)
    fast, slow = ReedSolomon(10, 14, backend="isal"), ReedSolomon(10, 14, backend="numpy")
    assert fast.shard_size(len(data)) == length
    shards = fast.encode(data)
    assert shards == slow.encode(data)
    assert fast.decode({i: shards[i] for i in range(4, 14)}, len(data)) == data


@pytest.mark.parametrize("backend", BOTH)
@pytest.mark.parametrize(("k", "n"), [(1, 1), (1, 2), (1, 255), (5, 5), (255, 255), (128, 255)])
def test_extreme_shapes_are_reedsolo_codewords(backend: str, k: int, n: int) -> None:
    # k=1 (replication), n=k (no parity at all) and the largest code GF(2^8) allows.
    data = np.random.default_rng(k * 1000 + n).bytes(k * 40 + 1)
    code = ReedSolomon(k, n, backend=backend)
    shards = code.encode(data)
    assert len(shards) == n
    if n > k:
        rs = reedsolo.RSCodec(n - k, nsize=n)
        for p in (0, 17, len(shards[0]) - 1):
            message = bytes(shards[i][p] for i in range(k))
            assert bytes(rs.encode(message)) == bytes(s[p] for s in shards)
    keep = list(range(n))[-k:]  # the last k: every lost shard a data shard when n >= 2k
    assert code.decode({i: shards[i] for i in keep}, len(data)) == data


@pytest.mark.parametrize("backend", BOTH)
@pytest.mark.parametrize("offset", [1, 3, 7])
def test_unaligned_views_in_and_out(backend: str, offset: int) -> None:
    # Shards and output buffers at odd addresses inside larger buffers: no alignment assumed.
    code = ReedSolomon(4, 7, backend=backend)
    data = np.random.default_rng(offset).bytes(4 * 1001)
    backing = bytearray(offset) + bytearray(data)
    segment = memoryview(backing)[offset:]
    parity_backing = bytearray(offset + 3 * 1001 + 5)
    parity = [
        memoryview(parity_backing)[offset + i * 1001 : offset + (i + 1) * 1001] for i in range(3)
    ]
    code.parity_into(code.split(segment), parity)
    expected = code.encode(data)
    assert [bytes(p) for p in parity] == expected[4:]
    assert parity_backing[:offset] == bytearray(offset)  # nothing written outside the views
    survivors = {i: memoryview(bytes(expected[i]))[0:] for i in (1, 4, 5, 6)}
    out_backing = bytearray(offset + len(data) + 2)
    out = memoryview(out_backing)[offset : offset + len(data)]
    code.decode_into(survivors, len(data), out)
    assert bytes(out) == data
    assert out_backing[:offset] == bytearray(offset)
    assert out_backing[offset + len(data) :] == bytearray(2)


@pytest.mark.parametrize("backend", BOTH)
@pytest.mark.parametrize("size", [0, 1, 999, 1000, 1001])
def test_decode_into_writes_exactly_size_bytes(backend: str, size: int) -> None:
    code = ReedSolomon(4, 6, backend=backend)
    data = os.urandom(size)
    shards = code.encode(data)
    out = bytearray(b"\xaa" * (size + 8))
    code.decode_into({i: shards[i] for i in (2, 3, 4, 5)}, size, out)
    assert out[:size] == data
    assert out[size:] == b"\xaa" * 8  # the tail past `size` is left alone
    exact = bytearray(size)  # shorter than k shards: the last rebuilt row goes via scratch
    code.decode_into({i: shards[i] for i in (0, 2, 4, 5)}, size, exact)
    assert exact == data


@pytest.mark.parametrize("backend", BOTH)
@pytest.mark.parametrize("size", [16, 19, 20])
def test_decode_into_with_lost_rows_wholly_past_size(backend: str, size: int) -> None:
    # k=6 with 4-byte shards: row 5 (bytes 20..24) lies wholly past a 16-20 byte segment,
    # row 4 partly or wholly; losing them must rebuild nothing past `size` (Hypothesis found
    # this through the pipeline: a 3-byte record, k=6).
    code = ReedSolomon(6, 8, backend=backend)
    data = os.urandom(size)
    shards = code.encode(data)
    out = bytearray(b"\xaa" * (size + 8))
    code.decode_into({i: shards[i] for i in (0, 1, 2, 3, 6, 7)}, size, out)
    assert out[:size] == data
    assert out[size:] == b"\xaa" * 8
    assert code.decode({i: shards[i] for i in (0, 1, 2, 3, 6, 7)}, size) == data


@pytest.mark.parametrize("backend", BOTH)
def test_reused_buffers_give_fresh_results(backend: str) -> None:
    # The pipeline reuses its buffers: nothing of the previous segment may leak through.
    code = ReedSolomon(3, 5, backend=backend)
    parity = [bytearray(400) for _ in range(2)]
    out = bytearray(1200)
    for seed in range(3):
        data = np.random.default_rng(seed).bytes(1200)
        code.parity_into(code.split(data), parity)
        shards = code.encode(data)
        assert [bytes(p) for p in parity] == shards[3:]
        code.decode_into({i: shards[i] for i in (2, 3, 4)}, 1200, out)
        assert out == data


@pytest.mark.parametrize("backend", BOTH)
def test_buffer_misuse_is_refused_clearly(backend: str) -> None:
    code = ReedSolomon(3, 5, backend=backend)
    data = code.split(b"x" * 300)
    with pytest.raises(ValueError, match="writable"):
        code.parity_into(data, [b"\0" * 100, b"\0" * 100])
    with pytest.raises(ValueError, match="unequal lengths"):
        code.parity_into(data, [bytearray(100), bytearray(99)])
    with pytest.raises(ValueError, match="n-k=2 parity buffers"):
        code.parity_into(data, [bytearray(100)])
    with pytest.raises(ValueError, match="exactly k=3"):
        code.parity_into(data[:2], [bytearray(100), bytearray(100)])
    shards = code.encode(b"x" * 300)
    survivors = {i: shards[i] for i in (2, 3, 4)}
    with pytest.raises(ValueError, match="under size 300"):
        code.decode_into(survivors, 300, bytearray(299))
    with pytest.raises(ValueError, match="writable"):
        code.decode_into(survivors, 300, bytes(300))
    with pytest.raises(ValueError, match="does not fit"):
        code.decode_into(survivors, 301, bytearray(400))


@needs_isal
def test_a_peer_cycling_survivor_sets_keeps_the_table_cache_bounded() -> None:
    # Which shards answer is the peers' choice: every new set costs one table, and
    # the cache of them stays bounded however many sets a peer makes us see.
    code = ReedSolomon(3, 20, backend="isal")
    shards = code.encode(b"abc" * 50)
    seen = 0
    for a in range(20):
        for b in range(a + 1, 20):
            for c in (x for x in range(b + 1, 20) if (a + b + x) % 3 == 0):
                assert code.decode({a: shards[a], b: shards[b], c: shards[c]}, 150) == b"abc" * 50
                seen += 1
    assert seen > erasure._CACHE_LIMIT
    assert len(code._rebuilders) <= erasure._CACHE_LIMIT


def test_without_libisal_auto_falls_back_to_numpy(no_libisal: None) -> None:
    code = ReedSolomon(4, 6)
    assert code.backend == "numpy"
    data = os.urandom(5000)
    assert code.decode({i: s for i, s in enumerate(code.encode(data)) if i > 1}, 5000) == data
    described = erasure.describe_backend("auto")
    assert described.startswith("numpy (ISA-L unavailable: cannot load /nonexistent/libisal.so")


def test_without_libisal_forcing_isal_says_why(no_libisal: None, restore_selection: None) -> None:
    with pytest.raises(isal.IsalError, match="isal backend was asked for but cannot load"):
        ReedSolomon(4, 6, backend="isal")
    with pytest.raises(isal.IsalError, match="cannot load"):
        erasure.select_backend("isal")
    assert erasure.selected_backend() == "auto"


def test_a_library_without_the_kernels_is_refused() -> None:
    with pytest.raises(isal.IsalError, match="does not export the ISA-L erasure kernels"):
        isal.open_library("libc.so.6")


@needs_isal
def test_a_library_that_computes_wrong_products_is_refused() -> None:
    loaded = isal.load()
    assert isinstance(loaded, isal.Isal)

    class OffByOne(isal.Isal):
        def multiply(
            self,
            tables: isal.Tables,
            inputs: Sequence[Buffer],
            outputs: Sequence[Buffer],
        ) -> None:
            super().multiply(tables, inputs, outputs)
            memoryview(outputs[0])[5] ^= 1

    broken = OffByOne.__new__(OffByOne)
    broken.__dict__.update(loaded.__dict__)
    with pytest.raises(isal.IsalError, match="wrong products"):
        isal.self_test(broken)


@needs_isal
def test_multiply_checks_its_arguments() -> None:
    loaded = isal.load()
    assert isinstance(loaded, isal.Isal)
    tables = loaded.tables([[1, 2], [3, 4], [5, 6]])
    a, b = bytearray(8), bytearray(8)
    with pytest.raises(ValueError, match="needs 2 inputs and 3 outputs"):
        loaded.multiply(tables, [a, b], [a])
    outs = [bytearray(8) for _ in range(3)]
    with pytest.raises(ValueError, match="contiguous"):
        loaded.multiply(tables, [memoryview(bytearray(16))[::2], b], outs)
    with pytest.raises(ValueError, match="writable"):
        loaded.multiply(tables, [a, b], [bytes(8), *outs[1:]])
    with pytest.raises(ValueError, match="unequal lengths"):
        loaded.multiply(tables, [a, bytearray(9)], outs)
    with pytest.raises(ValueError, match="at least one row"):
        loaded.tables([])


@pytest.mark.parametrize(
    ("value", "chosen"), [(None, "auto"), ("", "auto"), ("numpy", "numpy"), (" NumPy ", "numpy")]
)
def test_backend_from_environment(value: str | None, chosen: str, restore_selection: None) -> None:
    environ = {} if value is None else {erasure.BACKEND_VARIABLE: value}
    assert erasure.backend_from_environment(environ) == chosen
    assert erasure.selected_backend() == chosen
    if chosen == "numpy":
        assert ReedSolomon(2, 3).backend == "numpy"


def test_an_unknown_backend_name_is_refused(restore_selection: None) -> None:
    with pytest.raises(ValueError, match="MEDVAULT_RS_BACKEND: unknown Reed-Solomon backend 'gpu'"):
        erasure.backend_from_environment({erasure.BACKEND_VARIABLE: "gpu"})
    with pytest.raises(ValueError, match="unknown Reed-Solomon backend"):
        ReedSolomon(2, 3, backend="fast")
    assert erasure.selected_backend() == "auto"
