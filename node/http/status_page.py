"""GET /: the operator's status page (rendered by node.http.status_html).

Who may see it: a token of scope read (Bearer, or as the Basic password a browser
prompts for); with `[http] public_status`, also anyone on this machine without one.

Peers' reachability is asked of each routing-table contact, as `medvault peers`
does, but the page waits at most PEER_WAIT seconds for answers and reuses them for
PEERS_FRESH seconds, with one round of questions at a time however many requests
arrive: reloading the page, or a token holder requesting it a million times, asks
each peer at most once per PEERS_FRESH.
"""

from __future__ import annotations

from collections.abc import Callable

import trio
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from node.assembly import Node
from node.http.auth import is_local, require
from node.http.context import HttpContext, context_of
from node.http.status_html import PeerView, Reach, StatusView, render
from node.http.tokens import Scope
from node.logs import recent_warnings
from protocol.control.commands import Status
from protocol.dht.contact import Contact

PEER_WAIT = 3.0  # seconds the page waits for peers' answers
PEERS_FRESH = 15.0  # seconds one round of answers is shown again
PEERS_ASKED_AT_ONCE = 16

# The page loads nothing and runs nothing: a value that slipped through escaping
# could still not load a script or send data anywhere.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none';"
        " form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
}


class PeerProbe:
    """The routing table's contacts, each asked for its site (a fresh call): the answers
    of one round, shared by every page drawn within `fresh` seconds of it."""

    def __init__(
        self,
        node: Node,
        *,
        wait: float = PEER_WAIT,
        fresh: float = PEERS_FRESH,
        clock: Callable[[], float] = trio.current_time,
    ) -> None:
        self.node = node
        self.wait = wait
        self.fresh = fresh
        self.clock = clock
        self.rounds = 0
        self._peers: list[PeerView] | None = None
        self._asked_at = 0.0
        self._asked_ms = 0
        self._running: trio.Event | None = None

    async def peers(self) -> tuple[list[PeerView], int]:
        """The latest round's answers (asking again when they are stale) and when (wall ms)."""
        while True:
            if self._peers is not None and self.clock() - self._asked_at < self.fresh:
                return self._peers, self._asked_ms
            if self._running is not None:  # another request is asking: share its round
                await self._running.wait()
                continue  # (if that request was cancelled, this one asks)
            done = self._running = trio.Event()
            try:
                asked_ms = self.node.clock_ms()
                peers = await self._ask()
                self._peers, self._asked_at, self._asked_ms = peers, self.clock(), asked_ms
                self.rounds += 1
            finally:
                self._running = None
                done.set()

    async def _ask(self) -> list[PeerView]:
        contacts = sorted(self.node.dht.routing.contacts(), key=lambda c: c.node_id)
        sites: dict[bytes, str | None] = {}
        limiter = trio.CapacityLimiter(PEERS_ASKED_AT_ONCE)
        reach = self.node.records.reach

        async def ask(contact: Contact) -> None:
            async with limiter:
                sites[contact.public_key] = await reach.site_of(contact, fresh=True)

        with trio.move_on_after(self.wait):
            async with trio.open_nursery() as nursery:
                for contact in contacts:
                    nursery.start_soon(ask, contact)
        manager = self.node.manager
        return [
            PeerView(
                public_key=c.public_key,
                node_id=c.node_id,
                address=c.address,
                site=sites.get(c.public_key),
                reach=(
                    Reach.PENDING
                    if c.public_key not in sites
                    else Reach.ANSWERED
                    if sites[c.public_key] is not None
                    else Reach.SILENT
                ),
                connected=manager.peer(c.public_key) is not None,
            )
            for c in contacts
        ]


def probe_of(ctx: HttpContext) -> PeerProbe:
    probe = ctx.extra.get("status_probe")
    if not isinstance(probe, PeerProbe):
        probe = ctx.extra["status_probe"] = PeerProbe(ctx.node)
    return probe


async def status_page(request: Request) -> Response:
    ctx = context_of(request)
    if not (ctx.config.public_status and is_local(request)):
        require(request, Scope.READ)
    node = ctx.node
    status = await ctx.ops.status(Status())
    probe = probe_of(ctx)
    peers, asked_ms = await probe.peers()
    view = StatusView(
        status=status,
        listen=node.parts.config.network.listen,
        http_listen=ctx.config.listen or "",
        peers=peers,
        peers_asked_ms=asked_ms,
        peer_wait_s=probe.wait,
        last_pass=node.upkeep.last_pass,
        repair_interval_s=node.upkeep.interval,
        warnings=recent_warnings().events(),
        now_ms=node.clock_ms(),
    )
    return HTMLResponse(render(view), headers=SECURITY_HEADERS)


def routes() -> list[Route]:
    recent_warnings()  # warnings are kept from the time the HTTP API is built
    return [Route("/", status_page, methods=["GET"])]
