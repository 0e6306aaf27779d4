"""k-of-n systematic Reed-Solomon erasure code over GF(2^8), at SIMD speed through ISA-L.

A segment is split into k equal data shards (the last zero-padded); n-k parity
shards follow. For every byte position p, the bytes ``shard[0][p] ..
shard[n-1][p]`` are exactly the codeword ``reedsolo.RSCodec(n-k, nsize=n)``
produces for the message ``shard[0][p] .. shard[k-1][p]``; the tests prove it.

Every byte of work is one matrix product: parity is the parity rows of the
systematic generator times the data shards; a rebuild is the wanted rows of
the generator times the inverse of the surviving rows' k x k submatrix. Two
backends compute it with identical bytes:

- "isal": Intel's ISA-L `ec_encode_data` (storage.codec.isal), SIMD, GIL released;
- "numpy": one table lookup per input byte that yields the products of that
  byte with every output row at once (up to eight rows packed into one machine
  word), XOR-accumulated in cache-sized blocks. The fallback where no libisal
  loads.

"auto" (the default) is ISA-L when it loads and passes its self-test, numpy
otherwise. The shell chooses with `select_backend` (MEDVAULT_RS_BACKEND through
`backend_from_environment`); this module reads no environment of its own.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol

import numpy as np
import numpy.typing as npt

from storage.codec import gf256, isal

BytesLike = bytes | bytearray | memoryview
U8Array = npt.NDArray[np.uint8]

MAX_SHARDS = 255
_ROWS_PER_WORD = 8
# Columns per pass: the accumulator and numpy's intp copy of the indices stay in L2.
_BLOCK_ELEMENTS = 64 * 1024
_BLOCK_BYTES = 256 * 1024
_CACHE_LIMIT = 256

BACKENDS = ("auto", "isal", "numpy")
BACKEND_VARIABLE = "MEDVAULT_RS_BACKEND"
_selected = "auto"


def select_backend(name: str) -> None:
    """Make `name` the backend of every ReedSolomon built without one (process-wide).

    Forcing "isal" where no libisal works raises isal.IsalError at once, naming why.
    """
    _check_backend_name(name)
    if name == "isal":
        _isal_or_raise()
    global _selected  # noqa: PLW0603 - one process-wide choice, made by the shell at start
    _selected = name


def selected_backend() -> str:
    """The name passed to `select_backend` last ("auto" until then)."""
    return _selected


def backend_from_environment(environ: Mapping[str, str]) -> str:
    """Select the backend named by MEDVAULT_RS_BACKEND in `environ` (absent: "auto")."""
    name = environ.get(BACKEND_VARIABLE, "").strip().lower() or "auto"
    try:
        select_backend(name)
    except ValueError as exc:
        raise ValueError(f"{BACKEND_VARIABLE}: {exc}") from exc
    return name


def describe_backend(name: str | None = None) -> str:
    """What `name` (default: the selected backend) runs on, for the start-up log."""
    concrete, library = _resolve(_selected if name is None else name)
    if library is not None:
        return f"isal ({library.source})"
    unavailable = isal.load()
    if concrete == "numpy" and isinstance(unavailable, isal.Unavailable):
        return f"numpy (ISA-L unavailable: {unavailable.reason})"
    return "numpy"


def _check_backend_name(name: str) -> None:
    if name not in BACKENDS:
        raise ValueError(f"unknown Reed-Solomon backend {name!r}; choose one of {BACKENDS}")


def _isal_or_raise() -> isal.Isal:
    loaded = isal.load()
    if isinstance(loaded, isal.Unavailable):
        raise isal.IsalError(f"the isal backend was asked for but {loaded.reason}")
    return loaded


def _resolve(name: str) -> tuple[str, isal.Isal | None]:
    _check_backend_name(name)
    if name == "numpy":
        return "numpy", None
    if name == "isal":
        return "isal", _isal_or_raise()
    loaded = isal.load()
    return ("numpy", None) if isinstance(loaded, isal.Unavailable) else ("isal", loaded)


def _mul_table() -> U8Array:
    table = np.zeros((256, 256), dtype=np.uint8)
    for a in range(1, 256):
        for b in range(1, 256):
            table[a, b] = gf256.EXP[gf256.LOG[a] + gf256.LOG[b]]
    return table


_MUL = _mul_table()


def _word_type(rows: int) -> type[np.unsignedinteger]:
    if rows == 1:
        return np.uint8
    if rows == 2:
        return np.uint16
    if rows <= 4:
        return np.uint32
    return np.uint64


class _Multiplier(Protocol):
    def apply(self, inputs: Sequence[U8Array], outputs: Sequence[U8Array]) -> None: ...


class _IsalKernel:
    """out = coefficients x inputs through ISA-L, its tables expanded once."""

    def __init__(self, library: isal.Isal, coefficients: gf256.Matrix) -> None:
        self._library = library
        self._tables = library.tables(coefficients)

    def apply(self, inputs: Sequence[U8Array], outputs: Sequence[U8Array]) -> None:
        self._library.multiply(self._tables, inputs, outputs)


class _ProductKernel:
    """Computes out = coefficients x inputs for a fixed coefficient matrix."""

    def __init__(self, coefficients: gf256.Matrix) -> None:
        self.rows = len(coefficients)
        self.columns = len(coefficients[0]) if coefficients else 0
        coef = np.array(coefficients, dtype=np.uint8).reshape(self.rows, self.columns)
        # Per group of <= 8 output rows: one table per input column whose
        # entry b packs coef[row, column] * b for every row of the group.
        self._groups: list[tuple[int, int, type[np.unsignedinteger], list[npt.NDArray[np.generic]]]]
        self._groups = []
        for start in range(0, self.rows, _ROWS_PER_WORD):
            stop = min(self.rows, start + _ROWS_PER_WORD)
            word = _word_type(stop - start)
            width = np.dtype(word).itemsize
            tables = []
            for col in range(self.columns):
                packed = np.zeros((256, width), dtype=np.uint8)
                packed[:, : stop - start] = _MUL[coef[start:stop, col]].T
                tables.append(packed.view(word).reshape(256))
            self._groups.append((start, stop, word, tables))

    def apply(self, inputs: Sequence[U8Array], outputs: Sequence[U8Array]) -> None:
        """Write product row r into outputs[r] (each one shard long)."""
        length = outputs[0].shape[0] if outputs else 0
        for start, stop, word, tables in self._groups:
            width = np.dtype(word).itemsize
            block = min(_BLOCK_ELEMENTS, _BLOCK_BYTES // width)
            acc = np.empty(block, dtype=word)
            tmp = np.empty(block, dtype=word)
            for lo in range(0, length, block):
                hi = min(length, lo + block)
                a = acc[: hi - lo]
                t = tmp[: hi - lo]
                np.take(tables[0], inputs[0][lo:hi], out=a, mode="wrap")
                for table, column in zip(tables[1:], inputs[1:], strict=True):
                    np.take(table, column[lo:hi], out=t, mode="wrap")
                    np.bitwise_xor(a, t, out=a)
                products = a.view(np.uint8).reshape(hi - lo, width)
                for r in range(stop - start):
                    outputs[start + r][lo:hi] = products[:, r]


class ReedSolomon:
    """Systematic k-of-n Reed-Solomon code, byte-compatible with reedsolo."""

    def __init__(self, k: int, n: int, *, backend: str | None = None) -> None:
        if not isinstance(k, int) or not isinstance(n, int):
            raise TypeError("k and n must be integers")
        if k < 1:
            raise ValueError(f"k must be at least 1, got k={k}")
        if k > n:
            raise ValueError(f"k must not exceed n, got k={k}, n={n}")
        if n > MAX_SHARDS:
            raise ValueError(f"n must be at most {MAX_SHARDS} over GF(2^8), got n={n}")
        self.k = k
        self.n = n
        # The backend that does the arithmetic: "isal" or "numpy" (never "auto").
        self.backend, self._isal = _resolve(_selected if backend is None else backend)
        self._generator = gf256.systematic_generator(k, n)
        self._encoder = self._multiplier(self._generator[k:]) if n > k else None
        self._rebuilders: dict[tuple[tuple[int, ...], tuple[int, ...]], _Multiplier] = {}

    def __repr__(self) -> str:
        return f"ReedSolomon(k={self.k}, n={self.n}, backend={self.backend!r})"

    def _multiplier(self, coefficients: gf256.Matrix) -> _Multiplier:
        if self._isal is not None:
            return _IsalKernel(self._isal, coefficients)
        return _ProductKernel(coefficients)

    @property
    def parity_count(self) -> int:
        return self.n - self.k

    def shard_size(self, size: int) -> int:
        """Length of every shard of a segment of `size` bytes."""
        return -(-size // self.k)

    def split(self, segment: BytesLike) -> list[memoryview]:
        """The k data shards; views into `segment` where no padding is needed."""
        view = memoryview(segment).cast("B")
        length = self.shard_size(len(view))
        shards = []
        for i in range(self.k):
            chunk = view[i * length : (i + 1) * length]
            if len(chunk) < length:
                padded = bytearray(length)
                padded[: len(chunk)] = chunk
                chunk = memoryview(padded)
            shards.append(chunk)
        return shards

    def parity(self, data_shards: Sequence[BytesLike]) -> list[memoryview]:
        """The n-k parity shards of k equal-length data shards."""
        if len(data_shards) != self.k:
            raise ValueError(f"need exactly k={self.k} data shards, got {len(data_shards)}")
        length = _common_length(data_shards)
        out = np.empty((self.parity_count, length), dtype=np.uint8)
        if self._encoder is not None and length:
            self._encoder.apply([_as_array(s) for s in data_shards], list(out))
        return [row.data for row in out]

    def parity_into(self, data_shards: Sequence[BytesLike], out: Sequence[BytesLike]) -> None:
        """Write the n-k parity shards into `out` (writable buffers, one shard long each).

        For callers that reuse their buffers: no allocation per segment. `out` must
        not overlap the data shards.
        """
        if len(data_shards) != self.k:
            raise ValueError(f"need exactly k={self.k} data shards, got {len(data_shards)}")
        if len(out) != self.parity_count:
            raise ValueError(f"need exactly n-k={self.parity_count} parity buffers, got {len(out)}")
        length = _common_length([*data_shards, *out])
        targets = [_as_writable(b) for b in out]
        if self._encoder is not None and length:
            self._encoder.apply([_as_array(s) for s in data_shards], targets)

    def encode(self, segment: BytesLike) -> list[bytes]:
        """All n shards of `segment`: the k data shards, then the parity."""
        data = self.split(segment)
        return [bytes(s) for s in data] + [bytes(p) for p in self.parity(data)]

    def reconstruct(
        self, shards: Mapping[int, BytesLike], wanted: Iterable[int]
    ) -> dict[int, bytes]:
        """Rebuild the shards at indices `wanted` from any k of `shards`."""
        chosen, length = self._choose(shards)
        wanted = sorted(set(wanted))
        for index in wanted:
            self._check_index(index)
        result = {i: bytes(shards[i]) for i in wanted if i in chosen}
        missing = tuple(i for i in wanted if i not in result)
        if missing:
            rebuilt = self._rebuild(shards, chosen, missing, length)
            result.update({i: bytes(row) for i, row in zip(missing, rebuilt, strict=True)})
        return result

    def decode(self, shards: Mapping[int, BytesLike], size: int) -> bytes:
        """The original `size`-byte segment from any k shards (by index)."""
        chosen, length = self._choose(shards)
        if size < 0 or self.shard_size(size) != length:
            raise ValueError(
                f"segment size {size} does not fit shards of {length} bytes with k={self.k}"
            )
        missing = tuple(i for i in range(self.k) if i not in chosen)
        rebuilt = dict(zip(missing, self._rebuild(shards, chosen, missing, length), strict=True))
        pieces: list[BytesLike] = []
        remaining = size
        for i in range(self.k):
            piece = memoryview(rebuilt[i]) if i in rebuilt else memoryview(shards[i]).cast("B")
            pieces.append(piece[: min(length, remaining)])
            remaining -= len(pieces[-1])
        return b"".join(pieces)

    def decode_into(self, shards: Mapping[int, BytesLike], size: int, out: BytesLike) -> None:
        """Write the original `size`-byte segment into out[:size] from any k shards.

        Lost data shards are rebuilt straight into `out` (no intermediate copy);
        for callers that reuse one segment buffer. `out` must be writable, at least
        `size` bytes, and must not overlap the shards.
        """
        chosen, length = self._choose(shards)
        if size < 0 or self.shard_size(size) != length:
            raise ValueError(
                f"segment size {size} does not fit shards of {length} bytes with k={self.k}"
            )
        target = _as_writable(out)
        if target.shape[0] < size:
            raise ValueError(f"output buffer of {target.shape[0]} bytes is under size {size}")
        missing = tuple(i for i in range(self.k) if i not in chosen)
        for i in range(self.k):
            lo, hi = i * length, min(size, (i + 1) * length)
            if i not in missing and lo < hi:
                target[lo:hi] = _as_array(shards[i])[: hi - lo]
        if not missing or not length:
            return
        # Rows that fit whole in out[:size] are written there; a short last one goes via scratch.
        fits = [(i + 1) * length <= size for i in missing]
        rows = [
            target[i * length : (i + 1) * length] if whole else np.empty(length, dtype=np.uint8)
            for i, whole in zip(missing, fits, strict=True)
        ]
        self._kernel_for(chosen, missing).apply([_as_array(shards[i]) for i in chosen], rows)
        for i, row, whole in zip(missing, rows, fits, strict=True):
            if not whole:
                target[i * length : size] = row[: size - i * length]

    def _check_index(self, index: int) -> None:
        if not isinstance(index, int) or not 0 <= index < self.n:
            raise ValueError(f"shard index {index!r} out of range for n={self.n}")

    def _choose(self, shards: Mapping[int, BytesLike]) -> tuple[tuple[int, ...], int]:
        for index in shards:
            self._check_index(index)
        if len(shards) < self.k:
            raise ValueError(f"need at least k={self.k} shards to decode, got {len(shards)}")
        length = _common_length(list(shards.values()))
        # Lowest indices first: data shards need no arithmetic.
        return tuple(sorted(shards)[: self.k]), length

    def _rebuild(
        self,
        shards: Mapping[int, BytesLike],
        chosen: tuple[int, ...],
        rows: tuple[int, ...],
        length: int,
    ) -> U8Array:
        out = np.empty((len(rows), length), dtype=np.uint8)
        if rows and length:
            self._kernel_for(chosen, rows).apply([_as_array(shards[i]) for i in chosen], list(out))
        return out

    def _kernel_for(self, chosen: tuple[int, ...], rows: tuple[int, ...]) -> _Multiplier:
        key = (chosen, rows)
        kernel = self._rebuilders.get(key)
        if kernel is None:
            # shards[rows] = G[rows] . inverse(G[chosen]) . shards[chosen]
            decode = gf256.invert([self._generator[i] for i in chosen])
            kernel = self._multiplier(gf256.mat_mul([self._generator[r] for r in rows], decode))
            if len(self._rebuilders) >= _CACHE_LIMIT:
                self._rebuilders.clear()
            self._rebuilders[key] = kernel
        return kernel


def _as_array(data: BytesLike) -> U8Array:
    return np.frombuffer(data, dtype=np.uint8)


def _as_writable(data: BytesLike) -> U8Array:
    array = np.frombuffer(data, dtype=np.uint8)
    if not array.flags.writeable:
        raise ValueError("output buffers must be writable (bytearray, numpy array, mmap)")
    return array


def _common_length(shards: Sequence[BytesLike]) -> int:
    lengths = {memoryview(s).nbytes for s in shards}
    if len(lengths) > 1:
        raise ValueError(f"shards have unequal lengths: {sorted(lengths)}")
    return lengths.pop() if lengths else 0
