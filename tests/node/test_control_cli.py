"""The CLI verbs against whole nodes: a control socket per node, the CLI in a thread.

The nodes run on the memory transport (the daemon's own assembly); each gets
a data directory holding just its identity key and control socket, and the
real click commands talk to it exactly as they talk to a daemon.
"""

from __future__ import annotations

import functools
import json
import os
import socket
import stat
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nacl.signing
import pytest
import trio
import trio.testing
from click.testing import CliRunner, Result

from node.cli.common import printable
from node.cli.main import cli
from node.cli.verbs import expiry_ms
from node.config.datadir import IDENTITY_FILE
from node.config.keyfiles import KeyKind, write_secret
from node.control.address import control_path
from node.control.ops import ControlOps
from node.control.server import ControlServer
from node.records import service as records_service
from node.records.errors import RecordError
from protocol.control.commands import Chunk, Put, Status, encode_request
from protocol.control.replies import ErrorReply, UploadReady, decode_reply
from protocol.net.wire import FrameDecoder
from storage.codec.manifest import RecordMetadata
from tests.node.cluster import Cluster, small_config
from tests.protocol.keys import seed

MARKER = b"PATIENT-MARKER-5c1e"


@dataclass
class Controlled:
    cluster: Cluster
    dirs: list[Path]
    tmp: Path

    async def run(self, index: int, *args: str) -> Result:
        """`medvault ARGS --data-dir <node index>` in a worker thread (it blocks on a socket)."""
        invoke = functools.partial(
            CliRunner().invoke, cli, [*args, "--data-dir", str(self.dirs[index])]
        )
        return await trio.to_thread.run_sync(invoke)

    async def ok(self, index: int, *args: str) -> Any:
        result = await self.run(index, *args, "--json")
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)

    async def knows(self, index: int, record_id: str, key_file: Path) -> None:
        """Return once node `index` lists the record for the key's holder (gossip arrived)."""
        node = self.cluster.nodes[index]
        while True:
            seen = len(node.ledger.book)
            listed = await self.ok(index, "ls", "--as", str(key_file))
            if any(r["record_id"] == record_id for r in listed["records"]):
                return
            if len(node.ledger.book) == seen:  # nothing arrived while the CLI ran: wait
                await node.ledger.changed()  # (no checkpoint since the count: race-free)


@asynccontextmanager
async def controlled(
    tmp_path: Path,
    count: int = 6,
    served: int = 3,
    authority: nacl.signing.SigningKey | None = None,
) -> AsyncIterator[Controlled]:
    """`count` nodes, the first `served` with a control socket; with `authority`, each
    certified by it (membership certificates shown at every connection)."""
    cluster = Cluster(tmp_path)
    async with trio.open_nursery() as nursery:
        if authority is None:
            await cluster.add_many(nursery, count, small_config())
        for _ in range(count if authority is not None else 0):
            await cluster.add(nursery, small_config(), authority=authority)
        dirs = []
        for index, node in enumerate(cluster.nodes[:served]):
            data_dir = tmp_path / f"dir{index}"
            data_dir.mkdir(mode=0o700)
            write_secret(data_dir / IDENTITY_FILE, KeyKind.IDENTITY, seed(f"cluster node {index}"))
            ops = ControlOps(node, started=trio.current_time())
            await nursery.start(ControlServer(ops, control_path(data_dir)).serve)
            dirs.append(data_dir)
        yield Controlled(cluster, dirs, tmp_path)
        nursery.cancel_scope.cancel()


def leftovers(directory: Path, name: str) -> list[Path]:
    """Files named like an output `name` (its temporary .partial included)."""
    return [p for p in directory.iterdir() if name in p.name]


def new_person(tmp: Path, name: str) -> tuple[Path, str]:
    path = tmp / f"{name}.key"
    result = CliRunner().invoke(cli, ["keys", "new", "-o", str(path)])
    assert result.exit_code == 0, result.output
    return path, result.stdout.strip()


async def test_put_get_grant_revoke_through_the_cli(tmp_path: Path) -> None:
    async with controlled(tmp_path) as net:
        data = MARKER + os.urandom(150_000) + MARKER
        source = tmp_path / "scan.pdf"
        source.write_bytes(data)
        patient_key, patient = new_person(tmp_path, "patient")
        stranger_key, _ = new_person(tmp_path, "stranger")

        put = await net.ok(0, "put", str(source), "--patient", patient, "--type", "application/pdf")
        record_id = str(put["record_id"])
        assert put["size"] == len(data) and put["holders"] == 5

        # The node reads with its own grant; the patient reads on another node with theirs.
        out = tmp_path / "out.pdf"
        assert (await net.ok(0, "get", record_id, "-o", str(out)))["size"] == len(data)
        assert out.read_bytes() == data
        await net.knows(1, record_id, patient_key)
        patient_out = tmp_path / "patient.pdf"
        await net.ok(1, "get", record_id, "-o", str(patient_out), "--as", str(patient_key))
        assert patient_out.read_bytes() == data

        # A key without a grant is refused, in one line, and no file is left behind.
        refused = await net.run(
            1, "get", record_id, "-o", str(tmp_path / "x"), "--as", str(stranger_key)
        )
        assert refused.exit_code == 1
        stranger_short = refused.output.split("key ")[1][:16]
        assert refused.output.strip().splitlines() == [
            f"Error: no grant for key {stranger_short} on record {record_id[:16]}"
        ]
        assert leftovers(tmp_path, "x") == []
        nowhere = tmp_path / "no-such-dir" / "out.pdf"
        missing = await net.run(0, "get", record_id, "-o", str(nowhere))
        assert missing.exit_code == 1
        assert missing.output.strip().splitlines() == [
            f"Error: cannot write {nowhere}: its directory does not exist"
        ]

        # Revoked: new reads are refused.
        await net.ok(0, "revoke", record_id, patient)
        node1 = net.cluster.nodes[1]
        while node1.ledger.state().grant_for(bytes.fromhex(record_id), bytes.fromhex(patient), 0):
            await node1.ledger.changed()
        again = await net.run(
            1, "get", record_id, "-o", str(tmp_path / "y"), "--as", str(patient_key)
        )
        assert again.exit_code == 1 and "no grant" in again.output


async def test_attest_ls_ledger_check_and_delete(tmp_path: Path) -> None:
    async with controlled(tmp_path) as net:
        source = tmp_path / "note.txt"
        source.write_bytes(os.urandom(70_000))
        patient_key, patient = new_person(tmp_path, "patient")
        record_id = str((await net.ok(0, "put", str(source), "--patient", patient))["record_id"])

        stranger_key, _ = new_person(tmp_path, "stranger")
        before = len(net.cluster.nodes[0].ledger.book)
        refused = await net.run(0, "attest", record_id, "--as", str(stranger_key))
        assert refused.exit_code == 1
        assert refused.output.strip().splitlines() == [
            "Error: the ledger would reject this attest entry: attester was never granted"
            " the record"
        ]
        assert len(net.cluster.nodes[0].ledger.book) == before  # never written nor gossiped
        assert (
            "attested" in (await net.run(0, "attest", record_id, "--as", str(patient_key))).output
        )
        again = await net.run(0, "attest", record_id, "--as", str(patient_key))
        assert again.exit_code == 0  # a second attestation follows the first in the feed
        listed = await net.ok(0, "ls")
        (row,) = listed["records"]
        assert row["record_id"] == record_id and row["attested_by"] == [patient]
        entries = (await net.ok(0, "ledger", "--record", record_id))["entries"]
        assert [e["type"] for e in entries] == ["record", "grant", "grant", "attest", "attest"]
        assert all("sealed_key" not in e["body"] for e in entries)
        # The node's entries and the patient's (signed in the CLI) publish minutes only.
        assert all(e["timestamp"] % 60_000 == 0 for e in entries)

        (report,) = (await net.ok(0, "check", record_id))["records"]
        assert report["health"]["healthy"] and report["health"]["distinct_hosts"] == 5

        assert (await net.run(0, "delete", record_id)).exit_code == 0
        gone = await net.run(0, "get", record_id, "-o", str(tmp_path / "z"))
        assert gone.exit_code == 1 and "was deleted" in gone.output


async def test_operator_errors_are_one_line(tmp_path: Path) -> None:
    async with controlled(tmp_path, count=5, served=1) as net:
        mode = control_path(net.dirs[0]).stat().st_mode
        assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600
        unknown = await net.run(0, "get", "ab" * 32, "-o", str(tmp_path / "o"))
        assert unknown.exit_code == 1 and unknown.output == f"Error: unknown record {'ab' * 8}\n"
        bad_id = await net.run(0, "get", "xyz", "-o", str(tmp_path / "o"))
        assert bad_id.exit_code == 2 and "a unique prefix of 8 or more" in bad_id.output
        not_mine = await net.run(0, "grant", "cd" * 32, "ef" * 32)
        assert not_mine.exit_code == 1 and "unknown record" in not_mine.output
        check_usage = await net.run(0, "check")
        assert check_usage.exit_code == 2 and "RECORD_ID, --all or --network" in check_usage.output

    # No daemon behind the data directory any more.
    stopped = CliRunner().invoke(cli, ["status", "--data-dir", str(net.dirs[0])])
    assert stopped.exit_code == 1
    assert "no medvault daemon is running" in stopped.output


def error_of(payload: bytes) -> str:
    reply = decode_reply(payload)
    assert isinstance(reply, ErrorReply), reply
    return reply.error


async def test_an_upload_cut_short_records_nothing(tmp_path: Path) -> None:
    async with controlled(tmp_path, count=5, served=1) as net:
        address = str(control_path(net.dirs[0]))

        def start_upload(sock: socket.socket) -> None:
            sock.connect(address)
            sock.sendall(encode_request(Put("", "", None, (), 0, False)))
            ready = decode_reply(FrameDecoder().feed(sock.recv(1024))[0])
            assert isinstance(ready, UploadReady) and ready.chunk_size > 0
            sock.sendall(encode_request(Chunk(MARKER * 10_000, False)))

        def hang_up() -> None:
            with socket.socket(socket.AF_UNIX) as sock:
                start_upload(sock)

        def wrong_frame() -> str:
            with socket.socket(socket.AF_UNIX) as sock:
                start_upload(sock)
                sock.sendall(encode_request(Status()))
                frames = FrameDecoder()
                while not (payloads := frames.feed(sock.recv(65536))):
                    pass
                return error_of(payloads[0])

        def attached_nothing() -> str:
            with socket.socket(socket.AF_UNIX) as sock:
                sock.connect(address)
                sock.sendall(encode_request(Put("", "", None, (), 0, True)))
                frames = FrameDecoder()
                while not (replies := frames.feed(sock.recv(65536))):
                    pass
                return error_of(replies[0])

        await trio.to_thread.run_sync(hang_up)
        assert "expected an upload chunk" in await trio.to_thread.run_sync(wrong_frame)
        assert "none came" in await trio.to_thread.run_sync(attached_nothing)
        source = tmp_path / "whole.bin"
        source.write_bytes(os.urandom(10_000))
        whole = str((await net.ok(0, "put", str(source)))["record_id"])
        await trio.testing.wait_all_tasks_blocked()

        # Only the whole upload was recorded, and no holder claims a shard of anything else.
        node = net.cluster.nodes[0]
        assert list(node.ledger.state().records) == [bytes.fromhex(whole)]
        for holder in net.cluster.nodes:
            for record_id in holder.shards.holdings.records():
                if record_id != bytes.fromhex(whole):
                    assert holder.shards.holdings.indices(record_id)[0] == []


async def test_id_asks_the_running_daemon_for_its_real_address(tmp_path: Path) -> None:
    async with controlled(tmp_path, count=2, served=1) as net:
        node = net.cluster.nodes[0]
        info = await net.ok(0, "id")
        assert info["public_key"] == node.public_key.hex()
        assert info["address"] == node.contact.address
        assert info["peer_address"] == f"{node.public_key.hex()}@{node.contact.address}"
    # Daemon gone: `id` reads the data directory (this one has no config.toml).
    offline = CliRunner().invoke(cli, ["id", "--data-dir", str(net.dirs[0])])
    assert offline.exit_code == 1 and "config.toml does not exist" in offline.output


async def test_status_shows_orphans_and_gc_reclaims_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def writer_died(*args: object) -> int:  # a crash: nobody tells holders to drop
        return 0

    monkeypatch.setattr(records_service, "drop_everywhere", writer_died)
    async with controlled(tmp_path, count=5, served=5) as net:

        async def cut_short() -> AsyncIterator[tuple[bytes, bool]]:
            for _ in range(250):  # past two transfer batches per holder, then cut
                yield os.urandom(64 * 1024), False

        with pytest.raises(RecordError):
            await net.cluster.nodes[0].records.put(cut_short(), metadata=RecordMetadata())
        statuses = [await net.ok(i, "status") for i in range(5)]
        weight = sum(s["orphan_bytes"] for s in statuses)
        assert weight > 0 and sum(s["orphan_pieces"] for s in statuses) > 0
        kept = await net.ok(0, "gc")  # the default keeps anything younger than an hour
        assert kept == {"records": 0, "indices": 0, "bytes_freed": 0}
        freed = [await net.ok(i, "gc", "--older-than", "0s") for i in range(5)]
        assert sum(f["bytes_freed"] for f in freed) == weight
        for index in range(5):
            assert (await net.ok(index, "status"))["orphan_bytes"] == 0
        bad = await net.run(0, "gc", "--older-than", "soon")
        assert bad.exit_code == 2 and "not a duration" in bad.output


async def test_data_dir_and_json_may_come_before_the_verb(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with controlled(tmp_path, count=5, served=2) as net:

        async def invoke(*args: str) -> Result:
            return await trio.to_thread.run_sync(functools.partial(CliRunner().invoke, cli, args))

        before = await invoke("--data-dir", str(net.dirs[0]), "--json", "status")
        after = await invoke("status", "--data-dir", str(net.dirs[0]), "--json")
        assert before.exit_code == after.exit_code == 0
        assert json.loads(before.stdout)["public_key"] == json.loads(after.stdout)["public_key"]
        # After the verb wins over before it; the environment comes last.
        monkeypatch.setenv("MEDVAULT_HOME", str(net.dirs[1]))
        both = await invoke(
            "--data-dir", str(net.dirs[1]), "status", "--data-dir", str(net.dirs[0])
        )
        env = await invoke("--json", "status")
        assert json.loads(env.stdout)["public_key"] == net.cluster.nodes[1].public_key.hex()
        assert "public_key" in both.stdout
        assert net.cluster.nodes[0].public_key.hex() in both.stdout


def test_an_expiry_duration_ends_on_the_minute_never_early() -> None:
    """`--expires 45s` must not publish the writing time to the ms (now + 45 s)."""
    before = int(time.time() * 1000)
    for duration, seconds in (("45s", 45), ("90m", 5400), ("30d", 30 * 86_400)):
        end = expiry_ms(duration, coarse=True)
        assert end % 60_000 == 0 and before + seconds * 1000 <= end
        assert end < int(time.time() * 1000) + seconds * 1000 + 60_000
    date = "2031-05-04T10:11:12.345+00:00"
    assert expiry_ms(date, coarse=True) == 1935655872345  # a date stays as given


async def test_ls_names_records_ids_take_prefixes_and_writes_show_their_entry(
    tmp_path: Path,
) -> None:
    async with controlled(tmp_path) as net:
        source = tmp_path / "scan.pdf"
        source.write_bytes(os.urandom(30_000))
        patient_key, patient = new_person(tmp_path, "patient")
        shown = CliRunner().invoke(cli, ["keys", "show", str(patient_key)])
        assert shown.exit_code == 0 and shown.stdout.strip() == patient
        put = await net.ok(0, "put", str(source), "--type", "application/pdf", "--patient", patient)
        record_id = str(put["record_id"])
        listed = await net.run(0, "ls")
        header, row = listed.stdout.splitlines()
        assert header.split()[:4] == ["RECORD", "NAME", "TYPE", "SIZE"]
        assert row.split()[:4] == [record_id[:16], "scan.pdf", "application/pdf", "30000"]
        await net.knows(1, record_id, patient_key)
        mine = await net.ok(1, "ls", "--as", str(patient_key))  # opened in the CLI
        assert [(r["filename"], r["sealed_key"]) for r in mine["records"]] == [("scan.pdf", None)]
        # The ledger shows the padded size to every member; her key opens the true one.
        assert [r["size"] for r in mine["records"]] == [30000]
        entries = (await net.ok(1, "ledger", "--record", record_id))["entries"]
        assert [e["body"]["size"] for e in entries if e["type"] == "record"] == [30720]
        # Any unique prefix of 8+ hex digits names the record.
        _, other = new_person(tmp_path, "other")
        granted = await net.ok(0, "grant", record_id[:8], other)
        assert granted["type"] == "grant" and granted["body"]["grantee"] == other
        assert granted["body"]["record_id"] == record_id and "sealed_key" not in granted["body"]
        revoked = await net.ok(0, "revoke", record_id[:12], other)
        assert revoked["type"] == "revoke" and revoked["author"] == put["grantees"][0]
        unknown = await net.run(0, "get", "00000000", "-o", str(tmp_path / "o"))
        assert unknown.exit_code == 1 and "unknown record" in unknown.output
        deleted = await net.ok(0, "delete", record_id[:10])
        assert deleted["type"] == "tombstone"


async def test_peers_asks_every_contact_afresh(tmp_path: Path) -> None:
    async with controlled(tmp_path, count=4, served=1) as net:
        before = (await net.ok(0, "peers"))["peers"]
        assert len(before) == 3 and all(p["reachable"] for p in before)
        dead = net.cluster.nodes[3]
        net.cluster.crash(dead)
        after = {p["public_key"]: p["reachable"] for p in (await net.ok(0, "peers"))["peers"]}
        # A node that just died shows unreachable, not what it said minutes ago.
        assert after.pop(dead.public_key.hex()) is False
        assert all(after.values())


async def test_ledger_tail_takes_at_least_one_entry(tmp_path: Path) -> None:
    async with controlled(tmp_path, count=5, served=1) as net:
        source = tmp_path / "note.txt"
        source.write_bytes(os.urandom(5_000))
        _, patient = new_person(tmp_path, "patient")
        await net.ok(0, "put", str(source), "--patient", patient)
        everything = (await net.ok(0, "ledger"))["entries"]
        assert len(everything) == 3  # record, the owner's grant, the patient's
        assert (await net.ok(0, "ledger", "--tail", "1"))["entries"] == everything[-1:]
        zero = await net.run(0, "ledger", "--tail", "0")
        assert zero.exit_code == 2 and "Invalid value for '--tail'" in zero.output
        assert "0 is not in the range x>=1" in zero.output


async def test_ls_escapes_what_a_record_writer_chose(tmp_path: Path) -> None:
    async with controlled(tmp_path, count=5, served=1) as net:
        source = tmp_path / "note.txt"
        source.write_bytes(os.urandom(5_000))
        name = "a\nffffffffffffffff  forged\x1b[2J\u202e\\"
        kind = "text/plain\r\x07"
        put = await net.ok(0, "put", str(source), "--name", name, "--type", kind)
        listed = await net.run(0, "ls")
        assert listed.exit_code == 0, listed.output
        _, row = listed.stdout.splitlines()  # no forged line
        assert all(c.isprintable() for c in row), row
        assert row[18:42] == r"a\nffffffffffffffff  for"  # escaped, then cut to the column
        assert r"text/plain\r\x07" in row
        # JSON stays exact.
        (shown,) = (await net.ok(0, "ls"))["records"]
        assert (shown["record_id"], shown["filename"]) == (put["record_id"], name)
        assert shown["content_type"] == kind


def test_printable_escapes_only_what_a_terminal_would_act_on() -> None:
    assert printable("scan é 😀.pdf") == "scan é 😀.pdf"
    assert printable("a\nb\r\t\x1b[31m\x00") == r"a\nb\r\t\x1b[31m\x00"
    assert printable("\u202eevil\x85\U000e0001") == r"\u202eevil\x85\U000e0001"
    assert printable("C:\\x1b") == r"C:\\x1b"  # a backslash cannot fake an escape


async def test_counts_of_one_are_singular(tmp_path: Path) -> None:
    async with controlled(tmp_path, count=5, served=1) as net:
        source = tmp_path / "one.txt"
        source.write_bytes(b"x")
        record_id = (await net.ok(0, "put", str(source)))["record_id"]
        got = await net.run(0, "get", record_id, "-o", str(tmp_path / "back.txt"))
        assert got.exit_code == 0 and got.stderr.startswith("wrote 1 byte to "), got.output
    (tmp_path / "alone").mkdir()
    async with controlled(tmp_path / "alone", count=1, served=1) as net:
        alone = await net.run(0, "put", str(source))
        assert alone.exit_code == 1
        assert "network too small: 1 node answered, a put needs 4" in alone.output
