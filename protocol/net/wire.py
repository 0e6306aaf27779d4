"""Length-prefixed message frames with a hard size cap.

A frame is a 4-byte big-endian length and that many bytes of payload. The
cap is checked as soon as the length is read, before any payload is
buffered, so a peer cannot make us hold more than one capped message (and a
large one becomes resident only as its bytes arrive).
"""

from __future__ import annotations

import mmap

from protocol.errors import LocalProtocolError, RemoteProtocolError

DEFAULT_MAX_MESSAGE = 4 * 1024 * 1024
PREFIX_SIZE = 4


def frame_prefix(size: int, max_size: int = DEFAULT_MAX_MESSAGE) -> bytes:
    """The length prefix of a `size`-byte payload (checked against the cap)."""
    if not size:
        raise LocalProtocolError("a message frame cannot be empty")
    if size > max_size:
        raise LocalProtocolError(f"message of {size} bytes exceeds the {max_size}-byte cap")
    return size.to_bytes(PREFIX_SIZE, "big")


def encode_frame(payload: bytes, max_size: int = DEFAULT_MAX_MESSAGE) -> bytes:
    return frame_prefix(len(payload), max_size) + payload


# A payload this large is reassembled in an anonymous mapping, whose pages become
# resident only as bytes arrive: a length prefix that lies (announces the cap,
# then sends little) costs address space, not memory.
LAZY_BYTES = 256 * 1024
Payload = bytearray | memoryview


def message_buffer(size: int) -> Payload:
    """A zeroed, writable buffer of `size` bytes for one payload.

    The mapping is private: mmap's default for anonymous memory is shared,
    which the kernel backs with a shmem file (costlier page faults, a file
    to create and release per message).
    """
    if size >= LAZY_BYTES:
        flags = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS
        return memoryview(mmap.mmap(-1, size, flags=flags))
    return bytearray(size)


class FrameDecoder:
    """Splits a byte stream into message payloads.

    The length prefix says how large a payload is, so it is reassembled in
    one buffer of that size: bytes fed are copied into it once, and a box-stream
    reader can open bodies straight into it (`reserve`, `commit`), so the
    bytes of most of a large message are written once, by the decryption.
    A payload is a bytearray, or a memoryview of a mapping when large.
    """

    def __init__(self, max_size: int = DEFAULT_MAX_MESSAGE) -> None:
        self.max_size = max_size
        # A one-shot, smaller cap for the next frame only (a certificate before
        # admission): checked at its length prefix, before anything is buffered.
        self.next_cap: int | None = None
        self._prefix = bytearray()
        self._message: Payload | None = None
        self._target: memoryview | None = None
        self._have = 0
        self._done: list[Payload] = []

    @property
    def buffered(self) -> int:
        return len(self._prefix) + self._have

    @property
    def outstanding(self) -> int:
        """Bytes the payload under way still needs (0 between payloads): how much a
        receive may usefully bring."""
        return 0 if self._target is None else len(self._target) - self._have

    def feed(self, data: bytes | bytearray | memoryview) -> list[bytes]:
        """Payloads completed by `data`, as bytes. Raises RemoteProtocolError on a bad length.

        For small messages (the control socket): each payload is copied once
        more, into bytes. Bulk receivers use `take`/`reserve` and `completed`.
        """
        self.take(data)
        return [bytes(payload) for payload in self.completed()]

    def completed(self) -> list[Payload]:
        """Payloads completed since the last call, in order."""
        done, self._done = self._done, []
        return done

    def take(self, data: bytes | bytearray | memoryview) -> None:
        """Copy `data` into the payload being reassembled (starting new ones as needed)."""
        view = memoryview(data).cast("B")
        while view:
            if self._target is None:
                wanted = PREFIX_SIZE - len(self._prefix)
                self._prefix += view[:wanted]
                view = view[wanted:]
                if len(self._prefix) < PREFIX_SIZE:
                    break
                self._start(int.from_bytes(self._prefix, "big"))
                self._prefix.clear()
            target = self._target
            assert target is not None
            piece = view[: len(target) - self._have]
            target[self._have : self._have + len(piece)] = piece
            view = view[len(piece) :]
            self.commit(len(piece))

    def reserve(self, size: int) -> memoryview | None:
        """Where the next `size` bytes go if they all belong to the payload under way."""
        target = self._target
        if target is None or self._have + size > len(target):
            return None
        return target[self._have : self._have + size]

    def commit(self, size: int) -> None:
        """`size` bytes were written at the start of the space `reserve` gave."""
        target = self._target
        assert target is not None and self._message is not None
        self._have += size
        if self._have == len(target):
            self._done.append(self._message)
            self._message = self._target = None
            self._have = 0

    def _start(self, length: int) -> None:
        if length == 0:
            raise RemoteProtocolError("empty message frame")
        cap = self.max_size if self.next_cap is None else self.next_cap
        self.next_cap = None
        if length > cap:
            raise RemoteProtocolError(
                f"message of {length} bytes announced, over the {cap}-byte cap"
            )
        self._message = message_buffer(length)
        self._target = memoryview(self._message).cast("B")
