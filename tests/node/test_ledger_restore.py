"""The ledger survives restores and corruption (the daemon's own code, TCP on 127.0.0.1).

A node whose ledger.sqlite comes back from an older backup first learns its own feed
from its peers, so its next write follows its real head instead of forking it; when
the check is overridden and the feed does fork, `resume_forked_feed` is the way back.
An unusable ledger file is moved aside and refilled from peers, a corrupt row is
dropped and its good copy stored again, and derived tables that disagree with the
entries are rebuilt.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path

import pytest
import trio

from node.assembly import Node
from node.config.datadir import DataDir
from node.daemon import LEDGER_FILE, serve_node
from node.ledger.service import LedgerError
from protocol.ledger.entries import Entry, GrantBody, RecordBody, derive_record_id, sign_entry
from storage.store.ledger_db import LedgerDB
from tests.node.test_ledger_daemon import holds, make_node

LEDGER_FILES = (LEDGER_FILE, LEDGER_FILE + "-wal", LEDGER_FILE + "-shm")


@asynccontextmanager
async def running(data: DataDir, *, trust_local: bool = False) -> AsyncIterator[Node]:
    async with trio.open_nursery() as nursery:
        node: Node = await nursery.start(partial(serve_node, data, trust_local_ledger=trust_local))
        yield node
        nursery.cancel_scope.cancel()


def copy_ledger(source: Path, target: Path) -> None:
    target.mkdir(exist_ok=True)
    for name in LEDGER_FILES:
        if (source / name).exists():
            shutil.copy2(source / name, target / name)
        else:
            (target / name).unlink(missing_ok=True)


async def grant(node: Node, record_id: bytes) -> Entry:
    return await node.ledger.append(GrantBody(record_id, os.urandom(32), os.urandom(80), 0))


@asynccontextmanager
async def network(tmp_path: Path) -> AsyncIterator[tuple[DataDir, Node, Node, bytes]]:
    """Peers b and c running; a's data dir (not running); a record of a's in every ledger."""
    async with running(make_node(tmp_path / "b", [])) as b:
        boot = [f"{b.public_key.hex()}@{b.manager.address}"]
        async with running(make_node(tmp_path / "c", boot)) as c:
            a_dir = make_node(tmp_path / "a", boot)
            async with running(a_dir) as a:
                nonce = os.urandom(16)
                record_id = derive_record_id(a.public_key, nonce)
                body = RecordBody(record_id, nonce, os.urandom(32), 10, 4, 8, a.public_key)
                entry = await a.ledger.append(body)
                await holds(b, entry)
                await holds(c, entry)
            yield a_dir, b, c, record_id


async def test_a_restored_ledger_learns_its_feed_before_writing(tmp_path: Path) -> None:
    with trio.fail_after(120):
        async with network(tmp_path) as (a_dir, b, c, record_id):
            copy_ledger(a_dir.root, tmp_path / "backup")  # seq 1
            async with running(a_dir) as a:
                for _ in range(2):
                    await holds(b, await grant(a, record_id))  # seq 2, 3 reach the peers
            copy_ledger(tmp_path / "backup", a_dir.root)  # the operator restores the backup
            async with running(a_dir) as a:
                written = await grant(a, record_id)  # waits for the peers' view first
                assert written.seq == 4
                await holds(b, written)
                await holds(c, written)
            for peer in (b, c):
                assert peer.ledger.book.flagged == {}


async def test_a_forked_own_feed_has_a_way_back(tmp_path: Path) -> None:
    with trio.fail_after(120):
        async with network(tmp_path) as (_a_dir, b, c, record_id), running(_a_dir) as a:
            await holds(b, await grant(a, record_id))  # seq 2
            # A second seq 2, as a node writes after restoring its seq-1 backup with the
            # peers' check overridden (--trust-local-ledger), reaches the network.
            (first,) = [e for e in a.ledger.book.entries() if e.seq == 1]
            body = GrantBody(record_id, os.urandom(32), os.urandom(80), 0)
            other = sign_entry(a.parts.identity, 2, first.hash, a.clock_ms(), body)
            await b.ledger.ingest([other.raw])
            while len(a.ledger.book.tips(a.public_key)) < 2:  # gossip shows a the fork
                await a.ledger.changed()
            with pytest.raises(LedgerError, match="resume-feed"):
                await grant(a, record_id)
            tip = a.ledger.resume_forked_feed()
            resumed = await grant(a, record_id)
            assert (resumed.seq, resumed.prev) == (3, tip)
            await holds(b, resumed)
            await holds(c, resumed)
            assert a.public_key in b.ledger.book.flagged  # the evidence stays on record
            assert (await grant(a, record_id)).seq == 4  # and writing goes on


async def test_an_unusable_ledger_file_is_moved_aside_and_refilled(tmp_path: Path) -> None:
    with trio.fail_after(120):
        async with network(tmp_path) as (a_dir, b, _c, record_id):
            for name in LEDGER_FILES:
                (a_dir.root / name).unlink(missing_ok=True)
            (a_dir.root / LEDGER_FILE).write_bytes(b"\x00garbage" * 4096)
            async with running(a_dir) as a:
                assert list(a_dir.root.glob(LEDGER_FILE + ".unusable-*"))
                while record_id not in a.ledger.state().records:  # gossip refills it
                    await a.ledger.changed()
                assert (await grant(a, record_id)).seq == 2  # its own feed, learnt again
                await holds(b, a.ledger.book.tips(a.public_key)[0])


async def test_a_corrupt_row_is_dropped_and_its_good_copy_stored_again(
    tmp_path: Path,
) -> None:
    with trio.fail_after(120):
        async with network(tmp_path) as (a_dir, b, _c, record_id):
            async with running(a_dir) as a:
                for _ in range(2):
                    await holds(b, await grant(a, record_id))
            path = a_dir.root / LEDGER_FILE
            with sqlite3.connect(path) as db:  # a bit flips in the middle of the feed
                (victim,) = db.execute("SELECT hash FROM entries WHERE seq = 2").fetchone()
                db.execute("UPDATE entries SET raw = ? WHERE hash = ?", (b"\xff" * 40, victim))
                db.execute("UPDATE grants SET expires_at = 12345")  # and a derived table
            async with running(a_dir) as a:
                while bytes(victim) not in a.ledger.book:  # refetched from a peer
                    await a.ledger.changed()
                assert a.ledger.state().digest() == b.ledger.state().digest()
            with LedgerDB(path) as stored:
                rows = dict(stored.load_rows())
                assert len(rows) == 3 and rows[bytes(victim)] != b"\xff" * 40
                assert all(g.expires_at == 0 for g in stored.derived_grants())
