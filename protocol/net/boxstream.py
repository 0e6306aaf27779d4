"""Box-stream framing: every byte after the handshake is authenticated.

Each frame is a 34-byte header box (body length and body MAC, sealed with
nonce n) followed by the body box without its MAC (sealed with nonce n+1);
the next frame starts at n+2. A header of 18 zero bytes is the goodbye, so
a receiver can tell a clean close from a cut connection. Nonces are 24-byte
big-endian counters starting from the handshake's values; reordering,
replay, truncation or a flipped bit all fail a MAC.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import nacl.exceptions
from nacl import bindings
from nacl._sodium import ffi, lib  # pynacl's own libsodium binding: boxing in place

from protocol.errors import LocalProtocolError, RemoteProtocolError

Buffer = bytes | bytearray | memoryview
MAX_BODY = 65535
RECEIVE_SPACE = 4 * MAX_BODY  # the most one socket receive brings (inside a large message)
IDLE_SPACE = 16 * 1024  # what a receive brings between messages (small ones fit)
KEEP_BUFFER = MAX_BODY + 1024  # a reader's buffer past this is dropped once empty
MAC_SIZE = bindings.crypto_secretbox_MACBYTES
HEADER_PLAIN_SIZE = 2 + MAC_SIZE
HEADER_SIZE = MAC_SIZE + HEADER_PLAIN_SIZE
NONCE_SIZE = bindings.crypto_secretbox_NONCEBYTES
KEY_SIZE = bindings.crypto_secretbox_KEYBYTES
_GOODBYE = bytes(HEADER_PLAIN_SIZE)
_NONCE_MODULUS = 1 << (8 * NONCE_SIZE)


class _Nonces:
    """A 24-byte big-endian counter."""

    def __init__(self, start: bytes) -> None:
        if len(start) != NONCE_SIZE:
            raise LocalProtocolError(f"a box-stream nonce is {NONCE_SIZE} bytes")
        self._value = int.from_bytes(start, "big")

    def take(self) -> bytes:
        nonce = self._value.to_bytes(NONCE_SIZE, "big")
        self._value = (self._value + 1) % _NONCE_MODULUS
        return nonce


def _check_key(key: bytes) -> bytes:
    if len(key) != KEY_SIZE:
        raise LocalProtocolError(f"a box-stream key is {KEY_SIZE} bytes")
    return bytes(key)


class BoxWriter:
    """Seals outgoing bytes into frames of one direction."""

    def __init__(self, key: bytes, nonce: bytes) -> None:
        self._key = _check_key(key)
        self._nonces = _Nonces(nonce)
        self.closed = False

    def seal(self, *parts: Buffer) -> bytearray:
        """Frames for the concatenation of `parts` (see `seal_into`), in a new buffer."""
        out = bytearray()
        del out[self.seal_into(out, *parts) :]
        return out

    def seal_into(self, out: bytearray, *parts: Buffer) -> int:
        """Write the frames for the concatenation of `parts` to the start of `out`.

        `out` grows if it is too small and is otherwise reused, so a sender
        keeps one buffer instead of allocating (and faulting in) a fresh
        multi-megabyte one per message; returns the number of bytes written.
        """
        return self.seal_bodies_into(out, message_bodies(parts))

    def seal_bodies_into(self, out: bytearray, bodies: Sequence[Buffer]) -> int:
        """Write the frames of `bodies` (from `message_bodies`, in order) to the start
        of `out`; the bytes written. A long message may be sealed a few bodies at a
        time, each call taking the next nonces, so the sealed copy stays small.

        Each body is boxed in place (its MAC lands where the header box will
        go, is read back, and the header box is then written over it), cut
        from the parts where they lie; only a body that straddles parts is joined.
        """
        if self.closed:
            raise LocalProtocolError("the box stream was closed with a goodbye")
        if not bodies:
            raise LocalProtocolError("a box-stream frame cannot be empty")
        size = sum(len(b) for b in bodies) + len(bodies) * HEADER_SIZE
        if len(out) < size:
            out.extend(bytes(size - len(out)))
        target = ffi.from_buffer(out)
        at = 0
        for body in bodies:
            length = len(body)
            header_nonce, body_nonce = self._nonces.take(), self._nonces.take()
            body_at = at + HEADER_SIZE - MAC_SIZE  # the body box: its MAC, then the body
            _check(
                lib.crypto_secretbox_easy(
                    target + body_at, ffi.from_buffer(body), length, body_nonce, self._key
                )
            )
            header = length.to_bytes(2, "big") + bytes(out[body_at : body_at + MAC_SIZE])
            _check(
                lib.crypto_secretbox_easy(target + at, header, len(header), header_nonce, self._key)
            )
            at += HEADER_SIZE + length
        del target  # releases `out` for resizing
        return size

    def goodbye(self) -> bytes:
        """The final frame; nothing may be sealed after it."""
        if self.closed:
            raise LocalProtocolError("goodbye was already sent")
        self.closed = True
        return bindings.crypto_secretbox_easy(_GOODBYE, self._nonces.take(), self._key)


def message_bodies(parts: Sequence[Buffer]) -> list[Buffer]:
    """The parts' bytes in bodies of MAX_BODY (the last may be shorter): what one
    message's frames carry, views into the parts where a body lies inside one."""
    bodies: list[Buffer] = []
    pending: list[memoryview] = []
    have = 0
    for part in parts:
        view = memoryview(part).cast("B")
        while view:
            if not have and len(view) >= MAX_BODY:
                bodies.append(view[:MAX_BODY])  # a whole body inside one part: no copy
                view = view[MAX_BODY:]
                continue
            piece = view[: MAX_BODY - have]
            pending.append(piece)
            have += len(piece)
            view = view[len(piece) :]
            if have == MAX_BODY:
                bodies.append(b"".join(pending))
                pending, have = [], 0
    if pending:
        bodies.append(b"".join(pending))
    return bodies


def _check(result: int) -> None:
    if result != 0:
        raise LocalProtocolError("sealing a box-stream frame failed")


class BodySink(Protocol):
    """Where opened bodies go (protocol.net.wire.FrameDecoder): in place, or copied."""

    def reserve(self, size: int) -> memoryview | None: ...

    def commit(self, size: int) -> None: ...

    def take(self, data: Buffer) -> None: ...


class _Bodies:
    """A sink that keeps each body as its own bytearray (`BoxReader.feed`)."""

    def __init__(self) -> None:
        self.bodies: list[bytearray] = []

    def reserve(self, size: int) -> memoryview | None:
        self.bodies.append(bytearray(size))
        return memoryview(self.bodies[-1])

    def commit(self, size: int) -> None:
        pass

    def take(self, data: Buffer) -> None:  # pragma: no cover - reserve always gives room
        self.bodies.append(bytearray(data))


class BoxReader:
    """Opens incoming frames of one direction; any defect is the peer's fault.

    Incoming bytes collect in one buffer between two offsets. A socket receives
    straight into its free end (`space`, then `received`): no bytes object per
    receive and no copy of it; `feed_into` copies given bytes in instead (other
    streams, tests). A header's last MAC_SIZE bytes are left in place and, once
    the body has arrived, overwritten with the body's MAC, so the body box (MAC,
    then body) is opened where it lies, straight into the sink's buffer (the
    reassembled message) when the sink has room for all of it, else into a
    reused scratch buffer the sink copies from. What is left of a frame moves
    to the front only when more room is asked for.
    """

    def __init__(self, key: bytes, nonce: bytes) -> None:
        self._key = _check_key(key)
        self._nonces = _Nonces(nonce)
        self._buffer = bytearray()
        self._scratch = bytearray(MAX_BODY)
        self._at = 0  # the first byte not yet opened
        self._end = 0  # the end of the bytes received
        self._body_length: int | None = None
        self._body_mac = b""
        self._body_nonce = b""
        self.closed = False

    @property
    def buffered(self) -> int:
        return self._end - self._at

    def feed(self, data: Buffer) -> list[bytearray]:
        """Bodies completed by `data`, in order, each its own buffer. RemoteProtocolError if bad."""
        sink = _Bodies()
        self.feed_into(data, sink)
        return sink.bodies

    def feed_into(self, data: Buffer, sink: BodySink) -> None:
        """Open the bodies completed by `data` into `sink`, in order."""
        view = memoryview(data).cast("B")
        if self.closed:
            if view.nbytes:
                raise RemoteProtocolError("data after the box-stream goodbye")
            return
        with self.space(view.nbytes) as room:
            room[:] = view
        self.received(view.nbytes, sink)

    def receive_size(self, outstanding: int) -> int:
        """How much the next receive should ask for, given the bytes the message under
        way still needs (0 between messages): its rest, framing included, up to
        RECEIVE_SPACE; IDLE_SPACE between messages. So an idle connection's buffer stays
        small, and a large message is still received 256 KiB at a time."""
        if not outstanding:
            return IDLE_SPACE
        frames = -(-outstanding // MAX_BODY)
        return max(IDLE_SPACE, min(RECEIVE_SPACE, outstanding + frames * HEADER_SIZE))

    def space(self, size: int = RECEIVE_SPACE) -> memoryview:
        """Room for up to `size` more received bytes, at the end of the buffer: write
        there, release the view, then say how many came (`received`)."""
        if self._at:  # the rest of a frame goes to the front
            left = self._end - self._at
            self._buffer[:left] = self._buffer[self._at : self._end]
            self._at, self._end = 0, left
        if len(self._buffer) < self._end + size:
            self._buffer += bytes(self._end + size - len(self._buffer))
        return memoryview(self._buffer)[self._end : self._end + size]

    def received(self, size: int, sink: BodySink) -> None:
        """`size` bytes were written at the start of the last `space`: open the bodies
        they complete into `sink`, in order."""
        if not 0 <= size <= len(self._buffer) - self._end:
            raise LocalProtocolError(f"{size} bytes cannot have been received into the space")
        if self.closed and size:
            raise RemoteProtocolError("data after the box-stream goodbye")
        self._end += size
        try:
            while not self.closed and self._next_body(sink):
                pass
        finally:
            if self._at == self._end:
                self._at = self._end = 0
                if len(self._buffer) > KEEP_BUFFER:  # a large message's: do not keep it
                    self._buffer = bytearray()

    def _next_body(self, sink: BodySink) -> bool:
        buffer = self._buffer
        if self._body_length is None:
            if self._end - self._at < HEADER_SIZE:
                return False
            header_box = bytes(buffer[self._at : self._at + HEADER_SIZE])
            header = self._open_header(header_box, self._nonces.take())
            if header == _GOODBYE:
                self.closed = True
                if self._end > self._at + HEADER_SIZE:
                    raise RemoteProtocolError("data after the box-stream goodbye")
                self._at += HEADER_SIZE
                return False
            length = int.from_bytes(header[:2], "big")
            if length == 0:
                raise RemoteProtocolError("box-stream header announces an empty body")
            self._body_length, self._body_mac = length, header[2:]
            self._body_nonce = self._nonces.take()
            self._at += HEADER_SIZE - MAC_SIZE  # keep room for the body's MAC
        length = self._body_length
        if self._end - self._at < MAC_SIZE + length:
            return False
        buffer[self._at : self._at + MAC_SIZE] = self._body_mac
        target = sink.reserve(length)
        into = memoryview(self._scratch)[:length] if target is None else target
        opened = lib.crypto_secretbox_open_easy(
            ffi.from_buffer(into),
            ffi.from_buffer(buffer) + self._at,
            MAC_SIZE + length,
            self._body_nonce,
            self._key,
        )
        if opened != 0:
            raise _failed("body")
        self._at += MAC_SIZE + length
        self._body_length = None
        if target is None:
            sink.take(into)
        else:
            sink.commit(length)
        return True

    def _open_header(self, sealed: bytes, nonce: bytes) -> bytes:
        try:
            return bindings.crypto_secretbox_open_easy(sealed, nonce, self._key)
        except nacl.exceptions.CryptoError:
            raise _failed("header") from None


def _failed(what: str) -> RemoteProtocolError:
    return RemoteProtocolError(
        f"box-stream {what} failed authentication (tampered, replayed or reordered)"
    )
