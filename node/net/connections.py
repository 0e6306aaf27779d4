"""The node's connections: one per peer, bounded, with backoff and idle closing.

Inbound: a handshake slot is taken without waiting (none free, or the
source host already holds `max_handshakes_per_host`: the stream is dropped
at once, so a flood of half-open connections costs nothing but those slots
and one host cannot take them all), the handshake runs under a timeout, then the peer is admitted if
the connection limit allows. Outbound: concurrent dials to one peer share
one attempt; a failed address waits out a jittered exponential backoff.
The backoff and the choice between duplicate connections are pure
decisions (protocol.net.dialing); this shell carries them out.
"""

from __future__ import annotations

import logging
import os
import random
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import nacl.signing
import trio

from node.config.addresses import PeerAddress
from node.config.network import Limits
from node.logs import RateLimitedLog, event, get_logger, short_key
from node.net.channel import SecureChannel, open_client_channel, open_server_channel
from node.net.errors import DialBackoff, PeerUnreachable
from node.net.membership import Membership
from node.net.peer import Handler, PeerConnection
from node.net.transport import Transport
from protocol.errors import HandshakeFailed, RemoteProtocolError
from protocol.membership.certificate import CertificateError
from protocol.net.dialing import Backoff, keep_new_connection
from protocol.net.messages import Message

log = get_logger("connections")
CERTIFICATE_RECHECK = 60.0  # seconds between checks that connected peers are still members


# Why a connection was not made, as metrics label it (a fixed set: never the message).
HANDSHAKE = "handshake"  # the secret handshake failed: another network, a wrong key, garbage
TIMEOUT = "timeout"  # not done within the handshake timeout
UNCERTIFIED = "uncertified"  # authenticated, but no valid membership certificate
UNREACHABLE = "unreachable"  # a dial found nobody listening (outbound only)


@dataclass
class ConnectionStats:
    accepted: int = 0
    dialed: int = 0
    handshake_failures: int = 0
    # (direction "inbound" or "outbound", one of the reasons above) -> connections failed
    failed: Counter[tuple[str, str]] = field(default_factory=Counter)
    refused_uncertified: int = 0  # authenticated, but no valid membership certificate
    refused_busy: int = 0
    refused_full: int = 0
    duplicates_closed: int = 0
    idle_closed: int = 0


class ConnectionManager:
    def __init__(
        self,
        *,
        identity: nacl.signing.SigningKey,
        network_key: bytes,
        transport: Transport,
        handler: Handler,
        limits: Limits | None = None,
        random_bytes: Callable[[int], bytes] = os.urandom,
        rng: Callable[[], float] = random.random,
        membership: Membership | None = None,
    ) -> None:
        self.identity = identity
        self.public_key = bytes(identity.verify_key)
        self.network_key = network_key
        self.transport = transport
        self.handler = handler
        self.limits = limits or Limits()
        self.random_bytes = random_bytes
        self.membership = membership  # None: no certificates asked (an open network)
        self.address: str | None = None
        self.stats = ConnectionStats()
        self._peers: dict[bytes, PeerConnection] = {}
        self._dialing: dict[bytes, trio.Event] = {}
        self._backoff = Backoff(
            initial=self.limits.backoff_initial, maximum=self.limits.backoff_max, rng=rng
        )
        self._handshakes = trio.Semaphore(self.limits.max_handshakes)
        self._host_handshakes: Counter[str] = Counter()  # handshakes in progress per host
        self._refusals = RateLimitedLog(log, "refused", period=60.0)
        self._nursery: trio.Nursery | None = None
        self._admitted = trio.Event()  # set and replaced whenever a peer is admitted
        # Run (as its own task) for every inbound connection admitted: the DHT
        # learns who connected. Failures in it are the hook's own business.
        self.on_inbound: Callable[[PeerConnection], Awaitable[None]] | None = None
        # Run likewise for every connection admitted, either way (revocations are shared).
        self.on_connect: Callable[[PeerConnection], Awaitable[None]] | None = None

    @property
    def peers(self) -> list[PeerConnection]:
        return [p for p in self._peers.values() if p.is_open]

    def peer(self, public_key: bytes) -> PeerConnection | None:
        connection = self._peers.get(public_key)
        return connection if connection is not None and connection.is_open else None

    async def wait_for_peer(self, public_key: bytes) -> PeerConnection:
        """The connection with `public_key`, once one is open (dialed by either side)."""
        while (connection := self.peer(public_key)) is None:
            await self._admitted.wait()
        return connection

    async def serve(self, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen and keep connections until cancelled; reports the bound address."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            self.address = await nursery.start(self.transport.serve, self._on_inbound)
            nursery.start_soon(self._close_idle)
            event(
                log,
                logging.INFO,
                "listening",
                address=self.address,
                public_key=self.public_key.hex(),
            )
            task_status.started(self.address)

    async def connect(self, peer: PeerAddress) -> PeerConnection:
        """The open connection to `peer`, dialing it if needed.

        Raises PeerUnreachable (DialBackoff while a recent failure cools down).
        """
        if self.membership is not None and self.membership.is_revoked(peer.public_key):
            raise PeerUnreachable(f"{peer.address}: this node's membership was revoked")
        existing = self.peer(peer.public_key)
        if existing is not None:
            return existing
        pending = self._dialing.get(peer.public_key)
        if pending is not None:
            await pending.wait()
            joined = self.peer(peer.public_key)
            if joined is None:
                raise PeerUnreachable(f"{peer.address}: the concurrent dial failed")
            return joined
        wait = self._backoff.wait(_dial_key(peer), trio.current_time())
        if wait > 0:
            raise DialBackoff(peer.address, wait)
        done = self._dialing[peer.public_key] = trio.Event()
        try:
            return await self._dial(peer)
        finally:
            del self._dialing[peer.public_key]
            done.set()

    async def call(
        self, peer: PeerAddress, message: Message, timeout: float | None = None
    ) -> Message:
        connection = await self.connect(peer)
        return await connection.call(message, timeout)

    async def _dial(self, peer: PeerAddress) -> PeerConnection:
        if peer.public_key == self.public_key:
            raise PeerUnreachable("refusing to dial this node's own key")
        if self._nursery is None:
            raise RuntimeError("ConnectionManager.serve() must be running before dialing")
        try:
            channel = await self._dial_channel(peer)
        except PeerUnreachable as exc:
            self._backoff.failed(_dial_key(peer), trio.current_time())
            event(
                log,
                logging.INFO,
                "dial failed",
                peer=short_key(peer.public_key),
                address=peer.address,
                reason=str(exc),
            )
            raise
        self._backoff.succeeded(_dial_key(peer))
        self.stats.dialed += 1
        connection = self._new_connection(channel, outbound=True)
        kept = self._admit(connection)
        if kept is not connection:
            await connection.aclose()
            if kept is None:
                raise PeerUnreachable("connection limit reached")
            return kept
        await self._nursery.start(self._run, connection)
        if self.on_connect is not None:
            self._nursery.start_soon(self._greet, self.on_connect, connection)
        return connection

    async def drop(self, public_key: bytes, reason: str) -> bool:
        """Close the connection with `public_key` now (True if one was open)."""
        connection = self._peers.get(public_key)
        if connection is None or not connection.is_open:
            return False
        event(log, logging.WARNING, "dropping peer", peer=short_key(public_key), reason=reason)
        await connection.aclose()
        return True

    async def _dial_channel(self, peer: PeerAddress) -> SecureChannel:
        stream: trio.abc.Stream | None = None
        try:
            with trio.fail_after(self.limits.handshake_timeout):
                stream = await self.transport.connect(peer.address)
                channel = await open_client_channel(
                    stream,
                    network_key=self.network_key,
                    identity=self.identity,
                    server_public=peer.public_key,
                    ephemeral_seed=self.random_bytes(32),
                    max_message=self.limits.max_message_bytes,
                )
                if self.membership is not None:
                    await self.membership.exchange(channel, dialer=True)
                return channel
        except (
            OSError,
            HandshakeFailed,
            trio.TooSlowError,
            CertificateError,
            RemoteProtocolError,
        ) as exc:
            if stream is not None:
                await trio.aclose_forcefully(stream)
            self.stats.failed["outbound", _dial_failure(exc)] += 1
            reason = "timed out" if isinstance(exc, trio.TooSlowError) else str(exc)
            if isinstance(exc, CertificateError):
                reason = f"no valid membership certificate: {reason}"
            raise PeerUnreachable(f"{peer.address}: {reason}") from None

    def _new_connection(self, channel: SecureChannel, *, outbound: bool) -> PeerConnection:
        return PeerConnection(
            channel,
            self.handler,
            outbound=outbound,
            call_timeout=self.limits.call_timeout,
            max_concurrent=self.limits.max_concurrent_requests,
        )

    def _admit(self, connection: PeerConnection) -> PeerConnection | None:
        """Register `connection`, or say which connection to keep instead (None: full)."""
        key = connection.remote_public_key
        existing = self.peer(key)
        if existing is not None:
            self.stats.duplicates_closed += 1
            if not keep_new_connection(
                self.public_key,
                key,
                existing_outbound=existing.outbound,
                new_outbound=connection.outbound,
            ):
                return existing
            self._register(connection)
            if self._nursery is not None:
                self._nursery.start_soon(existing.aclose)
            return connection
        if len(self.peers) >= self.limits.max_connections:
            self.stats.refused_full += 1
            event(log, logging.WARNING, "refused", peer=short_key(key), reason="connection limit")
            return None
        self._register(connection)
        return connection

    def _register(self, connection: PeerConnection) -> None:
        self._peers[connection.remote_public_key] = connection
        self._admitted.set()
        self._admitted = trio.Event()

    async def _run(
        self,
        connection: PeerConnection,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        try:
            await connection.run(task_status=task_status)
        except Exception:  # a bug on one connection must not stop the node
            log.exception(
                "connection task failed",
                extra={"fields": {"peer": short_key(connection.remote_public_key)}},
            )
        finally:
            if self._peers.get(connection.remote_public_key) is connection:
                del self._peers[connection.remote_public_key]
            event(
                log,
                logging.INFO,
                "disconnected",
                peer=short_key(connection.remote_public_key),
                reason=connection.close_reason,
            )

    async def _on_inbound(self, stream: trio.abc.Stream, host: str) -> None:
        try:
            await self._serve_inbound(stream, host)
        except Exception:  # a bug on one connection must not stop the node
            log.exception("inbound connection failed")

    async def _serve_inbound(self, stream: trio.abc.Stream, host: str) -> None:
        if self._host_handshakes[host] >= self.limits.max_handshakes_per_host:
            self.stats.refused_busy += 1
            self._refusals.note("too many handshakes in progress from one host", who=host)
            return
        try:
            self._handshakes.acquire_nowait()
        except trio.WouldBlock:
            self.stats.refused_busy += 1
            self._refusals.note("too many handshakes in progress")
            return
        self._host_handshakes[host] += 1
        try:
            channel = await self._accept_channel(stream)
        finally:
            self._handshakes.release()
            self._host_handshakes[host] -= 1
            if not self._host_handshakes[host]:
                del self._host_handshakes[host]
        if channel is None:
            return
        connection = self._new_connection(channel, outbound=False)
        if self._admit(connection) is not connection:
            await connection.aclose()
            return
        self.stats.accepted += 1
        event(log, logging.INFO, "accepted", peer=short_key(connection.remote_public_key))
        if self.on_inbound is not None and self._nursery is not None:
            self._nursery.start_soon(self._greet, self.on_inbound, connection)
        if self.on_connect is not None and self._nursery is not None:
            self._nursery.start_soon(self._greet, self.on_connect, connection)
        await self._run(connection)

    async def _greet(
        self, hook: Callable[[PeerConnection], Awaitable[None]], connection: PeerConnection
    ) -> None:
        try:
            await hook(connection)
        except Exception:  # a bug in the hook must not stop the node
            log.exception("inbound hook failed")

    async def _accept_channel(self, stream: trio.abc.Stream) -> SecureChannel | None:
        """The authenticated (and, in a certified network, admitted) channel, or None."""
        channel: SecureChannel | None = None
        with trio.move_on_after(self.limits.handshake_timeout):
            try:
                channel = await open_server_channel(
                    stream,
                    network_key=self.network_key,
                    identity=self.identity,
                    ephemeral_seed=self.random_bytes(32),
                    max_message=self.limits.max_message_bytes,
                )
            except HandshakeFailed as exc:
                self.stats.handshake_failures += 1
                self.stats.failed["inbound", HANDSHAKE] += 1
                event(log, logging.INFO, "handshake failed", reason=exc.reason)
                return None
            if self.membership is None:
                return channel
            try:
                await self.membership.exchange(channel, dialer=False)
            except (CertificateError, RemoteProtocolError) as exc:
                await self._refuse_uncertified(channel, str(exc))
                return None
            return channel
        if channel is not None:
            await self._refuse_uncertified(channel, "no certificate within the handshake timeout")
            return None
        self.stats.handshake_failures += 1
        self.stats.failed["inbound", TIMEOUT] += 1
        event(log, logging.INFO, "handshake failed", reason="timed out")
        return None

    async def _refuse_uncertified(self, channel: SecureChannel, why: str) -> None:
        self.stats.refused_uncertified += 1
        self.stats.failed["inbound", UNCERTIFIED] += 1
        self._refusals.note(
            "no valid membership certificate", who=short_key(channel.remote_public_key), why=why
        )
        await channel.aclose()

    async def _close_idle(self) -> None:
        """Close idle connections, and those whose peer's certificate stopped holding."""
        period = min(CERTIFICATE_RECHECK, max(0.5, self.limits.idle_timeout / 4))
        while True:
            await trio.sleep(period)
            if self.membership is not None:
                for connection in self.peers:
                    if not self.membership.current(connection.remote_public_key):
                        self.stats.refused_uncertified += 1
                        self._refusals.note(
                            "no longer a member (certificate expired or revoked)",
                            who=short_key(connection.remote_public_key),
                        )
                        await connection.aclose()
            cutoff = trio.current_time() - self.limits.idle_timeout
            for connection in self.peers:
                if connection.last_activity < cutoff and connection.pending_calls == 0:
                    self.stats.idle_closed += 1
                    event(
                        log,
                        logging.INFO,
                        "closing idle connection",
                        peer=short_key(connection.remote_public_key),
                    )
                    await connection.aclose()


def _dial_failure(exc: Exception) -> str:
    """The metrics label of a failed dial."""
    if isinstance(exc, trio.TooSlowError):
        return TIMEOUT
    if isinstance(exc, CertificateError):
        return UNCERTIFIED
    if isinstance(exc, OSError):
        return UNREACHABLE
    return HANDSHAKE  # HandshakeFailed, or a peer that broke the certificate exchange


def _dial_key(peer: PeerAddress) -> str:
    """What a failed dial backs off: this key at this address. Keyed by address alone,
    a member claiming an honest node's address would make every dial to it wait."""
    return f"{peer.public_key.hex()}@{peer.address}"
