"""Box-stream framing: every byte after the handshake is authenticated.

Each frame is a 34-byte header box (body length and body MAC, sealed with
nonce n) followed by the body box without its MAC (sealed with nonce n+1);
the next frame starts at n+2. A header of 18 zero bytes is the goodbye, so
a receiver can tell a clean close from a cut connection. Nonces are 24-byte
big-endian counters starting from the handshake's values; reordering,
replay, truncation or a flipped bit all fail a MAC.
"""

from __future__ import annotations

import nacl.exceptions
from nacl import bindings

from protocol.errors import LocalProtocolError, RemoteProtocolError

MAX_BODY = 65535
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

    def seal(self, data: bytes) -> bytes:
        """Frames for `data`, split into bodies of at most MAX_BODY bytes."""
        if self.closed:
            raise LocalProtocolError("the box stream was closed with a goodbye")
        if not data:
            raise LocalProtocolError("a box-stream frame cannot be empty")
        view = memoryview(data)
        out = bytearray()
        for start in range(0, len(view), MAX_BODY):
            body = bytes(view[start : start + MAX_BODY])
            header_nonce, body_nonce = self._nonces.take(), self._nonces.take()
            boxed = bindings.crypto_secretbox_easy(body, body_nonce, self._key)
            header = len(body).to_bytes(2, "big") + boxed[:MAC_SIZE]
            out += bindings.crypto_secretbox_easy(header, header_nonce, self._key)
            out += memoryview(boxed)[MAC_SIZE:]
        return bytes(out)

    def goodbye(self) -> bytes:
        """The final frame; nothing may be sealed after it."""
        if self.closed:
            raise LocalProtocolError("goodbye was already sent")
        self.closed = True
        return bindings.crypto_secretbox_easy(_GOODBYE, self._nonces.take(), self._key)


class BoxReader:
    """Opens incoming frames of one direction; any defect is the peer's fault."""

    def __init__(self, key: bytes, nonce: bytes) -> None:
        self._key = _check_key(key)
        self._nonces = _Nonces(nonce)
        self._buffer = bytearray()
        self._body_length: int | None = None
        self._body_mac = b""
        self._body_nonce = b""
        self.closed = False

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def feed(self, data: bytes) -> list[bytes]:
        """Bodies completed by `data`, in order. Raises RemoteProtocolError."""
        if self.closed:
            if data:
                raise RemoteProtocolError("data after the box-stream goodbye")
            return []
        self._buffer += data
        bodies = []
        while not self.closed:
            body = self._next_body()
            if body is None:
                break
            bodies.append(body)
        return bodies

    def _next_body(self) -> bytes | None:
        if self._body_length is None:
            if len(self._buffer) < HEADER_SIZE:
                return None
            header = self._open(bytes(self._buffer[:HEADER_SIZE]), self._nonces.take(), "header")
            del self._buffer[:HEADER_SIZE]
            if header == _GOODBYE:
                self.closed = True
                if self._buffer:
                    raise RemoteProtocolError("data after the box-stream goodbye")
                return None
            length = int.from_bytes(header[:2], "big")
            if length == 0:
                raise RemoteProtocolError("box-stream header announces an empty body")
            self._body_length, self._body_mac = length, header[2:]
            self._body_nonce = self._nonces.take()
        length = self._body_length
        if len(self._buffer) < length:
            return None
        sealed = self._body_mac + bytes(self._buffer[:length])
        del self._buffer[:length]
        self._body_length = None
        return self._open(sealed, self._body_nonce, "body")

    def _open(self, sealed: bytes, nonce: bytes, what: str) -> bytes:
        try:
            return bindings.crypto_secretbox_open_easy(sealed, nonce, self._key)
        except nacl.exceptions.CryptoError:
            raise RemoteProtocolError(
                f"box-stream {what} failed authentication (tampered, replayed or reordered)"
            ) from None
