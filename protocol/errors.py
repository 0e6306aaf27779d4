"""Who is at fault decides what happens: a remote error closes that connection only.

LocalProtocolError: this side tried something the protocol forbids (a bug or
misuse here). RemoteProtocolError: the peer sent something invalid; the shell
logs the reason and drops the connection, nothing else.
"""

from __future__ import annotations


class ProtocolError(Exception):
    """Base of every error the protocol package raises on purpose."""


class LocalProtocolError(ProtocolError):
    """We attempted something the protocol does not allow."""


class RemoteProtocolError(ProtocolError):
    """The peer violated the protocol; `reason` is safe to log."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class HandshakeFailed(RemoteProtocolError):
    """The secret handshake did not complete: wrong network, wrong key, or garbage."""
