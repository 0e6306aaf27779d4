"""A Server-Sent Events client over the ASGI app itself (httpx's ASGI transport waits for
the whole body, which a stream never ends): frames arrive as the app sends them, through a
channel without buffer, so the app cannot run ahead of what the test has read."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, MutableMapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import trio
from starlette.applications import Starlette


@dataclass
class Stream:
    status: int
    headers: dict[str, str]
    messages: trio.MemoryReceiveChannel[dict[str, Any]]
    pending: bytes = b""
    body: bytes = b""  # the whole body of an answer that is no stream (an error)
    comments: list[str] = field(default_factory=list)

    async def frame(self) -> dict[str, str]:
        """The next frame: its fields (`id`, `event`, `data`), or {"comment": ...}."""
        while b"\n\n" not in self.pending:
            message = await self.messages.receive()
            self.pending += message.get("body", b"")
        raw, _, self.pending = self.pending.partition(b"\n\n")
        fields: dict[str, str] = {}
        for line in raw.decode().split("\n"):
            name, _, value = line.partition(":")
            fields["comment" if name == "" else name] = value.removeprefix(" ")
        return fields

    async def claim(self) -> dict[str, str]:
        """The next claim frame, after any comments (heartbeats) before it."""
        while True:
            found = await self.frame()
            if "comment" not in found:
                return found
            self.comments.append(found["comment"])

    def error(self) -> Any:
        return json.loads(self.body)


@asynccontextmanager
async def open_stream(
    app: Starlette, url: str, headers: dict[str, str] | None = None
) -> AsyncIterator[Stream]:
    """GET `url`; leaving the block hangs up (and waits until the app let go of it)."""
    parts = urlsplit(url)
    sender, receiver = trio.open_memory_channel[dict[str, Any]](0)
    gone = trio.Event()

    async def receive() -> dict[str, Any]:
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message: MutableMapping[str, Any]) -> None:
        await sender.send(dict(message))

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": parts.path,
        "raw_path": parts.path.encode(),
        "root_path": "",
        "query_string": parts.query.encode(),
        "headers": [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()],
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 80),
        "state": {},
    }

    async def run() -> None:
        async with sender:
            await app(scope, receive, send)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run)
        start = await receiver.receive()
        stream = Stream(
            start["status"],
            {k.decode().lower(): v.decode() for k, v in start["headers"]},
            receiver,
        )
        if not stream.headers.get("content-type", "").startswith("text/event-stream"):
            async for message in receiver:
                stream.body += message.get("body", b"")
        try:
            yield stream
        finally:
            gone.set()
            async for _ in receiver:  # let the app finish what it was sending
                pass
