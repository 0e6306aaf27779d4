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
- "numpy": one table lookup per input byte (storage.codec.rs_numpy), the
  fallback where no libisal loads.

"auto" (the default) is ISA-L when it loads and passes its self-test, numpy
otherwise. numpy is imported only when the numpy kernel is built
(storage.codec.rs_numpy): with ISA-L, a node never loads it (12 MiB less idle RSS).
The shell chooses with `select_backend` (MEDVAULT_RS_BACKEND through
`backend_from_environment`); this module reads no environment of its own.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol

from storage.codec import gf256, isal

BytesLike = bytes | bytearray | memoryview

MAX_SHARDS = 255
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


class _Multiplier(Protocol):
    def apply(self, inputs: Sequence[BytesLike], outputs: Sequence[BytesLike]) -> None: ...


class _IsalKernel:
    """out = coefficients x inputs through ISA-L, its tables expanded once."""

    def __init__(self, library: isal.Isal, coefficients: gf256.Matrix) -> None:
        self._library = library
        self._tables = library.tables(coefficients)

    def apply(self, inputs: Sequence[BytesLike], outputs: Sequence[BytesLike]) -> None:
        self._library.multiply(self._tables, inputs, outputs)


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
        from storage.codec.rs_numpy import ProductKernel  # noqa: PLC0415 - numpy only here

        return ProductKernel(coefficients)

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
        out = _rows(self.parity_count, length)
        if self._encoder is not None and length:
            self._encoder.apply(data_shards, out)
        return out

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
            self._encoder.apply(data_shards, targets)

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

    def decode(
        self, shards: Mapping[int, BytesLike], size: int, *, scratch: BytesLike | None = None
    ) -> bytes:
        """The original `size`-byte segment from any k shards (by index).

        Lost data shards are rebuilt into `scratch` when given (writable, at
        least k shards long, not overlapping the shards; a caller's reused
        buffer), else into a fresh one; either way one copy joins the result.
        """
        chosen, length = self._choose(shards)
        if size < 0 or self.shard_size(size) != length:
            raise ValueError(
                f"segment size {size} does not fit shards of {length} bytes with k={self.k}"
            )
        missing = tuple(i for i in range(self.k) if i not in chosen)
        rows: list[memoryview] | None = None
        if scratch is not None and missing:
            room = _as_writable(scratch)
            if len(room) < len(missing) * length:
                raise ValueError(f"scratch of {len(room)} bytes is under {len(missing)} shards")
            rows = [room[r * length : (r + 1) * length] for r in range(len(missing))]
        rebuilt = dict(
            zip(missing, self._rebuild(shards, chosen, missing, length, rows), strict=True)
        )
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
        if len(target) < size:
            raise ValueError(f"output buffer of {len(target)} bytes is under size {size}")
        missing = tuple(i for i in range(self.k) if i not in chosen)
        for i in range(self.k):
            lo, hi = i * length, min(size, (i + 1) * length)
            if i not in missing and lo < hi:
                target[lo:hi] = _as_view(shards[i])[: hi - lo]
        if not missing or not length:
            return
        # Rows that fit whole in out[:size] are written there; a short last one goes via scratch.
        fits = [(i + 1) * length <= size for i in missing]
        rows = [
            target[i * length : (i + 1) * length] if whole else memoryview(bytearray(length))
            for i, whole in zip(missing, fits, strict=True)
        ]
        self._kernel_for(chosen, missing).apply([shards[i] for i in chosen], rows)
        for i, row, whole in zip(missing, rows, fits, strict=True):
            if not whole and i * length < size:  # a row wholly past `size` is padding
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
        into: list[memoryview] | None = None,
    ) -> list[memoryview]:
        out = _rows(len(rows), length) if into is None else into
        if rows and length:
            self._kernel_for(chosen, rows).apply([shards[i] for i in chosen], out)
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


def _rows(count: int, length: int) -> list[memoryview]:
    """`count` fresh rows of `length` bytes, views into one allocation."""
    block = memoryview(bytearray(count * length))
    return [block[r * length : (r + 1) * length] for r in range(count)]


def _as_view(data: BytesLike) -> memoryview:
    return memoryview(data).cast("B")


def _as_writable(data: BytesLike) -> memoryview:
    view = _as_view(data)
    if view.readonly:
        raise ValueError("output buffers must be writable (bytearray, numpy array, mmap)")
    return view


def _common_length(shards: Sequence[BytesLike]) -> int:
    lengths = {memoryview(s).nbytes for s in shards}
    if len(lengths) > 1:
        raise ValueError(f"shards have unequal lengths: {sorted(lengths)}")
    return lengths.pop() if lengths else 0
