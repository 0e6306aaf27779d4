"""Holdings: which blocks belong to which record and index, and what can be collected."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from storage.store.holdings import ROW_WEIGHT, Holdings

R1, R2 = b"\x01" * 32, b"\x02" * 32
A, B, C = b"a" * 32, b"b" * 32, b"c" * 32


def test_indices_complete_only_when_marked(tmp_path: Path) -> None:
    holdings = Holdings(tmp_path / "h.sqlite")
    holdings.begin(R1, None, 0, now_ms=10)
    holdings.begin(R1, b"manifest", 1, now_ms=11)
    holdings.note_blocks(R1, 0, [(A, 10), (B, 20)], now_ms=12)
    holdings.complete(R1, 1)
    assert holdings.indices(R1) == ([1], [0])
    assert holdings.manifest(R1) == b"manifest"  # arrived with a later batch
    holdings.incomplete(R1, 1)
    assert holdings.indices(R1) == ([], [0, 1])


def test_what_is_old_enough_to_collect(tmp_path: Path) -> None:
    holdings = Holdings(tmp_path / "h.sqlite")
    holdings.begin(R1, None, 0, now_ms=100)
    holdings.begin(R2, None, 3, now_ms=500)
    holdings.begin(R2, None, 4, now_ms=500)
    holdings.complete(R2, 4)
    assert holdings.seen_before(101) == [R1]
    assert holdings.seen_before(501) == [R1, R2]
    assert holdings.partial_before(600) == [(R1, 0), (R2, 3)]
    holdings.note_blocks(R1, 0, [(A, 10)], now_ms=700)  # a block arrived: the transfer is alive
    assert holdings.partial_before(600) == [(R2, 3)]


def test_an_index_that_was_complete_is_not_an_abandoned_transfer(tmp_path: Path) -> None:
    # The scrub demotes a damaged index to incomplete: its good blocks wait for repair,
    # they are not leftovers of an upload that was given up.
    holdings = Holdings(tmp_path / "h.sqlite")
    holdings.begin(R1, None, 0, now_ms=100)
    holdings.begin(R1, None, 1, now_ms=100)
    holdings.complete(R1, 0)
    holdings.incomplete(R1, 0)
    assert holdings.indices(R1) == ([], [0, 1])
    assert holdings.partial_before(600) == [(R1, 1)]
    reopened = Holdings(tmp_path / "h.sqlite")  # the mark is on disk
    assert reopened.partial_before(600) == [(R1, 1)]


def test_removal_frees_only_blocks_no_one_else_holds(tmp_path: Path) -> None:
    holdings = Holdings(tmp_path / "h.sqlite")
    for record, index, digests in ((R1, 0, [A, B]), (R1, 1, [C]), (R2, 0, [B])):
        holdings.begin(record, None, index, now_ms=1)
        holdings.note_blocks(record, index, [(d, 1) for d in digests], now_ms=1)
    assert holdings.remove_index(R1, 1) == [C]
    assert holdings.indices(R1) == ([], [0])
    assert sorted(holdings.remove(R1)) == [A]  # B is still R2's
    assert holdings.records() == [R2]
    assert holdings.remove(R2) == [B]
    assert holdings.records() == []


def test_a_database_from_before_the_timestamps_is_upgraded(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    old = sqlite3.connect(path)
    old.executescript(
        """
        CREATE TABLE records (record_id BLOB PRIMARY KEY, manifest BLOB);
        CREATE TABLE shards (
            record_id BLOB NOT NULL, shard_index INTEGER NOT NULL, complete INTEGER NOT NULL,
            PRIMARY KEY (record_id, shard_index)
        );
        """
    )
    old.execute("INSERT INTO records VALUES (?, ?)", (R1, b"m"))
    old.execute("INSERT INTO shards VALUES (?, 2, 1)", (R1,))
    old.commit()
    old.close()
    holdings = Holdings(path)
    assert holdings.indices(R1) == ([2], [])
    assert holdings.seen_before(1) == [R1]  # unknown age counts as old
    holdings.begin(R2, None, 0, now_ms=5)
    assert holdings.records() == [R1, R2]


def test_uploader_and_what_orphans_weigh(tmp_path: Path) -> None:
    holdings = Holdings(tmp_path / "h.sqlite")
    holdings.begin(R1, None, 0, now_ms=1, uploader=A)
    holdings.begin(R1, None, 1, now_ms=2, uploader=B)  # a later sender is not the uploader
    holdings.note_blocks(R1, 0, [(A, 100), (B, 50)], now_ms=3)
    holdings.note_blocks(R1, 1, [(C, 7)], now_ms=3)
    holdings.complete(R1, 0)
    assert holdings.uploader(R1) == A and holdings.uploader(R2) is None
    assert holdings.weights() == ({R1: 157}, {R1: 7})


def test_held_blocks_are_walked_in_order_from_a_cursor(tmp_path: Path) -> None:
    holdings = Holdings(tmp_path / "h.sqlite")
    holdings.begin(R1, None, 0, now_ms=1)
    holdings.note_blocks(R1, 0, [(A, 1), (B, 2)], now_ms=1)
    holdings.begin(R1, None, 1, now_ms=1)  # never completed: not walked
    holdings.note_blocks(R1, 1, [(C, 3)], now_ms=1)
    holdings.complete(R1, 0)
    first = holdings.held_blocks_after(0, 1)
    assert [(r, i, d) for _, r, i, d, _ in first] == [(R1, 0, A)]
    rest = holdings.held_blocks_after(first[0][0], 10)
    assert [(d, size) for _, _, _, d, size in rest] == [(B, 2)]
    assert holdings.held_blocks_after(rest[0][0], 10) == []


def test_a_record_is_idle_from_its_last_block_not_its_first(tmp_path: Path) -> None:
    # A long upload keeps sending: it is never idle, however long ago it began.
    holdings = Holdings(tmp_path / "h.sqlite")
    holdings.begin(R1, None, 0, now_ms=100)
    holdings.begin(R1, None, 1, now_ms=100)
    holdings.begin(R2, None, 0, now_ms=100)
    holdings.note_blocks(R1, 1, [(A, 10)], now_ms=5_000)  # one index still receiving
    assert holdings.idle_before(1_000) == [R2]
    assert holdings.idle_before(5_001) == [R1, R2]
    assert Holdings(tmp_path / "h.sqlite").idle_before(1_000) == [R2]  # kept on disk


def test_weights_added_are_what_pending_weights_finds_after_a_restart(tmp_path: Path) -> None:
    holdings = Holdings(tmp_path / "h.sqlite")
    added = holdings.begin(R1, None, 0, now_ms=1, uploader=A)
    assert added == ROW_WEIGHT
    added += holdings.note_blocks(R1, 0, [(A, 100), (B, 50)], now_ms=1)
    assert holdings.note_blocks(R1, 0, [(A, 100)], now_ms=2) == 0  # a resent block: no more
    assert holdings.begin(R1, None, 0, now_ms=2) == 0  # an index already begun
    added += holdings.begin(R1, b"m" * 40, 1, now_ms=3, uploader=B)  # manifest + a new index
    assert holdings.begin(R1, b"m" * 40, 1, now_ms=3) == 0  # the manifest is kept once
    added += holdings.note_blocks(R1, 1, [(C, 7)], now_ms=3)
    assert added == 2 * ROW_WEIGHT + 150 + 40 + 7
    holdings.begin(R2, None, 0, now_ms=4)
    holdings.close()
    reopened = Holdings(tmp_path / "h.sqlite")
    assert reopened.pending_weights() == [(R1, A, added), (R2, None, ROW_WEIGHT)]
    reopened.remove(R1)
    assert reopened.pending_weights() == [(R2, None, ROW_WEIGHT)]


def test_arrived_begins_and_notes_a_batch_in_one_commit(tmp_path: Path) -> None:
    holdings = Holdings(tmp_path / "h.sqlite")
    before = holdings.commits
    added = holdings.arrived(R1, b"manifest", 0, 10, uploader=b"w" * 32, blocks=[(A, 10)])
    assert holdings.commits == before + 1
    assert added == len(b"manifest") + ROW_WEIGHT + 10
    assert holdings.indices(R1) == ([], [0])
    assert holdings.noted(R1, 0) == [A]
    assert holdings.uploader(R1) == b"w" * 32


def test_finish_completes_only_when_every_named_block_is_present(tmp_path: Path) -> None:
    holdings = Holdings(tmp_path / "h.sqlite")
    holdings.arrived(R1, None, 0, 10, uploader=None, blocks=[(A, 10), (C, 5)])  # C: a stray
    before = holdings.commits
    named = [(A, 10), (B, 20)]
    assert holdings.finish(R1, 0, named, 11, present={A}.__contains__) == (False, 20, [])
    assert holdings.indices(R1) == ([], [0])  # B is missing: not complete, C still noted
    assert holdings.noted(R1, 0) == [A, B, C]
    complete, added, unreferenced = holdings.finish(R1, 0, named, 12, {A, B}.__contains__)
    assert (complete, added, unreferenced) == (True, 0, [C])  # C: the caller deletes it
    assert holdings.indices(R1) == ([0], [])
    assert holdings.noted(R1, 0) == [A, B]
    assert holdings.commits == before + 2  # one commit per finish, not one per step


def test_finish_keeps_a_stray_block_another_record_still_uses(tmp_path: Path) -> None:
    holdings = Holdings(tmp_path / "h.sqlite")
    holdings.arrived(R1, None, 0, 10, uploader=None, blocks=[(A, 10), (C, 5)])
    holdings.arrived(R2, None, 0, 10, uploader=None, blocks=[(C, 5)])
    assert holdings.finish(R1, 0, [(A, 10)], 11, {A, C}.__contains__) == (True, 0, [])
    assert holdings.noted(R2, 0) == [C]


def test_a_whole_index_in_one_batch_arrives_and_completes_in_one_commit(tmp_path: Path) -> None:
    holdings = Holdings(tmp_path / "h.sqlite")
    before = holdings.commits
    blocks = [(A, 10), (B, 20)]
    missing = holdings.arrived_whole(
        R1, b"manifest", 0, 10, uploader=b"w" * 32, blocks=blocks, present={A}.__contains__
    )
    assert missing == (False, len(b"manifest") + ROW_WEIGHT + 30, [])
    assert holdings.indices(R1) == ([], [0])  # a block not on disk: not complete
    complete, added, unreferenced = holdings.arrived_whole(
        R2, b"manifest", 1, 10, uploader=b"w" * 32, blocks=blocks, present={A, B}.__contains__
    )
    assert (complete, unreferenced) == (True, []) and added >= ROW_WEIGHT
    assert holdings.indices(R2) == ([1], [])
    assert holdings.noted(R2, 1) == [A, B] and holdings.uploader(R2) == b"w" * 32
    assert holdings.commits == before + 2  # one per index
