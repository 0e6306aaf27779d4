"""Single-node demonstration of the record data path.

Stores a synthetic record in a real on-disk shard store, destroys as many
shards per segment as the code tolerates (deleting some, corrupting one),
reads it back with the owner's key, and shows that another key is refused and
that no plaintext reached the disk. The multi-node network demo replaces this
once the daemon exists.
"""

from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass
from pathlib import Path

import nacl.signing

from protocol.text import counted
from storage.codec.crypt import KEY_SIZE, open_sealed_key, seal_key
from storage.codec.decoder import RecordDecoder
from storage.codec.encoder import RecordEncoder
from storage.codec.hashing import derive_record_id
from storage.codec.manifest import Manifest, RecordMetadata
from storage.errors import DecryptionError
from storage.store.disk import DiskShardStore
from storage.store.shard_store import store_source

MARKER = b"MEDVAULT-DEMO-PLAINTEXT"


@dataclass
class DemoReport:
    record_id: str
    size: int
    segments: int
    k: int
    n: int
    blocks_stored: int
    bytes_stored: int
    deleted: list[int]
    corrupted: list[int]
    quarantined: int
    intact: bool
    other_key_refused: bool
    plaintext_on_disk: bool

    @property
    def ok(self) -> bool:
        return self.intact and self.other_key_refused and not self.plaintext_on_disk

    def lines(self) -> list[str]:
        """What the demo showed, for a person at a terminal."""
        on_disk = "YES" if self.plaintext_on_disk else "no"
        return [
            "medvault codec demo (one node; the multi-node network demo comes with the daemon)",
            f"  record   {self.record_id[:16]}...  {_mib(self.size)} in"
            f" {counted(self.segments, 'segment')}, k={self.k} n={self.n}",
            f"  stored   {counted(self.blocks_stored, 'encrypted shard block')},"
            f" {_mib(self.bytes_stored)};"
            f" plaintext marker on disk: {on_disk}",
            f"  damage   every segment lost shards {self.deleted} (deleted)"
            f" and {self.corrupted} (corrupted)",
            f"  read     {'intact' if self.intact else 'MISMATCH'} from the surviving"
            f" {self.k} of {self.n} shards; {counted(self.quarantined, 'corrupt block')}"
            " quarantined",
            "  access   owner key opens it; another key is"
            f" {'refused' if self.other_key_refused else 'NOT refused'}",
            "OK" if self.ok else "FAILED",
        ]


def _mib(size: int) -> str:
    return f"{size / 2**20:.1f} MiB"


def synthetic_record(size: int) -> bytes:
    """A record that carries a marker string, so a scan can prove it is not on disk."""
    line = MARKER + b" patient=DEMO-0001 finding=synthetic; "
    body = (line * (size // len(line) + 1))[: size // 2]
    return (body + os.urandom(size - len(body)))[:size]


def _disk_contains(root: Path, needle: bytes) -> bool:
    return any(path.is_file() and needle in path.read_bytes() for path in root.rglob("*"))


def _damage(store: DiskShardStore, manifest: Manifest) -> tuple[list[int], list[int]]:
    """Lose n-k shards of every segment: delete all but one of them, corrupt the last."""
    lost = list(range(min(manifest.n - manifest.k, manifest.k)))
    lost += list(range(manifest.k, manifest.k + manifest.n - manifest.k - len(lost)))
    deleted, corrupted = lost[:-1], lost[-1:]
    for segment in range(manifest.segment_count):
        for index in deleted:
            store.delete(manifest.block_hash(segment, index))
        for index in corrupted:
            where = store.locate(manifest.block_hash(segment, index))
            assert where is not None, "the demo stored every block"
            with open(where.path, "r+b") as handle:  # flip one byte in the middle
                handle.seek(where.offset + where.size // 2)
                byte = handle.read(1)[0]
                handle.seek(where.offset + where.size // 2)
                handle.write(bytes([byte ^ 0xFF]))
    return deleted, corrupted


def run_codec_demo(work_dir: Path, size: int, k: int, n: int, segment_size: int) -> DemoReport:
    owner = nacl.signing.SigningKey.generate()
    stranger = nacl.signing.SigningKey.generate()
    record_key = os.urandom(KEY_SIZE)
    record_id = derive_record_id(bytes(owner.verify_key), os.urandom(16))
    plaintext = synthetic_record(size)

    store = DiskShardStore(work_dir / "node")
    encoder = RecordEncoder(
        record_id=record_id,
        record_key=record_key,
        k=k,
        n=n,
        segment_size=segment_size,
        metadata=RecordMetadata("text/plain", "demo-record.txt", "DEMO-0001"),
    )
    for segment in encoder.encode(io.BytesIO(plaintext)):
        for digest, block in zip(segment.hashes, segment.blocks, strict=True):
            store.put(digest, block)
    manifest = encoder.manifest()
    (work_dir / "node" / "manifest.bin").write_bytes(manifest.encode())
    sealed = seal_key(record_key, bytes(owner.verify_key), os.urandom(32))
    blocks_stored, bytes_stored = len(store.digests()), store.used_bytes
    on_disk = _disk_contains(work_dir, MARKER)

    deleted, corrupted = _damage(store, manifest)

    loaded = Manifest.decode((work_dir / "node" / "manifest.bin").read_bytes())
    decoder = RecordDecoder(loaded, open_sealed_key(sealed, owner))
    out = io.BytesIO()
    decoder.decode_to(out, store_source(store, loaded))
    intact = hashlib.sha256(out.getvalue()).digest() == hashlib.sha256(plaintext).digest()
    try:
        open_sealed_key(sealed, stranger)
        refused = False
    except DecryptionError:
        refused = True
    return DemoReport(
        record_id=record_id.hex(),
        size=size,
        segments=manifest.segment_count,
        k=k,
        n=n,
        blocks_stored=blocks_stored,
        bytes_stored=bytes_stored,
        deleted=deleted,
        corrupted=corrupted,
        quarantined=len(store.quarantined()),
        intact=intact,
        other_key_refused=refused,
        plaintext_on_disk=on_disk,
    )
