"""ISA-L's GF(2^8) matrix kernels (`ec_init_tables`, `ec_encode_data`) through ctypes.

`ec_encode_data` multiplies any rows x k matrix over GF(2^8) with polynomial
0x11d (reedsolo's field and ours) by k input buffers at SIMD speed, so
`storage.codec.erasure` drives it with reedsolo's own generator rows and the
bytes stay reedsolo's. The library comes bundled in pyeclib's manylinux wheel
(`pyeclib.libs/libisal-*.so.*`), found through the distribution's file list
(importlib.metadata), never a hard-coded path; Debian's `libisal2` is tried
next. A library is used only after it has multiplied a known matrix correctly.

Nothing here copies a shard: pointers come straight from the callers' buffers
(storage.codec.pinned, a buffer-protocol export held for the call), and
numpy is not imported, so an idle node using ISA-L never loads it. ctypes
releases the GIL for the length of each foreign call, so two threads can
code two segments on two cores at once.

Loading a shared object is the one contact with the file system here (the
codec contract forbids `os`, `pathlib` and `io`, which this module does not
import); it happens once, on first use, and is a pure function of the
installed packages.
"""

from __future__ import annotations

import ctypes
import functools
import importlib.metadata
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from storage.codec import gf256
from storage.codec.pinned import pinned

if TYPE_CHECKING:  # any C-contiguous buffer: bytes, bytearray, memoryview, mmap, numpy array
    from typing_extensions import Buffer

# Distributions whose wheels bundle libisal, then the names the system's loader knows.
BUNDLING_DISTRIBUTIONS = ("pyeclib",)
SYSTEM_NAMES = ("libisal.so.2",)
# ec_init_tables writes 32 bytes per coefficient (its GFNI variant writes 8).
TABLE_BYTES_PER_COEFFICIENT = 32
# ec_encode_data takes a C int for the length and for the counts.
MAX_LENGTH = 2**31 - 1


class IsalError(RuntimeError):
    """A libisal that cannot be loaded, lacks the kernels, or computes wrong products."""


@dataclass(frozen=True)
class Tables:
    """ISA-L's expanded form of one rows x k matrix (what `ec_init_tables` writes)."""

    rows: int
    columns: int
    data: bytearray


class Isal:
    """One loaded libisal: expand a matrix once, then multiply buffers by it."""

    def __init__(self, library: ctypes.CDLL, source: str) -> None:
        try:
            init = library.ec_init_tables
            encode = library.ec_encode_data
        except AttributeError as exc:
            raise IsalError(f"{source} does not export the ISA-L erasure kernels") from exc
        init.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]
        init.restype = None
        encode.argtypes = [
            ctypes.c_int,
            ctypes.c_int,
            ctypes.c_int,
            ctypes.c_void_p,
            ctypes.POINTER(ctypes.c_void_p),
            ctypes.POINTER(ctypes.c_void_p),
        ]
        encode.restype = None
        self._init = init
        self._encode = encode
        self.source = source

    def tables(self, matrix: gf256.Matrix) -> Tables:
        """Expand `matrix` (rows x k, entries 0..255) for `multiply`."""
        rows = len(matrix)
        columns = len(matrix[0]) if rows else 0
        if rows == 0 or columns == 0:
            raise ValueError("the matrix needs at least one row and one column")
        if any(len(row) != columns for row in matrix):
            raise ValueError("the matrix rows have unequal lengths")
        coef = bytes(value for row in matrix for value in row)  # ValueError outside 0..255
        data = bytearray(rows * columns * TABLE_BYTES_PER_COEFFICIENT)
        with pinned([coef]) as (source,), pinned([data], writable=True) as (target,):
            self._init(columns, rows, source[0], target[0])
        return Tables(rows, columns, data)

    def multiply(self, tables: Tables, inputs: Sequence[Buffer], outputs: Sequence[Buffer]) -> None:
        """outputs[r] = sum over c of matrix[r][c] * inputs[c], byte by byte.

        Every input and output is a C-contiguous buffer of one common length;
        outputs must be writable and must not overlap the inputs.
        """
        if len(inputs) != tables.columns or len(outputs) != tables.rows:
            raise ValueError(
                f"a {tables.rows}x{tables.columns} matrix needs {tables.columns} inputs and"
                f" {tables.rows} outputs, got {len(inputs)} and {len(outputs)}"
            )
        try:
            with pinned(inputs) as sources, pinned(outputs, writable=True) as targets:
                length = _common_length(sources, targets)
                if length == 0:
                    return
                if length > MAX_LENGTH:
                    raise ValueError(
                        f"shards of {length} bytes exceed ISA-L's limit of {MAX_LENGTH}"
                    )
                # Both pointer arrays stay bound to names for the length of the call.
                source_pointers = (ctypes.c_void_p * tables.columns)(*_first(sources))
                target_pointers = (ctypes.c_void_p * tables.rows)(*_first(targets))
                with pinned([tables.data]) as ((table, _),):
                    self._encode(
                        length,
                        tables.columns,
                        tables.rows,
                        table,
                        source_pointers,
                        target_pointers,
                    )
        except BufferError as exc:
            raise ValueError(
                "buffers must be contiguous bytes, and output buffers writable"
                f" (bytearray, memoryview of one, mmap, numpy array): {exc}"
            ) from None


def _first(pairs: list[tuple[int, int]]) -> list[int]:
    return [address for address, _ in pairs]


def _common_length(*groups: list[tuple[int, int]]) -> int:
    lengths = {length for group in groups for _, length in group}
    if len(lengths) != 1:
        raise ValueError(f"buffers have unequal lengths: {sorted(lengths)}")
    return lengths.pop()


def candidate_libraries() -> Iterator[str]:
    """Where libisal may be, in order of preference: bundled in a wheel, then the system."""
    for distribution in BUNDLING_DISTRIBUTIONS:
        try:
            files = importlib.metadata.files(distribution) or []
        except importlib.metadata.PackageNotFoundError:
            continue
        for file in files:
            if file.name.startswith("libisal") and ".so" in file.name:
                yield str(file.locate())
    yield from SYSTEM_NAMES


def open_library(source: str) -> Isal:
    """Load `source` and prove it multiplies correctly (IsalError says why not)."""
    try:
        library = ctypes.CDLL(source)
    except OSError as exc:
        raise IsalError(f"cannot load {source}: {exc}") from exc
    isal = Isal(library, source)
    self_test(isal)
    return isal


@dataclass(frozen=True)
class Unavailable:
    """Why no libisal is in use (every candidate tried, with its failure)."""

    reason: str


@functools.cache
def load() -> Isal | Unavailable:
    """The first working libisal among `candidate_libraries`, loaded once per process."""
    failures = []
    for source in candidate_libraries():
        try:
            return open_library(source)
        except IsalError as exc:
            failures.append(str(exc))
    return Unavailable("; ".join(failures) or "no candidate library")


def self_test(isal: Isal) -> None:
    """Multiply a fixed 3x5 matrix by 100-byte inputs (SIMD body and scalar tail) and
    compare with `gf256`: a library of another field or a broken build is refused."""
    matrix = [[(7 * r + 13 * c + 1) % 256 for c in range(5)] for r in range(3)]
    inputs = [bytes((31 * c + 17 * p + 3) % 256 for p in range(100)) for c in range(5)]
    outputs = [bytearray(100) for _ in range(3)]
    isal.multiply(isal.tables(matrix), inputs, outputs)
    for r, row in enumerate(matrix):
        expected = [0] * 100
        for coef, column in zip(row, inputs, strict=True):
            for p in range(100):
                expected[p] ^= gf256.mul(coef, int(column[p]))
        if list(outputs[r]) != expected:
            raise IsalError(f"{isal.source} computed wrong products over GF(2^8)/0x11d")
