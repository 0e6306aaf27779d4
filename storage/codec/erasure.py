"""k-of-n systematic Reed-Solomon erasure code over GF(2^8), numpy-accelerated.

A segment is split into k equal data shards (the last zero-padded); n-k parity
shards follow. For every byte position p, the bytes ``shard[0][p] ..
shard[n-1][p]`` are exactly the codeword ``reedsolo.RSCodec(n-k, nsize=n)``
produces for the message ``shard[0][p] .. shard[k-1][p]``; the tests prove it.

Speed comes from one table lookup per input byte that yields the products of
that byte with every output row at once (up to eight rows packed into one
machine word), XOR-accumulated in cache-sized blocks.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import numpy.typing as npt

from storage.codec import gf256

BytesLike = bytes | bytearray | memoryview
U8Array = npt.NDArray[np.uint8]

MAX_SHARDS = 255
_ROWS_PER_WORD = 8
# Columns per pass: the accumulator and numpy's intp copy of the indices stay in L2.
_BLOCK_ELEMENTS = 64 * 1024
_BLOCK_BYTES = 256 * 1024
_CACHE_LIMIT = 256


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

    def apply(self, inputs: Sequence[U8Array], out: U8Array) -> None:
        """Write the products into `out` (rows x shard length)."""
        length = out.shape[1]
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
                out[start:stop, lo:hi] = (
                    a.view(np.uint8).reshape(hi - lo, width)[:, : stop - start].T
                )


class ReedSolomon:
    """Systematic k-of-n Reed-Solomon code, byte-compatible with reedsolo."""

    def __init__(self, k: int, n: int) -> None:
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
        self._generator = gf256.systematic_generator(k, n)
        self._encoder = _ProductKernel(self._generator[k:]) if n > k else None
        self._rebuilders: dict[tuple[tuple[int, ...], tuple[int, ...]], _ProductKernel] = {}

    def __repr__(self) -> str:
        return f"ReedSolomon(k={self.k}, n={self.n})"

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
        if self._encoder is not None:
            self._encoder.apply([_as_array(s) for s in data_shards], out)
        return [row.data for row in out]

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
        if rows:
            self._kernel_for(chosen, rows).apply([_as_array(shards[i]) for i in chosen], out)
        return out

    def _kernel_for(self, chosen: tuple[int, ...], rows: tuple[int, ...]) -> _ProductKernel:
        key = (chosen, rows)
        kernel = self._rebuilders.get(key)
        if kernel is None:
            # shards[rows] = G[rows] . inverse(G[chosen]) . shards[chosen]
            decode = gf256.invert([self._generator[i] for i in chosen])
            kernel = _ProductKernel(gf256.mat_mul([self._generator[r] for r in rows], decode))
            if len(self._rebuilders) >= _CACHE_LIMIT:
                self._rebuilders.clear()
            self._rebuilders[key] = kernel
        return kernel


def _as_array(data: BytesLike) -> U8Array:
    return np.frombuffer(data, dtype=np.uint8)


def _common_length(shards: Sequence[BytesLike]) -> int:
    lengths = {memoryview(s).nbytes for s in shards}
    if len(lengths) > 1:
        raise ValueError(f"shards have unequal lengths: {sorted(lengths)}")
    return lengths.pop() if lengths else 0
