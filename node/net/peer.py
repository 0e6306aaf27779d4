"""One authenticated connection to a peer, carrying concurrent RPCs both ways.

A reader task decodes envelopes: responses wake the call waiting for them,
requests run as tasks (at most `max_concurrent` at once; beyond that the
peer gets an `unavailable` error). Any protocol violation by the peer ends
this connection with a logged reason and nothing else.

Decoding a large envelope (up to 4 MiB of capped lists: ~0.15 s of Python
work) would stall every other peer if it ran on the trio thread, so
envelopes of `DECODE_IN_WORKER_BYTES` or more are decoded in a worker
thread; at most `DECODE_THREADS` of them at once, node-wide, so a flood from
many peers cannot starve the trio thread of the GIL either. Small envelopes
(most RPCs) stay inline: a thread hand-off would cost more than decoding.
So do large ones of at most `INLINE_DECODE_ITEMS` values (a batch of shard
blocks: ~20 us for 1 MiB, where the hand-off cost more CPU than that); the
quick decoder gives up past that budget and the worker decodes as before.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

import trio

from node.logs import event, get_logger, short_key
from node.net.channel import SecureChannel
from node.net.errors import (
    CallTimeout,
    PeerClosed,
    RemoteError,
    RequestError,
    RpcError,
    UnexpectedResponse,
)
from node.offload import in_worker
from protocol.errors import LocalProtocolError, RemoteProtocolError
from protocol.ids import node_id
from protocol.net.messages import (
    BadMessage,
    Envelope,
    ErrorCode,
    ErrorResponse,
    Kind,
    Message,
    UnknownMessageType,
    decode_envelope,
    decode_envelope_quick,
    encode_envelope_parts,
)
from protocol.net.rpc import RequestTracker
from protocol.net.wire import Payload

log = get_logger("peer")
DECODE_IN_WORKER_BYTES = 64 * 1024
DECODE_THREADS = 2
INLINE_DECODE_ITEMS = 256
_decode_limiter: trio.lowlevel.RunVar[trio.CapacityLimiter] = trio.lowlevel.RunVar(
    "medvault_decode_limiter"
)
Handler = Callable[[Message, "PeerConnection"], Awaitable[Message]]
T = TypeVar("T", bound=Message)


class _Waiter:
    def __init__(self) -> None:
        self.done = trio.Event()
        self.envelope: Envelope | None = None


class PeerConnection:
    def __init__(
        self,
        channel: SecureChannel,
        handler: Handler,
        *,
        outbound: bool,
        call_timeout: float = 10.0,
        max_concurrent: int = 64,
    ) -> None:
        self.channel = channel
        self.handler = handler
        self.outbound = outbound
        self.call_timeout = call_timeout
        self.remote_public_key = channel.remote_public_key
        self.remote_node_id = node_id(self.remote_public_key)
        self.last_activity = trio.current_time()
        self.close_reason: str | None = None
        self.closed = trio.Event()
        self._tracker = RequestTracker()
        self._waiters: dict[int, _Waiter] = {}
        self._slots = trio.Semaphore(max_concurrent)
        self._cancel = trio.CancelScope()
        self._started = False
        self._stopped = trio.Event()

    def __repr__(self) -> str:
        direction = "out" if self.outbound else "in"
        return f"PeerConnection({short_key(self.remote_public_key)}, {direction})"

    @property
    def is_open(self) -> bool:
        return not self.closed.is_set()

    @property
    def pending_calls(self) -> int:
        return len(self._waiters)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve this connection until it closes; never raises for peer faults."""
        reason = "closed"
        self._started = True
        try:
            with self._cancel:
                async with trio.open_nursery() as nursery:
                    task_status.started()
                    try:
                        await self._read_loop(nursery)
                        reason = "peer said goodbye"
                    except RemoteProtocolError as exc:
                        reason = exc.reason
                        event(
                            log,
                            logging.WARNING,
                            "connection dropped",
                            peer=short_key(self.remote_public_key),
                            reason=exc.reason,
                        )
                    nursery.cancel_scope.cancel()
        finally:
            self._finish(reason)
            with trio.CancelScope(shield=True):
                await self.channel.aclose()
            self._stopped.set()

    def _finish(self, reason: str) -> None:
        if self.close_reason is None:
            self.close_reason = reason
        self.closed.set()
        for waiter in self._waiters.values():
            waiter.done.set()

    def _lost(self, reason: str) -> None:
        """The stream is unusable: closed now (a caller redials), the reader stops."""
        self._finish(reason)
        self._cancel.cancel()

    async def aclose(self) -> None:
        """Close the connection (goodbye sent) and wait until it is down."""
        self._finish("closed locally")
        self._cancel.cancel()
        if self._started:
            await self._stopped.wait()
        else:
            with trio.CancelScope(shield=True):
                await self.channel.aclose()

    async def call(self, message: Message, timeout: float | None = None) -> Message:
        """Send a request and wait for its response.

        Raises CallTimeout, PeerClosed, RemoteError (typed error answer).
        """
        if not self.is_open:
            raise PeerClosed(f"connection to {short_key(self.remote_public_key)} is closed")
        timeout = self.call_timeout if timeout is None else timeout
        now = trio.current_time()
        try:
            request_id = self._tracker.open(now, timeout)
        except LocalProtocolError as exc:
            raise RpcError(str(exc)) from None
        waiter = self._waiters[request_id] = _Waiter()
        deadline = self._tracker.deadline(request_id) or now + timeout
        try:
            # The deadline covers the send too: a peer that stops reading must not
            # hold a call (and the channel's send lock) past its timeout.
            with trio.move_on_at(deadline) as sending:
                try:
                    await self._send(Envelope(Kind.REQUEST, request_id, message))
                except RemoteProtocolError as exc:  # the stream broke under us
                    self._lost(exc.reason)
                    raise PeerClosed(f"connection lost while sending: {exc.reason}") from None
                except BaseException:
                    if self.channel.broken:  # cut off mid-message: this connection is done
                        self._lost("a send was cut off")
                    raise
            if sending.cancelled_caught:
                raise CallTimeout(f"{message.TYPE} could not be sent within {timeout}s")
            with trio.move_on_at(deadline):
                await waiter.done.wait()
        finally:
            self._waiters.pop(request_id, None)
            self._tracker.close(request_id)
        answer = waiter.envelope
        if answer is None:
            if not self.is_open:
                raise PeerClosed(f"connection closed before the answer ({self.close_reason})")
            raise CallTimeout(f"{message.TYPE} got no answer within {timeout}s")
        if answer.kind is Kind.ERROR:
            error = answer.message
            if isinstance(error, ErrorResponse):
                raise RemoteError(error.code, error.detail)
            raise UnexpectedResponse(f"error answer carries {error.TYPE}")
        return answer.message

    async def request(self, message: Message, expect: type[T], timeout: float | None = None) -> T:
        """`call`, checking the answer's type."""
        answer = await self.call(message, timeout)
        if not isinstance(answer, expect):
            raise UnexpectedResponse(
                f"expected {expect.TYPE} in answer to {message.TYPE}, got {answer.TYPE}"
            )
        return answer

    async def _send(self, envelope: Envelope) -> None:
        await self.channel.send(*encode_envelope_parts(envelope))
        self.last_activity = trio.current_time()

    async def _read_loop(self, nursery: trio.Nursery) -> None:
        while True:
            payload = await self.channel.receive()
            if payload is None:
                return
            self.last_activity = trio.current_time()
            try:
                envelope = await decode(payload)
            except BadMessage as exc:
                if exc.request_id is None or exc.kind is not Kind.REQUEST:
                    raise
                await self._answer_error(exc.request_id, exc.code, exc.reason)
                if isinstance(exc, UnknownMessageType):
                    continue  # a newer peer may ask for things we do not know
                raise
            if envelope.kind is Kind.REQUEST:
                await self._accept_request(nursery, envelope)
            else:
                self._deliver(envelope)

    def _deliver(self, envelope: Envelope) -> None:
        waiter = self._waiters.get(envelope.request_id)
        if waiter is None or waiter.done.is_set():
            event(log, logging.DEBUG, "late or unknown response", request_id=envelope.request_id)
            return
        waiter.envelope = envelope
        waiter.done.set()

    async def _accept_request(self, nursery: trio.Nursery, envelope: Envelope) -> None:
        try:
            self._slots.acquire_nowait()
        except trio.WouldBlock:
            await self._answer_error(
                envelope.request_id, ErrorCode.UNAVAILABLE, "too many requests"
            )
            return
        nursery.start_soon(self._serve_request, envelope)

    async def _serve_request(self, envelope: Envelope) -> None:
        try:
            try:
                answer = await self.handler(envelope.message, self)
                reply = Envelope(Kind.RESPONSE, envelope.request_id, answer)
            except RequestError as exc:
                reply = Envelope(
                    Kind.ERROR, envelope.request_id, ErrorResponse(exc.code, exc.detail)
                )
            except Exception:
                log.exception(
                    "request handler failed", extra={"fields": {"type": envelope.message.TYPE}}
                )
                error = ErrorResponse(ErrorCode.INTERNAL, "internal error")
                reply = Envelope(Kind.ERROR, envelope.request_id, error)
            # If the connection is going down, the read loop reports why.
            with contextlib.suppress(RemoteProtocolError):
                await self._send(reply)
        finally:
            self._slots.release()

    async def _answer_error(self, request_id: int, code: str, detail: str) -> None:
        with contextlib.suppress(RemoteProtocolError):
            await self._send(Envelope(Kind.ERROR, request_id, ErrorResponse(code, detail)))


async def decode(payload: Payload) -> Envelope:
    """`decode_envelope`, in a worker thread for a large payload (see the module doc)."""
    if len(payload) < DECODE_IN_WORKER_BYTES:
        return decode_envelope(payload)
    quick = decode_envelope_quick(payload, INLINE_DECODE_ITEMS)
    if quick is not None:
        return quick
    try:
        limiter = _decode_limiter.get()
    except LookupError:
        limiter = trio.CapacityLimiter(DECODE_THREADS)
        _decode_limiter.set(limiter)
    return await in_worker(decode_envelope, payload, limiter=limiter)
