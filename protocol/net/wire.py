"""Length-prefixed message frames with a hard size cap.

A frame is a 4-byte big-endian length and that many bytes of payload. The
cap is checked as soon as the length is read, before any payload is
buffered, so a peer cannot make us hold more than one capped message.
"""

from __future__ import annotations

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


class FrameDecoder:
    """Splits a byte stream into message payloads.

    The pieces of a payload are kept as they arrive and joined once it is
    complete: one copy per payload, however it was cut up in transit.
    """

    def __init__(self, max_size: int = DEFAULT_MAX_MESSAGE) -> None:
        self.max_size = max_size
        # A one-shot, smaller cap for the next frame only (a certificate before
        # admission): checked at its length prefix, before anything is buffered.
        self.next_cap: int | None = None
        self._prefix = bytearray()
        self._length: int | None = None
        self._parts: list[memoryview] = []
        self._have = 0

    @property
    def buffered(self) -> int:
        return len(self._prefix) + self._have

    def feed(self, data: bytes | bytearray | memoryview) -> list[bytes]:
        """Payloads completed by `data`. Raises RemoteProtocolError on a bad length.

        `data` is not copied until its payload completes, so the caller must
        not change it afterwards (bytes, or a buffer it hands over).
        """
        view = memoryview(data).cast("B")
        payloads = []
        while view:
            if self._length is None:
                wanted = PREFIX_SIZE - len(self._prefix)
                self._prefix += view[:wanted]
                view = view[wanted:]
                if len(self._prefix) < PREFIX_SIZE:
                    break
                length = int.from_bytes(self._prefix, "big")
                self._prefix = bytearray()
                if length == 0:
                    raise RemoteProtocolError("empty message frame")
                cap = self.max_size if self.next_cap is None else self.next_cap
                self.next_cap = None
                if length > cap:
                    raise RemoteProtocolError(
                        f"message of {length} bytes announced, over the {cap}-byte cap"
                    )
                self._length = length
            piece = view[: self._length - self._have]
            view = view[len(piece) :]
            self._parts.append(piece)
            self._have += len(piece)
            if self._have == self._length:
                payloads.append(b"".join(self._parts))
                self._parts, self._have, self._length = [], 0, None
        return payloads
