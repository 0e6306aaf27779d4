"""How a call to a peer can fail, and how a handler refuses a request."""

from __future__ import annotations


class RpcError(Exception):
    """A call to a peer did not produce a response."""


class CallTimeout(RpcError):
    """No response within the call's timeout."""


class PeerClosed(RpcError):
    """The connection closed before the response arrived."""


class PeerUnreachable(RpcError):
    """The peer could not be dialed, or the handshake failed."""


class DialBackoff(PeerUnreachable):
    """A recent dial to this address failed; retry after `retry_in` seconds."""

    def __init__(self, address: str, retry_in: float) -> None:
        self.retry_in = retry_in
        super().__init__(f"{address} failed recently; next attempt in {retry_in:.1f}s")


class RemoteError(RpcError):
    """The peer answered with a typed error."""

    def __init__(self, code: str, detail: str) -> None:
        self.code = code
        self.detail = detail
        super().__init__(f"peer answered {code}: {detail}")


class UnexpectedResponse(RpcError):
    """The peer answered with a message of the wrong type."""


class RequestError(Exception):
    """Raised by a request handler to answer with this error code and detail."""

    def __init__(self, code: str, detail: str) -> None:
        self.code = code
        self.detail = detail
        super().__init__(f"{code}: {detail}")


class ListenError(OSError):
    """The node cannot listen on its address (in use, not this host's, not allowed)."""

    def __str__(self) -> str:
        return str(self.strerror)
