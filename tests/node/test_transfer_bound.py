"""The writer's buffers stay bounded by bytes when a holder is slow (issue 17)."""

from __future__ import annotations

import weakref
from collections.abc import AsyncIterator
from typing import cast

import trio
import trio.testing

from node.records.stages import run_stages
from node.records.transfer import IN_FLIGHT, HolderSender, send_to_holders
from protocol.dht.contact import Contact
from protocol.net.messages import Message
from protocol.records.messages import ShardsStored, StoreShards
from storage.codec.manifest import Manifest

BLOCK = 1000
BATCH = 4 * BLOCK  # four segments' blocks per batch
SEGMENTS = 200
N = 3


class Block(bytearray):
    """A block the test can watch die (bytearray subclasses take weak references)."""


class Port:
    """A holder that answers each StoreShards once `gate` is set (never, for a stall)."""

    def __init__(self, gate: trio.Event | None) -> None:
        self.gate = gate
        self.received: list[tuple[int, int, int]] = []  # (index, first segment, blocks)

    async def call(self, contact: Contact, message: Message, timeout: float) -> Message:
        assert isinstance(message, StoreShards)
        if self.gate is not None:
            await self.gate.wait()
        self.received.append((message.index, message.first_segment, len(message.blocks)))
        return ShardsStored(len(message.blocks), message.complete)


class FakeManifest:
    def encode(self) -> bytes:
        return b"manifest"


def sender(port: Port, byte: int, indices: list[int]) -> HolderSender:
    return HolderSender(
        port=port,
        holder=Contact(bytes([byte]) * 32, "mem:1"),
        record_id=b"r" * 32,
        indices=indices,
        batch_bytes=BATCH,
        timeout=5.0,
    )


async def test_a_stalled_holder_holds_up_a_bounded_number_of_segments(
    autojump_clock: trio.abc.Clock,
) -> None:
    live = 0  # blocks made and not yet freed
    produced = 0

    def freed() -> None:
        nonlocal live
        live -= 1

    async def source() -> AsyncIterator[int]:
        nonlocal produced
        for number in range(SEGMENTS):
            produced += 1
            yield number

    def encode(number: int) -> list[Block]:
        nonlocal live
        blocks = [Block(bytes([number % 256]) * BLOCK) for _ in range(N)]
        for block in blocks:
            weakref.finalize(block, freed)
        live += N
        return blocks

    gate = trio.Event()
    fast, slow = Port(None), Port(gate)
    senders = [sender(fast, 1, [0, 1]), sender(slow, 2, [2])]
    manifest = cast(Manifest, FakeManifest())
    async with trio.open_nursery() as nursery:
        nursery.start_soon(
            send_to_holders, senders, lambda: manifest, source(), encode, lambda b: b
        )
        await trio.testing.wait_all_tasks_blocked()
        # Everything waits on the slow holder: what it holds up is bounded by its
        # batches in flight and pending, the queues' depths, not by the record.
        per_batch = BATCH // BLOCK
        bound = (IN_FLIGHT + 1) * per_batch + 2 + 1 + 2 + 2 + 1  # sender, then pipeline
        assert 0 < live <= bound * N
        assert produced <= bound + 2 < SEGMENTS
        gate.set()
    assert all(s.failure is None and s.confirmed for s in senders)
    # Batches in flight together may land in either order (trio wakes waiters in any
    # order); sorted, they tile the whole record once, each no larger than a batch.
    batches = sorted((first, count) for _, first, count in slow.received)
    covered = 0
    for first, count in batches:
        assert first == covered and 0 < count <= per_batch
        covered += count
    assert covered == SEGMENTS


def test_the_pipeline_depth_the_bound_assumes() -> None:
    # run_stages' defaults enter the bound above; a change there must revisit it.
    assert run_stages.__kwdefaults__ == {"depth": 2, "workers": 1}
