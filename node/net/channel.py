"""A secure channel: the secret handshake, then box-stream message frames.

Drives the sans-IO machines of `protocol` over a trio stream. One channel
carries whole messages both ways; sends are serialised by a lock so frames
of concurrent senders never interleave.
"""

from __future__ import annotations

import collections
import contextlib

import nacl.signing
import trio

from protocol.errors import HandshakeFailed, RemoteProtocolError
from protocol.net.boxstream import MAX_BODY, BoxReader, BoxWriter, Buffer, message_bodies
from protocol.net.handshake import ClientHandshake, ServerHandshake, SessionKeys
from protocol.net.wire import DEFAULT_MAX_MESSAGE, FrameDecoder, Payload, frame_prefix

_RECEIVE_CHUNK = 4 * MAX_BODY
# A message is sealed and sent this many bodies (~1 MiB) at a time: the sealed copy
# a channel keeps stays this small however large its messages (a writer has one
# channel per holder, each with multi-MiB batches in flight). A chunk is sealed on
# the trio thread (under 1 ms): sealing in worker threads made every put slower,
# each hand-off waiting for the GIL behind the loop's own work (docs/throughput.md).
SEAL_CHUNK_BODIES = 16


class ConnectionLost(RemoteProtocolError):
    """The stream ended without a goodbye, or broke."""


class SecureChannel:
    def __init__(
        self,
        stream: trio.abc.Stream,
        session: SessionKeys,
        leftover: bytes = b"",
        max_message: int = DEFAULT_MAX_MESSAGE,
    ) -> None:
        self.stream = stream
        # A TCP stream is received straight into the box-stream reader's buffer.
        self._socket = stream.socket if isinstance(stream, trio.SocketStream) else None
        self.session = session
        self.max_message = max_message
        self._writer = BoxWriter(session.encrypt_key, session.encrypt_nonce)
        self._reader = BoxReader(session.decrypt_key, session.decrypt_nonce)
        self._frames = FrameDecoder(max_message)
        self._inbox: collections.deque[Payload] = collections.deque()
        self._send_lock = trio.Lock()
        self._sealed = bytearray()  # reused for every outgoing message (under the lock)
        self._pending = leftover
        self.closed = False
        self.broken = False  # a send was cut off: nothing more can be sent on this stream

    @property
    def remote_public_key(self) -> bytes:
        return self.session.remote_public_key

    async def send(self, *parts: Buffer) -> None:
        """Send one message (the concatenation of `parts`); ConnectionLost if the stream broke."""
        size = sum(memoryview(part).nbytes for part in parts)
        prefix = frame_prefix(size, self.max_message)
        async with self._send_lock:  # sealing takes the next nonces: seal in sending order
            if self.broken:
                raise ConnectionLost("an earlier send was cut off mid-message")
            bodies = message_bodies((prefix, *parts))
            try:
                for first in range(0, len(bodies), SEAL_CHUNK_BODIES):
                    chunk = bodies[first : first + SEAL_CHUNK_BODIES]
                    sealed = self._writer.seal_bodies_into(self._sealed, chunk)
                    with memoryview(self._sealed) as view:
                        await self.stream.send_all(view[:sealed])
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                raise ConnectionLost(f"send failed: {type(exc).__name__}") from None
            except BaseException:
                # Cancelled once the nonces were taken, or mid-message: the peer would
                # see a frame out of step and drop us. This stream is done; say so.
                self.broken = True
                await trio.aclose_forcefully(self.stream)
                raise

    async def receive(self, max_size: int | None = None) -> Payload | None:
        """The next message, or None once the peer said goodbye.

        Box-stream bodies are opened straight into the message's own buffer
        (protocol.net.wire.FrameDecoder); the message is a bytearray, or a
        memoryview of a mapping when large.

        `max_size` caps this message only (checked at its length prefix, before it
        is buffered): what a peer may send before it is admitted is small.
        Raises RemoteProtocolError (ConnectionLost for a cut stream) on bad input.
        """
        if max_size is not None and not self._inbox:
            self._frames.next_cap = max_size
        while not self._inbox:
            if self._reader.closed:
                return None
            data: bytes | bytearray = self._pending
            self._pending = b""
            if data:
                self._reader.feed_into(data, self._frames)
            elif self._socket is not None:
                self._reader.received(await self._receive_into(), self._frames)
            else:
                try:
                    data = await self.stream.receive_some(_RECEIVE_CHUNK)
                except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                    raise ConnectionLost(f"receive failed: {type(exc).__name__}") from None
                if not data:
                    raise ConnectionLost("stream ended without a goodbye")
                self._reader.feed_into(data, self._frames)
            self._inbox.extend(self._frames.completed())
        return self._inbox.popleft()

    async def _receive_into(self) -> int:
        """Receive from the socket into the reader's free space; how many bytes came."""
        assert self._socket is not None
        size = self._reader.receive_size(self._frames.outstanding)
        with self._reader.space(size) as room:
            try:
                size = await self._socket.recv_into(room)
            except trio.ClosedResourceError:
                raise ConnectionLost("receive failed: ClosedResourceError") from None
            except OSError as exc:  # reset, or the like: what SocketStream calls broken
                raise ConnectionLost(f"receive failed: {exc.strerror or exc}") from None
        if not size:
            raise ConnectionLost("stream ended without a goodbye")
        return int(size)

    async def aclose(self) -> None:
        """Say goodbye (best effort) and close the stream."""
        if self.closed:
            return
        self.closed = True
        with trio.move_on_after(1):
            async with self._send_lock:
                with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                    await self.stream.send_all(self._writer.goodbye())
        await self.stream.aclose()


async def _drive(
    stream: trio.abc.Stream, machine: ClientHandshake | ServerHandshake, first: bytes
) -> None:
    if first:
        await stream.send_all(first)
    while not machine.complete:
        data = bytes(await stream.receive_some(machine.bytes_expected or 1))
        if not data:
            raise HandshakeFailed("peer closed the connection during the handshake")
        reply = machine.receive_data(data)
        if reply:
            await stream.send_all(reply)


async def open_client_channel(
    stream: trio.abc.Stream,
    *,
    network_key: bytes,
    identity: nacl.signing.SigningKey,
    server_public: bytes,
    ephemeral_seed: bytes,
    max_message: int = DEFAULT_MAX_MESSAGE,
) -> SecureChannel:
    """Run the client side of the handshake; HandshakeFailed if it does not complete."""
    machine = ClientHandshake(network_key, identity, server_public, ephemeral_seed)
    await _handshake(stream, machine, machine.start())
    return SecureChannel(stream, machine.session, machine.take_leftover(), max_message)


async def open_server_channel(
    stream: trio.abc.Stream,
    *,
    network_key: bytes,
    identity: nacl.signing.SigningKey,
    ephemeral_seed: bytes,
    max_message: int = DEFAULT_MAX_MESSAGE,
) -> SecureChannel:
    machine = ServerHandshake(network_key, identity, ephemeral_seed)
    await _handshake(stream, machine, b"")
    return SecureChannel(stream, machine.session, machine.take_leftover(), max_message)


async def _handshake(
    stream: trio.abc.Stream, machine: ClientHandshake | ServerHandshake, first: bytes
) -> None:
    try:
        await _drive(stream, machine, first)
    except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
        reason = f"connection broke during the handshake ({type(exc).__name__})"
        raise HandshakeFailed(reason) from None
