"""The numpy Reed-Solomon kernel: the fallback where no libisal loads.

One table lookup per input byte yields the products of that byte with every
output row at once (up to eight rows packed into one machine word),
XOR-accumulated in cache-sized blocks. Imported by storage.codec.erasure only
when a numpy kernel is built, so a node on ISA-L never loads numpy.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from storage.codec import gf256

BytesLike = bytes | bytearray | memoryview
U8Array = npt.NDArray[np.uint8]

_ROWS_PER_WORD = 8
# Columns per pass: the accumulator and numpy's intp copy of the indices stay in L2.
_BLOCK_ELEMENTS = 64 * 1024
_BLOCK_BYTES = 256 * 1024


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


class ProductKernel:
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

    def apply(self, inputs: Sequence[BytesLike], outputs: Sequence[BytesLike]) -> None:
        """Write product row r into outputs[r] (each one shard long)."""
        sources = [np.frombuffer(b, dtype=np.uint8) for b in inputs]
        targets = [np.frombuffer(b, dtype=np.uint8) for b in outputs]
        self._apply(sources, targets)

    def _apply(self, inputs: Sequence[U8Array], outputs: Sequence[U8Array]) -> None:
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
