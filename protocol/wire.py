"""Length-prefixed message frames with a hard size cap.

A frame is a 4-byte big-endian length and that many bytes of payload. The
cap is checked as soon as the length is read, before any payload is
buffered, so a peer cannot make us hold more than one capped message.
"""

from __future__ import annotations

from protocol.errors import LocalProtocolError, RemoteProtocolError

DEFAULT_MAX_MESSAGE = 4 * 1024 * 1024
PREFIX_SIZE = 4


def encode_frame(payload: bytes, max_size: int = DEFAULT_MAX_MESSAGE) -> bytes:
    if not payload:
        raise LocalProtocolError("a message frame cannot be empty")
    if len(payload) > max_size:
        raise LocalProtocolError(f"message of {len(payload)} bytes exceeds the {max_size}-byte cap")
    return len(payload).to_bytes(PREFIX_SIZE, "big") + payload


class FrameDecoder:
    """Splits a byte stream into message payloads."""

    def __init__(self, max_size: int = DEFAULT_MAX_MESSAGE) -> None:
        self.max_size = max_size
        self._buffer = bytearray()
        self._length: int | None = None

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def feed(self, data: bytes) -> list[bytes]:
        """Payloads completed by `data`. Raises RemoteProtocolError on a bad length."""
        self._buffer += data
        payloads = []
        while True:
            if self._length is None:
                if len(self._buffer) < PREFIX_SIZE:
                    break
                length = int.from_bytes(self._buffer[:PREFIX_SIZE], "big")
                if length == 0:
                    raise RemoteProtocolError("empty message frame")
                if length > self.max_size:
                    raise RemoteProtocolError(
                        f"message of {length} bytes announced, over the {self.max_size}-byte cap"
                    )
                del self._buffer[:PREFIX_SIZE]
                self._length = length
            if len(self._buffer) < self._length:
                break
            payloads.append(bytes(self._buffer[: self._length]))
            del self._buffer[: self._length]
            self._length = None
        return payloads
