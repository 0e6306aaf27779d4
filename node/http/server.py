"""Serving the API with Hypercorn's trio worker, inside the daemon's nursery.

`nursery.start(serve_http, ...)` returns once the socket is bound (an
address in use or an unreadable TLS file fails the start with a clear
HttpStartError); setting `stop` closes the listener and gives requests in
flight `grace` seconds to finish while the node's network is still up.
"""

from __future__ import annotations

import logging
import ssl
from pathlib import Path

import trio
from hypercorn.config import Config
from hypercorn.trio import serve, tcp_server
from starlette.applications import Starlette

from node.config.http import HttpConfig
from node.http.start_error import HttpStartError
from node.logs import event, get_logger

log = get_logger("http")
READ_TIMEOUT = 120  # seconds a request may send nothing before it is dropped

# Hypercorn reads each connection 64 KiB at a time (its trio worker's MAX_RECV, a
# module constant, not a Config setting), and every read then passes through h11,
# hypercorn's stream, a channel and Starlette: on a 64 MiB upload that was about a
# tenth of the writer's CPU beside the control socket's put. Reads of 256 KiB cut
# that work fourfold; a connection still holds at most hypercorn's app queue (10
# reads) of a body the route has not taken yet. (docs/http-performance.md)
RECEIVE_SIZE = 256 * 1024


def hypercorn_config(config: HttpConfig, grace: float) -> Config:
    assert config.listen is not None
    settings = Config()
    settings.bind = [config.listen]
    settings.accesslog = None  # record accesses are logged by the routes, naming the token
    server_log = get_logger("http.server")
    server_log.setLevel(logging.WARNING)  # "listening" is logged once, by serve_http
    settings.errorlog = server_log
    settings.include_server_header = False
    settings.graceful_timeout = grace
    settings.read_timeout = READ_TIMEOUT  # a client that stalls mid-request loses its slot
    if config.tls_cert is not None and config.tls_key is not None:
        for name, path in (("tls_cert", config.tls_cert), ("tls_key", config.tls_key)):
            if not Path(path).is_file():
                raise HttpStartError(f"http.{name}: {path} is not a readable file")
        settings.certfile, settings.keyfile = config.tls_cert, config.tls_key
        try:
            settings.create_ssl_context()
        except (OSError, ssl.SSLError) as exc:
            raise HttpStartError(f"http.tls_cert/tls_key cannot be used: {exc}") from None
    return settings


async def serve_http(
    app: Starlette,
    config: HttpConfig,
    stop: trio.Event,
    *,
    grace: float = 10.0,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve `app` on config.listen until `stop` is set; started() with the bound URLs."""
    settings = hypercorn_config(config, grace)
    tcp_server.MAX_RECV = RECEIVE_SIZE
    started = False
    try:
        async with trio.open_nursery() as nursery:
            urls: list[str] = await nursery.start(_serve, app, settings, stop)
            started = True
            event(log, logging.INFO, "http listening", urls=" ".join(urls))
            task_status.started(urls)
    except (OSError, BaseExceptionGroup) as exc:
        bind = None if started else _first_os_error(exc)
        if bind is None:
            raise
        raise HttpStartError(f"http.listen {config.listen}: {bind.strerror or bind}") from None


def _first_os_error(exc: BaseException) -> OSError | None:
    """The OSError in `exc` or its nested groups (hypercorn raises a bind's inside them)."""
    if isinstance(exc, OSError):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = _first_os_error(inner)
            if found is not None:
                return found
    return None


async def _serve(
    app: Starlette,
    settings: Config,
    stop: trio.Event,
    *,
    task_status: trio.TaskStatus[list[str]],
) -> None:
    await serve(app, settings, shutdown_trigger=stop.wait, task_status=task_status)  # type: ignore[arg-type]
