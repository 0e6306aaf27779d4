"""The ledger carries no plaintext health information: a marker put into a record's
content and metadata appears in no entry and nowhere in the ledger files."""

from __future__ import annotations

import io
import os
from pathlib import Path

import nacl.signing

from node.ledger.service import LedgerService
from protocol.ledger.entries import GrantBody, RecordBody
from storage.codec.crypt import seal_key
from storage.codec.encoder import RecordEncoder
from storage.codec.hashing import derive_record_id
from storage.codec.manifest import RecordMetadata
from storage.store.ledger_db import LedgerDB

MARKER = b"PATIENT-MARKER-7f3a"


async def test_no_plaintext_reaches_the_ledger(tmp_path: Path) -> None:
    node = nacl.signing.SigningKey.generate()
    patient = nacl.signing.SigningKey.generate()
    owner = bytes(node.verify_key)
    nonce = os.urandom(16)
    record_id = derive_record_id(owner, nonce)
    record_key = os.urandom(32)
    content = MARKER + b" diagnosis: " + MARKER * 100
    metadata = RecordMetadata(
        "text/plain", MARKER.decode() + ".txt", MARKER.decode(), {"ward": MARKER.decode()}
    )
    encoder = RecordEncoder(
        record_id=record_id, record_key=record_key, k=2, n=3, segment_size=1024, metadata=metadata
    )
    for _ in encoder.encode(io.BytesIO(content)):
        pass
    manifest = encoder.manifest()

    path = tmp_path / "ledger.sqlite"
    with LedgerDB(path) as db:
        ledger = LedgerService(identity=node, clock_ms=lambda: 1, db=db)
        entries = [
            await ledger.append(
                RecordBody(record_id, nonce, manifest.digest(), manifest.size, 2, 3, owner)
            ),
            await ledger.append(
                GrantBody(
                    record_id,
                    bytes(patient.verify_key),
                    seal_key(record_key, bytes(patient.verify_key), os.urandom(32)),
                    0,
                )
            ),
        ]
    for entry in entries:
        assert MARKER not in entry.raw
        assert record_key not in entry.raw  # only ever sealed
    scan(tmp_path, [MARKER, record_key])


def scan(folder: Path, needles: list[bytes]) -> None:
    """No file in `folder` (database, WAL, journal) contains any needle."""
    files = list(folder.iterdir())
    assert files
    for file in files:
        data = file.read_bytes()
        assert not any(needle in data for needle in needles), file.name
