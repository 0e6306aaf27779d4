"""Cutting an upload's chunks into segments, whatever sizes the client sends."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import pytest
import trio

from node.control.ops import PROGRESS_EVERY, _unless_client_leaves, file_segments, upload_segments
from node.records.errors import RecordError
from protocol.control.commands import Chunk, ControlRequest, Status
from protocol.control.replies import ControlReply, PutReply, UploadProgress


class Script:
    """A client that sends the given requests, then hangs up."""

    def __init__(self, requests: Sequence[ControlRequest]) -> None:
        self.requests = list(requests)

    async def receive(self) -> ControlRequest | None:
        return self.requests.pop(0) if self.requests else None

    async def send(self, reply: ControlReply) -> None:
        raise AssertionError("no replies during an upload")

    def take_fd(self) -> int | None:
        return None


async def cut(requests: Sequence[ControlRequest], size: int) -> list[tuple[bytes, bool]]:
    return [item async for item in upload_segments(Script(requests), size)]


async def test_any_chunking_gives_full_segments_and_a_flagged_last() -> None:
    data = os.urandom(1000)
    chunks = [data[:1], data[1:333], data[333:900], data[900:]]
    segments = await cut([Chunk(c, i == 3) for i, c in enumerate(chunks)], 256)
    assert [len(s) for s, _ in segments] == [256, 256, 256, 232]
    assert [last for _, last in segments] == [False, False, False, True]
    assert b"".join(s for s, _ in segments) == data


async def test_a_record_of_exactly_whole_segments_ends_with_a_full_last_one() -> None:
    data = os.urandom(512)
    whole = [Chunk(data[:256], False), Chunk(data[256:], True)]
    segments = await cut(whole, 256)
    assert segments == [(data[:256], False), (data[256:], True)]
    assert segments[0][0] is whole[0].data  # passed through without a copy
    assert await cut([Chunk(b"", True)], 256) == [(b"", True)]


async def test_a_cut_or_confused_upload_is_refused() -> None:
    with pytest.raises(RecordError, match="ended before its last chunk"):
        await cut([Chunk(b"x" * 10, False)], 256)
    with pytest.raises(RecordError, match="expected an upload chunk"):
        await cut([Chunk(b"x" * 10, False), Status()], 256)


class Listener(Script):
    def __init__(self) -> None:
        super().__init__([])
        self.replies: list[ControlReply] = []

    async def send(self, reply: ControlReply) -> None:
        self.replies.append(reply)


async def test_an_attached_file_is_read_in_segments_with_progress(tmp_path: Path) -> None:
    data = os.urandom(PROGRESS_EVERY + 3 * 65536 + 5)
    path = tmp_path / "attached"
    path.write_bytes(data)
    listener = Listener()
    with open(path, "rb", buffering=0) as source:  # noqa: ASYNC230 - a test fixture file
        segments = [s async for s in file_segments(source, 65536, listener)]
    assert b"".join(s for s, _ in segments) == data
    assert [last for _, last in segments] == [False] * (len(segments) - 1) + [True]
    assert all(len(s) == 65536 for s, _ in segments[:-1]) and len(segments[-1][0]) == 5
    assert listener.replies == [UploadProgress(PROGRESS_EVERY)]


class Watched(Listener):
    """A client that sends nothing more during an attached put; notes when the daemon's
    watch on it is cancelled, among the replies."""

    def __init__(self) -> None:
        super().__init__()
        self.order: list[str] = []

    async def receive(self) -> ControlRequest | None:
        try:
            await trio.sleep_forever()
        finally:
            self.order.append("watch cancelled")

    async def send(self, reply: ControlReply) -> None:
        self.order.append(type(reply).__name__)
        await super().send(reply)


def put_reply() -> PutReply:
    return PutReply(bytes(32), 5, 1, 5, 3, False, (), ())


async def test_an_attached_put_replies_before_its_watch_on_the_client_ends() -> None:
    """The reply goes out as soon as the put returns, not after the watch task's
    cancellation has been scheduled behind whatever else the node is doing."""
    client = Watched()
    reply = put_reply()

    async def put() -> PutReply:
        return reply

    assert await _unless_client_leaves(put, client) is reply
    assert client.order == ["PutReply", "watch cancelled"]


async def test_a_client_gone_before_the_reply_is_a_broken_connection() -> None:
    class Gone(Watched):
        async def send(self, reply: ControlReply) -> None:
            raise trio.BrokenResourceError("the client hung up")

    async def put() -> PutReply:
        return put_reply()

    with pytest.raises(trio.BrokenResourceError):
        await _unless_client_leaves(put, Gone())


async def test_a_client_hanging_up_cancels_the_put() -> None:
    async def put() -> PutReply:
        await trio.sleep_forever()
        raise AssertionError("unreachable")

    with pytest.raises(trio.BrokenResourceError, match="hung up"):
        await _unless_client_leaves(put, Listener())  # receive: None at once
