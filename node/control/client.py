"""The CLI's side of the control socket: a small blocking client.

The CLI is a short-lived process doing one request, so plain blocking
sockets are enough. A daemon that stops mid-stream surfaces as a clear
error; a refused upload is read back as the daemon's own error message.
"""

from __future__ import annotations

import array
import dataclasses
import io
import socket
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import IO, TypeVar

from node.control.address import control_path, socket_address
from protocol.control import datachunk
from protocol.control.commands import Chunk, ControlRequest, Put, encode_request
from protocol.control.frames import MAX_CONTROL_FRAME, BadControlMessage
from protocol.control.replies import (
    ControlReply,
    DataChunk,
    Done,
    ErrorReply,
    PutReply,
    UploadProgress,
    UploadReady,
    decode_reply,
)
from protocol.net.wire import PREFIX_SIZE, message_buffer

RECEIVE_SIZE = 256 * 1024
Decrypt = Callable[[int, bytes], bytes]  # (segment, ciphertext) -> plaintext
R = TypeVar("R", bound=ControlReply)


def _ignore(done: int) -> None:
    pass


class DaemonNotRunning(Exception):
    """No daemon answers on the data directory's control socket."""


class ControlFailed(Exception):
    """The daemon refused or failed the request; the message is its reason."""


class ControlClient:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.path = control_path(data_dir)
        self._sock: socket.socket | None = None
        self._pending = bytearray()  # received, not yet read as a frame
        self._scratch: memoryview | None = None  # a download's data passes through here

    def __enter__(self) -> ControlClient:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            with socket_address(self.path) as address:
                sock.connect(address)
        except (FileNotFoundError, ConnectionRefusedError, NotADirectoryError):
            sock.close()
            raise DaemonNotRunning(
                f"no medvault daemon is running for {self.data_dir} (start it: medvault run)"
            ) from None
        except OSError as exc:
            sock.close()
            raise DaemonNotRunning(f"cannot reach the daemon at {self.path}: {exc}") from None
        self._sock = sock
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    @property
    def sock(self) -> socket.socket:
        if self._sock is None:
            raise RuntimeError("use the client in a `with` block")
        return self._sock

    def request(self, request: ControlRequest, expect: type[R]) -> R:
        """Send one request and return its reply (ControlFailed if it is an error)."""
        self.send(request)
        return self.reply(expect)

    def send(self, request: ControlRequest) -> None:
        try:
            self.sock.sendall(encode_request(request))
        except (BrokenPipeError, ConnectionResetError):
            # The daemon gave up on the request; its reason is usually waiting to be read.
            self.reply(ControlReply)
            raise ControlFailed("the daemon closed the connection") from None

    def reply(self, expect: type[R]) -> R:
        """The next reply, which must be an `expect` (an ErrorReply raises ControlFailed)."""
        reply = self._next()
        if isinstance(reply, ErrorReply):
            raise ControlFailed(reply.error)
        if not isinstance(reply, expect):
            raise ControlFailed(f"the daemon answered {reply.KIND!r}, not {expect.KIND!r}")
        return reply

    def _next(self) -> ControlReply:
        try:
            return decode_reply(self._frame())
        except BadControlMessage as exc:
            raise ControlFailed(f"bad reply from the daemon: {exc}") from None

    def _recv(self) -> bytes:
        try:
            data = self.sock.recv(RECEIVE_SIZE)
        except ConnectionResetError:
            data = b""
        if not data:
            raise ControlFailed("the daemon closed the connection before answering")
        return data

    def _recv_into(self, target: memoryview) -> int:
        try:
            got = self.sock.recv_into(target)
        except ConnectionResetError:
            got = 0
        if not got:
            raise ControlFailed("the daemon closed the connection before answering")
        return got

    def _fill(self, need: int) -> None:
        """Until at least `need` bytes are pending."""
        while len(self._pending) < need:
            self._pending += self._recv()

    def _frame_size(self) -> int:
        """The next frame's payload size (its prefix stays pending)."""
        self._fill(PREFIX_SIZE)
        size = int.from_bytes(self._pending[:PREFIX_SIZE], "big")
        if not 0 < size <= MAX_CONTROL_FRAME:
            raise ControlFailed(
                f"bad reply from the daemon: a frame of {size} bytes announced"
                f" (1 to {MAX_CONTROL_FRAME})"
            )
        return size

    def _frame(self) -> bytes | bytearray | memoryview:
        """The next frame's payload; a large one received straight into its own buffer."""
        size = self._frame_size()
        end = PREFIX_SIZE + size
        if len(self._pending) >= end:
            payload = bytes(self._pending[PREFIX_SIZE:end])
            del self._pending[:end]
            return payload
        buffer = message_buffer(size)  # lazy when large: a lying prefix costs address space
        have = len(self._pending) - PREFIX_SIZE
        buffer[:have] = self._pending[PREFIX_SIZE:]
        self._pending.clear()
        target = memoryview(buffer)
        while have < size:
            have += self._recv_into(target[have:])
        return buffer

    def _stream_data(self, sink: IO[bytes], expected: int) -> int | None:
        """If the next frame is a DataChunk: check its segment is `expected`, write its data
        to `sink` as it arrives (no frame assembled, nothing copied out of it) and return
        its length; else None, the frame untouched (protocol.control.datachunk)."""
        size = self._frame_size()
        self._fill(PREFIX_SIZE + min(size, datachunk.HEAD_MAX))
        head = datachunk.parse_head(self._pending[PREFIX_SIZE:][: datachunk.HEAD_MAX], size)
        if head is None:
            return None
        segment, length = head
        if segment != expected:
            raise ControlFailed(f"segment {segment} arrived, {expected} expected")
        del self._pending[: PREFIX_SIZE + length]
        remaining = size - length
        if self._pending:
            early = self._pending[:remaining]
            del self._pending[: len(early)]
            sink.write(early)
            remaining -= len(early)
        if self._scratch is None:
            self._scratch = memoryview(bytearray(RECEIVE_SIZE))
        while remaining:
            got = self._recv_into(self._scratch[: min(remaining, RECEIVE_SIZE)])
            sink.write(self._scratch[:got])
            remaining -= got
        return size - length

    def upload(
        self, request: Put, source: IO[bytes], advance: Callable[[int], None] = _ignore
    ) -> PutReply:
        """Run a put of `source`; the daemon's final reply.

        A source with a file descriptor (a file, a pipe) is handed to the
        daemon, which reads it itself: nothing is copied through this
        process. Anything else is streamed in the chunk size the daemon asks for.
        """
        try:
            fd = source.fileno()
        except (OSError, AttributeError, io.UnsupportedOperation):
            return self._stream(request, source, advance)
        self._send_with_fd(dataclasses.replace(request, attached=True), fd)
        self.reply(UploadReady)  # the go-ahead
        done = 0
        while True:
            reply = self.reply(ControlReply)
            if isinstance(reply, UploadProgress):
                advance(reply.done - done)
                done = reply.done
                continue
            if not isinstance(reply, PutReply):
                raise ControlFailed(f"the daemon answered {reply.KIND!r} to a put")
            advance(max(0, reply.size - done))
            return reply

    def _send_with_fd(self, request: ControlRequest, fd: int) -> None:
        frame = encode_request(request)
        fds = array.array("i", [fd])
        sent = self.sock.sendmsg([frame], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds.tobytes())])
        if sent < len(frame):
            self.sock.sendall(frame[sent:])

    def _stream(self, request: Put, source: IO[bytes], advance: Callable[[int], None]) -> PutReply:
        size = self.request(dataclasses.replace(request, attached=False), UploadReady).chunk_size
        current = source.read(size)
        while True:  # one chunk read ahead, so the last one can be flagged
            following = source.read(size) if len(current) == size else b""
            self.send(Chunk(current, not following))
            advance(len(current))
            if not following:
                return self.reply(PutReply)
            current = following

    def download(self, sink: IO[bytes], decrypt: Decrypt | None = None) -> int:
        """After a get's header: write the record to `sink`; returns bytes written.

        Without `decrypt`, each segment's data goes to the sink as it arrives (in pieces,
        from a buffer reused for the next: the sink must not keep what it is given).
        """
        written = 0
        expected = 0
        while True:
            if decrypt is None:
                streamed = self._stream_data(sink, expected)
                if streamed is not None:
                    expected += 1
                    written += streamed
                    continue
            frame = self.reply(ControlReply)
            if isinstance(frame, Done):
                return written
            if not isinstance(frame, DataChunk):
                raise ControlFailed(f"the daemon sent {frame.KIND!r} inside a download")
            if frame.segment != expected:
                raise ControlFailed(f"segment {frame.segment} arrived, {expected} expected")
            data = frame.data if decrypt is None else decrypt(expected, frame.data)
            expected += 1
            sink.write(data)
            written += len(data)


def call(data_dir: Path, request: ControlRequest, expect: type[R]) -> R:
    """One request, one reply of type `expect`."""
    with ControlClient(data_dir) as client:
        return client.request(request, expect)
