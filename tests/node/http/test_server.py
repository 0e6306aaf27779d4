"""The HTTP server on real sockets: it binds before the node says it listens, stops when
asked, serves HTTPS from the configured files, and says clearly why it cannot start."""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
from pathlib import Path

import httpx
import pytest
import trio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from node.config.fields import ConfigError
from node.config.http import HttpConfig
from node.config.settings import parse_config
from node.http.server import serve_http
from node.http.start_error import HttpStartError


async def hello(request: Request) -> PlainTextResponse:
    return PlainTextResponse("hello")


APP = Starlette(routes=[Route("/", hello)])


async def fetch(url: str, **options: object) -> httpx.Response:
    async with httpx.AsyncClient(**options) as client:  # type: ignore[arg-type]
        return await client.get(url)


async def test_serves_until_stopped() -> None:
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        urls = await nursery.start(serve_http, APP, HttpConfig(listen="127.0.0.1:0"), stop)
        assert len(urls) == 1 and urls[0].startswith("http://127.0.0.1:")
        assert (await fetch(urls[0])).text == "hello"
        stop.set()  # serve_http returns: the nursery closes
    with pytest.raises(httpx.ConnectError):
        await fetch(urls[0])


def self_signed(tmp: Path) -> tuple[Path, Path]:
    cert, key = tmp / "cert.pem", tmp / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
async def test_serves_https_from_the_configured_files(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    config = HttpConfig(listen="127.0.0.1:0", tls_cert=str(cert), tls_key=str(key))
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        urls = await nursery.start(serve_http, APP, config, stop)
        assert urls[0].startswith("https://")
        assert (
            await fetch(urls[0], verify=ssl.create_default_context(cafile=cert))
        ).text == "hello"
        stop.set()


async def test_an_address_in_use_is_a_clear_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(HttpStartError, match=rf"http\.listen 127\.0\.0\.1:{port}: .*in use"):
            stopped = trio.Event()
            stopped.set()  # were the bind to succeed, the server would stop at once
            await serve_http(APP, HttpConfig(listen=f"127.0.0.1:{port}"), stopped)


async def test_missing_tls_files_are_named(tmp_path: Path) -> None:
    config = HttpConfig(
        listen="127.0.0.1:0", tls_cert=str(tmp_path / "no.pem"), tls_key=str(tmp_path / "k.pem")
    )
    with pytest.raises(HttpStartError, match=r"http\.tls_cert: .*no\.pem is not a readable file"):
        await serve_http(APP, config, trio.Event())


def test_config_is_checked() -> None:
    base = {"network": {"listen": "127.0.0.1:7420"}}
    assert parse_config(base).http.listen is None  # off unless set
    with pytest.raises(ConfigError, match=r"http\.listen: expected HOST:PORT"):
        parse_config(base | {"http": {"listen": "8080"}})
    with pytest.raises(ConfigError, match="tls_cert and tls_key are set together"):
        parse_config(base | {"http": {"listen": "127.0.0.1:1", "tls_cert": "/c.pem"}})
    with pytest.raises(ConfigError, match=r"unknown setting http\.tokens"):
        parse_config(base | {"http": {"tokens": []}})
