"""A wallet's scan, kept between runs: the cursor and the grants found so far, encrypted.

`wallet ls` would otherwise scan every stealth grant the daemon holds each time.
The cache keeps how far it scanned (the daemon's acceptance-order cursor, and the
entry hash at that position, so a daemon whose order changed under it, after a
feed freeze dropped entries or a replaced data directory, is noticed and scanned
again from 0) and the rows that were hers. It is one file per view key in
`<data dir>/wallet/`, named and sealed (secretbox) under keys derived from the
view secret with domain tags: the file tells someone who can read the directory
neither whose wallet it is nor which grants are hers. A cache that does not open
or decode is ignored (the scan starts again); one that cannot be written costs
the next run a full scan, nothing else.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Callable
from dataclasses import astuple, dataclass, field, fields
from pathlib import Path

import msgpack
import nacl.exceptions
import nacl.secret
import nacl.utils

from node.control.client import call
from protocol.control import commands
from protocol.control.replies import StealthGrantRow, StealthGrantsReply
from protocol.privacy import ViewKey

CACHE_DIR = "wallet"
CACHE_VERSION = 1
_KEY_TAG = b"medvault/wallet-cache/key/v1"
_NAME_TAG = b"medvault/wallet-cache/name/v1"
_ROW_FIELDS = len(fields(StealthGrantRow))
MAX_PAGES = 100_000  # pages one scan asks for at most (a runaway daemon)


@dataclass
class ScanState:
    """How far a view key has scanned one daemon's stealth grants, and what was hers."""

    cursor: int = 0  # rows up to this position were scanned
    last_entry: bytes = b""  # the entry hash of the row at `cursor` (0: none)
    mine: list[StealthGrantRow] = field(default_factory=list)


@dataclass
class ScanStats:
    """What one incremental scan asked the daemon for (tests and `--json` show it)."""

    scanned: int = 0  # new rows the view key looked at
    rescanned: bool = False  # the cache did not fit the daemon: scanned from 0


def _derive(tag: bytes, view: ViewKey) -> bytes:
    return hashlib.blake2b(view.secret, digest_size=32, key=tag).digest()


def cache_path(root: Path, view: ViewKey) -> Path:
    return root / CACHE_DIR / f"{_derive(_NAME_TAG, view)[:16].hex()}.cache"


def load(root: Path, view: ViewKey) -> ScanState:
    """The saved scan of this view key, or a fresh one if none opens."""
    try:
        sealed = cache_path(root, view).read_bytes()
        plain = nacl.secret.SecretBox(_derive(_KEY_TAG, view)).decrypt(sealed)
        version, cursor, last_entry, rows = msgpack.unpackb(plain, raw=False)
        if version != CACHE_VERSION or type(cursor) is not int or cursor < 0:
            return ScanState()
        mine = [StealthGrantRow(*row) for row in rows if len(row) == _ROW_FIELDS]
        return ScanState(cursor, bytes(last_entry), mine)
    except (OSError, ValueError, TypeError, nacl.exceptions.CryptoError):
        return ScanState()


def save(root: Path, view: ViewKey, state: ScanState) -> None:
    """Write the scan atomically (0600); OSError if the directory is not writable."""
    path = cache_path(root, view)
    path.parent.mkdir(mode=0o700, exist_ok=True)
    plain = msgpack.packb(
        [CACHE_VERSION, state.cursor, state.last_entry, [list(astuple(r)) for r in state.mine]],
        use_bin_type=True,
    )
    sealed = nacl.secret.SecretBox(_derive(_KEY_TAG, view)).encrypt(
        plain, nacl.utils.random(nacl.secret.SecretBox.NONCE_SIZE)
    )
    temp = path.with_name(f".{path.name}.{os.getpid()}")
    try:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(sealed)
        os.replace(temp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()


Finder = Callable[[list[StealthGrantRow]], list[StealthGrantRow]]


def _pages(
    root: Path, after: int, record_id: bytes | None = None
) -> tuple[list[StealthGrantRow], int]:
    """Every row after `after` (of one record, if given), and the daemon's total."""
    rows: list[StealthGrantRow] = []
    cursor = after
    for _ in range(MAX_PAGES):
        request = commands.StealthGrants(cursor, record_id=record_id)
        reply = call(root, request, StealthGrantsReply)
        rows.extend(reply.rows)
        if reply.cursor <= cursor or reply.cursor >= reply.total:
            return rows, reply.total
        cursor = reply.cursor
    return rows, cursor


def advance(root: Path, state: ScanState, find: Finder) -> tuple[ScanState, ScanStats]:
    """Scan the rows after the cursor (all of them, if the daemon's order no longer
    matches the cache), add what `find` recognises, and refresh the state (current,
    revoked, expired) of every row that is hers, asking for her records' rows only."""
    stats = ScanStats()
    if state.cursor:
        rows, total = _pages(root, state.cursor - 1)  # from the last row scanned: a check
        if total < state.cursor or not rows or rows[0].entry != state.last_entry:
            state, stats.rescanned = ScanState(), True
            rows, total = _pages(root, 0)
        else:
            rows = rows[1:]
    else:
        rows, total = _pages(root, 0)
    stats.scanned = len(rows)
    known = {row.entry for row in state.mine}
    found = [row for row in find(rows) if row.entry not in known]
    mine = _refreshed(root, state.mine) + found
    if rows:
        state = ScanState(rows[-1].position, rows[-1].entry, mine)
    else:
        state = ScanState(state.cursor, state.last_entry, mine)
    return state, stats


def _refreshed(root: Path, mine: list[StealthGrantRow]) -> list[StealthGrantRow]:
    """Her known rows as the daemon has them now (a row it no longer holds is dropped)."""
    now: dict[bytes, StealthGrantRow] = {}
    for record_id in dict.fromkeys(row.record_id for row in mine):
        rows, _ = _pages(root, 0, record_id)
        now.update((row.entry, row) for row in rows)
    return [now[row.entry] for row in mine if row.entry in now]
