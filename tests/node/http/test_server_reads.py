"""Hypercorn reads HTTP connections in RECEIVE_SIZE bytes (node.http.server), and a body
still arrives whole and in order through the real server on 127.0.0.1."""

from __future__ import annotations

import hashlib
import inspect
import os

import httpx
import trio
from hypercorn.trio import tcp_server
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from node.config.http import HttpConfig
from node.http.server import RECEIVE_SIZE, serve_http


def test_hypercorn_still_reads_connections_through_the_constant_we_set() -> None:
    # node.http.server raises hypercorn's module constant; a hypercorn that stops
    # reading it would silently fall back to 64 KiB reads (a tenth of a put's CPU).
    assert "receive_some(MAX_RECV)" in inspect.getsource(tcp_server.TCPServer._read_data)


async def test_a_large_body_arrives_whole_through_the_server() -> None:
    sizes: list[int] = []

    async def echo_hash(request: Request) -> Response:
        digest = hashlib.sha256()
        async for chunk in request.stream():
            sizes.append(len(chunk))
            digest.update(chunk)
        return JSONResponse({"sha256": digest.hexdigest()})

    app = Starlette(routes=[Route("/", echo_hash, methods=["POST"])])
    body = os.urandom(8 * 1024 * 1024)
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        urls = await nursery.start(serve_http, app, HttpConfig(listen="127.0.0.1:0"), stop)
        assert tcp_server.MAX_RECV == RECEIVE_SIZE
        async with httpx.AsyncClient(base_url=urls[0], timeout=60) as client:
            reply = await client.post("/", content=body)
        stop.set()
    assert reply.json() == {"sha256": hashlib.sha256(body).hexdigest()}
    assert sum(sizes) == len(body) and max(sizes) <= RECEIVE_SIZE
