"""Requests to handlers, by message type: a table, not an if-chain."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from node.net.errors import RequestError
from node.net.rpc_port import Caller
from protocol.net.messages import Echo, EchoReply, ErrorCode, Message, Ping, Pong

RequestHandler = Callable[[Any, Caller], Awaitable[Message]]


class Dispatcher:
    def __init__(self) -> None:
        self._routes: dict[type[Message], RequestHandler] = {}

    def route(self, request: type[Message], handler: RequestHandler) -> None:
        if request in self._routes:
            raise ValueError(f"{request.TYPE} already has a handler")
        self._routes[request] = handler

    async def __call__(self, message: Message, peer: Caller) -> Message:
        handler = self._routes.get(type(message))
        if handler is None:
            raise RequestError(ErrorCode.BAD_REQUEST, f"{message.TYPE} is not a request here")
        return await handler(message, peer)


async def _pong(message: Ping, peer: Caller) -> Pong:
    return Pong(message.nonce)


async def _echo(message: Echo, peer: Caller) -> EchoReply:
    return EchoReply(message.data)


def base_dispatcher() -> Dispatcher:
    """Routes every node serves: liveness and the diagnostic echo."""
    dispatcher = Dispatcher()
    dispatcher.route(Ping, _pong)
    dispatcher.route(Echo, _echo)
    return dispatcher
