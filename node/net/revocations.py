"""Authority-signed node revocations: kept on disk, applied at once, gossiped to every peer.

A new valid revocation (published by an operator over the control socket,
or pushed by a peer) is written to the data directory first, then its
node is dropped: its connection is closed, it is refused at connect (the
membership exchange and every dial ask `Membership.is_revoked`), and it
leaves the DHT's routing table and provider records (`on_revoked`); then
it is pushed to every connected peer. Peers that connect later get every
revocation this node knows (`greet`). A revocation that changes nothing is
not pushed on, so gossip ends.

What a member can make a node do by pushing revocations: each message
holds at most MAX_SHARED; those of keys already revoked cost a dictionary
lookup, those not claiming a configured authority no cryptography at all,
and the first bad signature ends the message (an honest node forwards only
revocations it verified). Refusals are logged once per peer and reason.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import trio

from node.logs import RateLimitedLog, event, get_logger, short_key
from node.net.connections import ConnectionManager
from node.net.dispatch import Dispatcher
from node.net.errors import RequestError, RpcError
from node.net.membership import Membership
from node.net.peer import PeerConnection
from node.net.rpc_port import Caller
from node.offload import in_worker
from protocol.membership.messages import MAX_SHARED, RevocationsTaken, ShareRevocations
from protocol.membership.revocation import (
    ForgedRevocation,
    Revocation,
    RevocationError,
    from_text,
)
from protocol.net.messages import ErrorCode

log = get_logger("revocations")
REVOCATIONS_FILE = "revocations"  # in the data directory: one revocation's text per line
PUSH_TIMEOUT = 10.0  # seconds a peer has to take a push


class RevocationFileError(Exception):
    """The revocations file cannot be read; the message says where and why."""


@dataclass(frozen=True)
class Loaded:
    applied: int
    aside: list[str]  # lines kept in the file but not applied (`problems` says why)
    problems: list[str]


def load_revocations(path: Path, membership: Membership) -> Loaded:
    """Apply the revocations kept in `path` to `membership`.

    A line that does not hold (an authority no longer configured, a damaged
    line) is not applied but stays in the file: nothing an admin signed is lost.
    """
    try:
        lines = path.read_text(encoding="ascii").splitlines()
    except FileNotFoundError:
        return Loaded(0, [], [])
    except (OSError, UnicodeDecodeError) as exc:
        raise RevocationFileError(f"{path}: cannot read it ({exc})") from None
    applied = 0
    aside: list[str] = []
    problems: list[str] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            applied += membership.revocations.learn(from_text(line))
        except RevocationError as exc:
            aside.append(line.strip())
            problems.append(f"{path}:{number}: {exc}")
    return Loaded(applied, aside, problems)


def write_atomically(path: Path, text: str) -> None:
    """Replace `path` with `text`: a crash leaves the old file or the new, never half."""
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


@dataclass(frozen=True)
class Published:
    revocation: Revocation
    new: bool  # False: the key was revoked already (nothing changed, nothing pushed)
    pushed: int  # peers it was pushed to


class RevocationService:
    def __init__(
        self,
        *,
        membership: Membership,
        manager: ConnectionManager,
        path: Path | None = None,
        aside: list[str] | None = None,
        on_revoked: Callable[[bytes], None] = lambda key: None,
    ) -> None:
        self.membership = membership
        self.manager = manager
        self.path = path  # None: kept in memory only (tests)
        self.aside = list(aside or [])
        self.on_revoked = on_revoked
        self.refusals = 0  # revocations refused from peers (for tests and status)
        self._refused = RateLimitedLog(log, "revocation refused", period=60.0)
        self._saving = trio.Lock()
        self._nursery: trio.Nursery | None = None
        self._changed = trio.Event()

    @property
    def known(self) -> list[Revocation]:
        return self.membership.revocations.all()

    def install(self, dispatcher: Dispatcher) -> None:
        dispatcher.route(ShareRevocations, self._on_share)

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            await trio.sleep_forever()

    async def changed(self) -> None:
        """Return at the next revocation this node learns."""
        await self._changed.wait()

    async def publish(self, revocation: Revocation) -> Published:
        """An operator's revocation: RevocationError if it does not hold here."""
        learned = self.membership.revocations.learn(revocation)
        pushed = await self._apply([revocation], source=None) if learned else 0
        return Published(revocation, learned, pushed)

    async def greet(self, connection: PeerConnection) -> None:
        """A peer connected: hand it every revocation this node knows."""
        raws = [r.encode() for r in self.known]
        for start in range(0, len(raws), MAX_SHARED):
            if not await self._push(connection, tuple(raws[start : start + MAX_SHARED])):
                return

    async def _on_share(self, message: ShareRevocations, caller: Caller) -> RevocationsTaken:
        peer = caller.remote_public_key
        new: list[Revocation] = []
        forged: ForgedRevocation | None = None
        for raw in message.revocations:
            try:
                revocation = self.membership.revocations.learn_raw(raw)
            except ForgedRevocation as exc:
                forged = exc  # an honest node forwards only what it verified: stop here
                break
            except RevocationError as exc:
                self._refuse(peer, str(exc))
                continue
            if revocation is not None:
                new.append(revocation)
        if new:
            await self._apply(new, source=peer)
        if forged is not None:
            self._refuse(peer, str(forged))
            raise RequestError(ErrorCode.BAD_REQUEST, f"revocation refused: {forged}")
        return RevocationsTaken(len(new))

    def _refuse(self, peer: bytes, why: str) -> None:
        self.refusals += 1
        self._refused.note(why, who=short_key(peer))

    async def _apply(self, new: list[Revocation], *, source: bytes | None) -> int:
        """Keep, enforce, then spread revocations this node has just learned; returns
        the peers they are pushed to. Closing connections and pushing run as tasks of
        this service: a handler must not wait on the connection it answers on."""
        await self._save()
        for revocation in new:
            event(
                log,
                logging.WARNING,
                "node revoked",
                node=short_key(revocation.node_key),
                authority=short_key(revocation.authority),
                heard_from=short_key(source) if source else "operator",
            )
            self.on_revoked(revocation.node_key)
        self._changed.set()
        self._changed = trio.Event()
        peers = [
            p
            for p in self.manager.peers
            if p.remote_public_key != source and not self.membership.is_revoked(p.remote_public_key)
        ]
        if self._nursery is None:  # not serving: enforce now, push nothing
            for revocation in new:
                await self._drop(revocation.node_key)
            return 0
        for revocation in new:
            self._nursery.start_soon(self._drop, revocation.node_key)
        batch = tuple(r.encode() for r in new)
        for start in range(0, len(batch), MAX_SHARED):
            for connection in peers:
                self._nursery.start_soon(self._push, connection, batch[start : start + MAX_SHARED])
        return len(peers)

    async def _drop(self, key: bytes) -> None:
        """Close its connection, then forget it again: what it said until the close
        (a DHT request observes its sender) must not bring it back."""
        await self.manager.drop(key, "membership revoked")
        self.on_revoked(key)

    async def _push(self, connection: PeerConnection, batch: tuple[bytes, ...]) -> bool:
        try:
            await connection.request(ShareRevocations(batch), RevocationsTaken, PUSH_TIMEOUT)
        except RpcError as exc:
            event(
                log,
                logging.INFO,
                "revocations not taken",
                peer=short_key(connection.remote_public_key),
                reason=str(exc),
            )
            return False
        return True

    async def _save(self) -> None:
        if self.path is None:
            return
        async with self._saving:  # one writer at a time; each writes everything known
            lines = [r.text() for r in self.known]
            text = "".join(line + "\n" for line in [*lines, *self.aside])
            try:
                await in_worker(write_atomically, self.path, text)
            except OSError as exc:  # enforced all the same; the next change writes again
                event(log, logging.ERROR, "could not save revocations", reason=str(exc))
