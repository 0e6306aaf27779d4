"""Seeded in-memory network: hundreds of whole nodes in one trio process.

Every request and answer goes through the real envelope encoding, so a schema
bug shows up here as on the wire; the secret handshake and box stream are
left out (they have their own tests) so that a 1000-node run takes seconds.
Each link has a fixed one-way latency derived from the seed; loss is drawn
per message from one seeded RNG; nodes can be crashed and revived and the
network split into groups. Within `deterministic_scheduling(seed)` (trio
shuffles its run queue with a module RNG) a seed reproduces a run exactly.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import trio

from node.net.dispatch import Dispatcher
from node.net.errors import CallTimeout, PeerUnreachable, RemoteError, RequestError
from protocol.dht.contact import Contact
from protocol.net.messages import (
    Envelope,
    ErrorResponse,
    Kind,
    Message,
    decode_envelope,
    encode_envelope,
)


@contextmanager
def deterministic_scheduling(seed: int) -> Iterator[None]:
    """Within the block, trio's task ordering is a function of `seed`.

    A private trio hook (as pytest-trio uses): trio shuffles its run queue with
    a module RNG when the flag is set. Both are restored when the block ends,
    so a simulation leaves the process's scheduling as it found it.
    """
    import trio._core._run as run  # noqa: PLC0415 - private, only for simulations

    allowed, state = run._ALLOW_DETERMINISTIC_SCHEDULING, run._r.getstate()
    run._ALLOW_DETERMINISTIC_SCHEDULING = True  # type: ignore[misc]
    run._r.seed(seed)
    try:
        yield
    finally:
        run._ALLOW_DETERMINISTIC_SCHEDULING = allowed  # type: ignore[misc]
        run._r.setstate(state)


@dataclass(frozen=True)
class LinkModel:
    latency_min: float = 0.005
    latency_max: float = 0.060
    loss: float = 0.0


@dataclass(frozen=True)
class SimCaller:
    remote_public_key: bytes


class SimNetwork:
    def __init__(self, seed: int, model: LinkModel | None = None) -> None:
        self.seed = seed
        self.model = model or LinkModel()
        self.rng = random.Random(seed)
        self._nodes: dict[str, tuple[bytes, Dispatcher]] = {}
        self._down: dict[str, None] = {}
        self._group: dict[str, int] = {}
        self.sent = 0
        self.lost = 0
        self.bytes_sent: dict[str, int] = {}
        self.traffic: dict[str, int] = {}  # request type -> bytes of requests and answers

    def attach(self, address: str, public_key: bytes, handler: Dispatcher) -> None:
        self._nodes[address] = (public_key, handler)
        self._down.pop(address, None)

    def crash(self, address: str) -> None:
        self._down[address] = None

    def revive(self, address: str) -> None:
        self._down.pop(address, None)

    def partition(self, *groups: Iterable[str]) -> None:
        """Split the network: addresses in different groups cannot reach each other."""
        self._group = {address: i for i, group in enumerate(groups, 1) for address in group}

    def heal(self) -> None:
        self._group = {}

    def latency(self, a: str, b: str) -> float:
        low, high = sorted((a, b))
        digest = hashlib.blake2b(f"{self.seed}|{low}|{high}".encode(), digest_size=8).digest()
        fraction = int.from_bytes(digest, "big") / 2**64
        m = self.model
        return m.latency_min + fraction * (m.latency_max - m.latency_min)

    def _passes(self, src: str, dst: str) -> bool:
        if src in self._down or dst in self._down:
            return False
        if self._group.get(src, 0) != self._group.get(dst, 0):
            return False
        if self.model.loss and self.rng.random() < self.model.loss:
            self.lost += 1
            return False
        return True

    def _count(self, sender: str, request_type: str, size: int) -> None:
        self.bytes_sent[sender] = self.bytes_sent.get(sender, 0) + size
        self.traffic[request_type] = self.traffic.get(request_type, 0) + size

    async def call(
        self, src: str, src_key: bytes, contact: Contact, message: Message, timeout: float
    ) -> Message:
        self.sent += 1
        with trio.move_on_after(timeout):
            return await self._round_trip(src, src_key, contact, message)
        raise CallTimeout(f"{message.TYPE} to {contact.address} got no answer within {timeout}s")

    async def _round_trip(
        self, src: str, src_key: bytes, contact: Contact, message: Message
    ) -> Message:
        dst = contact.address
        wire = encode_envelope(Envelope(Kind.REQUEST, 1, message))
        self._count(src, message.TYPE, len(wire))
        if not self._passes(src, dst):
            await trio.sleep_forever()
        await trio.sleep(self.latency(src, dst))
        target = self._nodes.get(dst)
        if target is None or dst in self._down:
            await trio.sleep_forever()
        public_key, handler = target
        if public_key != contact.public_key:
            raise PeerUnreachable(f"{dst}: handshake failed (a different node answers there)")
        request = decode_envelope(wire).message
        try:
            answer: Message = await handler(request, SimCaller(src_key))
            reply = Envelope(Kind.RESPONSE, 1, answer)
        except RequestError as exc:
            reply = Envelope(Kind.ERROR, 1, ErrorResponse(exc.code, exc.detail))
        wire = encode_envelope(reply)
        self._count(dst, message.TYPE, len(wire))
        if not self._passes(dst, src):
            await trio.sleep_forever()
        await trio.sleep(self.latency(src, dst))
        envelope = decode_envelope(wire)
        if envelope.kind is Kind.ERROR:
            error = envelope.message
            assert isinstance(error, ErrorResponse)
            raise RemoteError(error.code, error.detail)
        return envelope.message


@dataclass(frozen=True)
class SimPort:
    """One node's RpcPort into the simulated network."""

    network: SimNetwork
    address: str
    public_key: bytes

    async def call(self, contact: Contact, message: Message, timeout: float) -> Message:
        return await self.network.call(self.address, self.public_key, contact, message, timeout)
