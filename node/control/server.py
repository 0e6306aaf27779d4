"""Serving the control socket: one request per connection, answered by ControlOps.

A stale socket file left by a killed daemon is replaced (the data-directory
lock proves no other daemon owns it) and removed again on the way out.
Operator-facing failures (unknown record, no grant, too few holders, a
malformed request) become an error reply naming the problem; anything else
is logged here and reported as an internal error, and the daemon carries on.
"""

from __future__ import annotations

import array
import collections
import contextlib
import logging
import os
import socket
from pathlib import Path

import trio

from node.control.address import socket_address
from node.control.ops import OPERATOR_ERRORS, ControlOps
from node.logs import event, get_logger
from protocol.control import datachunk
from protocol.control.commands import ControlRequest, decode_request
from protocol.control.frames import MAX_CONTROL_FRAME, BadControlMessage
from protocol.control.replies import ControlReply, DataChunk, ErrorReply, encode_reply
from protocol.errors import RemoteProtocolError
from protocol.net.wire import FrameDecoder

log = get_logger("control")
RECEIVE_SIZE = 256 * 1024
# A download's data this large goes out from where it lies, after its frame's head
# (protocol.control.datachunk): no msgpack copy of it, no copy behind a prefix.
SPLIT_DATA = 64 * 1024
# A connection's send buffer, asked for (the kernel caps it at net.core.wmem_max): a
# 1 MiB segment then leaves in one send, not a wake-up per 208 KiB the client drains.
SEND_BUFFER = 4 * 1024 * 1024
MAX_FDS = 1
FD_SIZE = array.array("i").itemsize
# Failures the client is told about in so many words (everything else: "internal error").
REPORTED: tuple[type[Exception], ...] = (*OPERATOR_ERRORS, BadControlMessage, RemoteProtocolError)


class ControlStream:
    """Typed requests in, typed replies out, over one client connection.

    Reads with recvmsg, so a file descriptor the client attaches to a frame
    (put's file) is received; `take_fd` hands it over, and any not taken are
    closed with the connection.
    """

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self._frames = FrameDecoder(MAX_CONTROL_FRAME)
        self._ready: collections.deque[bytes] = collections.deque()
        self._fds: list[int] = []

    async def receive(self) -> ControlRequest | None:
        """The next request, or None when the client closed the connection."""
        while not self._ready:
            try:
                data, ancillary, flags, _ = await self.stream.socket.recvmsg(
                    RECEIVE_SIZE, socket.CMSG_SPACE(MAX_FDS * FD_SIZE)
                )
            except ConnectionResetError:  # the client went away with replies unread
                return None
            self._keep_fds(ancillary)
            if flags & socket.MSG_CTRUNC:
                raise BadControlMessage(f"more than {MAX_FDS} file descriptors attached")
            if not data:
                return None
            self._ready.extend(self._frames.feed(data))
        return decode_request(self._ready.popleft())

    def _keep_fds(self, ancillary: list[tuple[int, int, bytes]]) -> None:
        for level, kind, payload in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds = array.array("i")
                fds.frombytes(payload[: len(payload) - len(payload) % FD_SIZE])
                self._fds.extend(fds)

    def take_fd(self) -> int | None:
        """The file descriptor the client attached (the caller now owns it)."""
        return self._fds.pop(0) if self._fds else None

    def close_fds(self) -> None:
        for fd in self._fds:
            os.close(fd)
        self._fds = []

    async def send(self, reply: ControlReply) -> None:
        if isinstance(reply, DataChunk) and len(reply.data) >= SPLIT_DATA:
            await self.stream.send_all(datachunk.frame_head(reply.segment, len(reply.data)))
            await self.stream.send_all(reply.data)
        else:
            await self.stream.send_all(encode_reply(reply))


class ControlServer:
    def __init__(self, ops: ControlOps, path: Path) -> None:
        self.ops = ops
        self.path = path

    async def serve(self, *, task_status: trio.TaskStatus[Path] = trio.TASK_STATUS_IGNORED) -> None:
        listener = await self._listen()
        try:
            event(log, logging.INFO, "control socket ready", path=str(self.path))
            task_status.started(self.path)
            await trio.serve_listeners(self._handle, [listener])
        finally:
            self.path.unlink(missing_ok=True)

    async def _listen(self) -> trio.SocketListener:
        self.path.unlink(missing_ok=True)
        sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            with socket_address(self.path) as address:
                await sock.bind(address)
            os.chmod(self.path, 0o600)
            sock.listen(16)
        except BaseException:
            sock.close()
            raise
        return trio.SocketListener(sock)

    async def _handle(self, stream: trio.SocketStream) -> None:
        with contextlib.suppress(OSError):  # a smaller buffer only means more wake-ups
            stream.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
        connection = ControlStream(stream)
        async with stream:
            try:
                request = await connection.receive()
                if request is None:
                    return
                await self.ops.handle(request, connection)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return  # the client went away; whatever it started was rolled back
            except REPORTED as exc:
                await _send_error(connection, str(exc))
            except Exception:
                log.exception("control request failed")
                await _send_error(connection, "internal error in the daemon (see its log)")
            finally:
                connection.close_fds()


async def _send_error(connection: ControlStream, message: str) -> None:
    with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
        await connection.send(ErrorReply(message))
