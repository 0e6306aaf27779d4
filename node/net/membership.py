"""Showing and checking membership certificates right after the secret handshake.

The dialer sends its certificate as the first message on a new channel;
the listener checks it and only then answers with its own, which the dialer
checks: one round trip, and a dialer that is refused learns it at once (the
channel closes instead of answering). A peer whose certificate does not
decode, names another key, comes from no authority of this network, or is
not current is refused before any request of it is handled. The certificates of admitted peers are
kept: a peer's site is what its certificate says. A key is refused whatever it
shows when `network.revoked` lists it or an authority's revocation names it
(`revocations`, which node.net.revocations fills and gossips).
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Collection

from node.net.channel import SecureChannel
from protocol.membership.certificate import (
    MAX_ENCODED,
    Certificate,
    CertificateError,
    check,
    decode,
)
from protocol.membership.revocation import RevocationList

MAX_REMEMBERED = 65_536  # peers' certificates kept (least recently shown dropped first)


class Membership:
    def __init__(
        self,
        *,
        own: Certificate,
        authorities: Collection[bytes],
        clock_ms: Callable[[], int],
        revoked: Collection[bytes] = (),
    ) -> None:
        self.own = own
        self.authorities = frozenset(authorities)
        self.revoked = frozenset(revoked)  # node keys refused whatever they show (config)
        self.revocations = RevocationList(self.authorities)  # ... and by an authority's word
        self.clock_ms = clock_ms
        check(own, node_key=own.node_key, authorities=self.authorities, now_ms=clock_ms())
        self._peers: collections.OrderedDict[bytes, Certificate] = collections.OrderedDict()

    def certificate_of(self, public_key: bytes) -> Certificate | None:
        """The certificate a peer showed (this node's own for its own key)."""
        if public_key == self.own.node_key:
            return self.own
        return self._peers.get(public_key)

    def site_of(self, public_key: bytes) -> str | None:
        """The site of a peer whose certificate is current (None otherwise)."""
        if public_key != self.own.node_key and not self.current(public_key):
            return None
        cert = self.certificate_of(public_key)
        return None if cert is None else cert.site

    def current(self, public_key: bytes) -> bool:
        """Whether the peer is still a member (connections are re-checked)."""
        cert = self._peers.get(public_key)
        return cert is not None and cert.active(self.clock_ms()) and not self.is_revoked(public_key)

    def is_revoked(self, public_key: bytes) -> bool:
        return public_key in self.revoked or public_key in self.revocations

    async def exchange(self, channel: SecureChannel, *, dialer: bool) -> Certificate:
        """Show ours, check theirs; CertificateError (or a channel error) if it fails."""
        if dialer:
            await channel.send(self.own.encode())
        cert = await self._receive(channel, dialer=dialer)
        if not dialer:
            await channel.send(self.own.encode())
        return cert

    async def _receive(self, channel: SecureChannel, *, dialer: bool) -> Certificate:
        raw = await channel.receive(max_size=MAX_ENCODED)
        if raw is None:
            raise CertificateError(
                "the peer refused this node (is this node's certificate current?)"
                if dialer
                else "the peer left before showing its certificate"
            )
        cert = decode(bytes(raw))
        if self.is_revoked(cert.node_key):
            raise CertificateError("this node's membership was revoked")
        check(
            cert,
            node_key=channel.remote_public_key,
            authorities=self.authorities,
            now_ms=self.clock_ms(),
        )
        self._peers[cert.node_key] = cert
        self._peers.move_to_end(cert.node_key)
        while len(self._peers) > MAX_REMEMBERED:
            self._peers.popitem(last=False)
        return cert


def encoded_certificate(membership: Membership | None, public_key: bytes) -> bytes | None:
    """The last certificate `public_key` showed this node (its own for its own key), as a
    claim event carries it; None if never met, forgotten, or on an open network. Only
    certificates that verified when shown are kept, at most MAX_REMEMBERED of them."""
    if membership is None:
        return None
    cert = membership.certificate_of(public_key)
    return None if cert is None else cert.encode()
