"""Feed writers for ledger tests: keep seq and prev for one author."""

from __future__ import annotations

import nacl.signing

from protocol.ledger.entries import (
    AttestBody,
    Body,
    Entry,
    GrantBody,
    RecordBody,
    RevokeBody,
    StealthGrantBody,
    TombstoneBody,
    derive_record_id,
    sign_entry,
)
from protocol.signer import Signer
from tests.protocol.keys import seed


class Feed:
    def __init__(self, label: str, signer: Signer | None = None) -> None:
        """A feed of a labelled key, or of `signer` (e.g. a stealth grant's one-time key)."""
        self.key = nacl.signing.SigningKey(seed(f"feed {label}"))
        self.signer: Signer | nacl.signing.SigningKey = signer or self.key
        self.public = signer.public if signer is not None else bytes(self.key.verify_key)
        self.entries: list[Entry] = []
        self.clock = 1_000_000

    def write(self, body: Body, *, after: Entry | None = None) -> Entry:
        """Append after the feed's head, or after `after` (to make a fork)."""
        previous = after if after is not None else (self.entries[-1] if self.entries else None)
        seq = previous.seq + 1 if previous else 1
        self.clock += 1000
        entry = sign_entry(self.signer, seq, previous.hash if previous else b"", self.clock, body)
        self.entries.append(entry)
        return entry

    def record(self, label: str, manifest: bytes = b"m" * 32) -> bytes:
        nonce = seed(label)[:16]
        record_id = derive_record_id(self.public, nonce)
        self.write(RecordBody(record_id, nonce, manifest, 1234, 4, 8, self.public))
        return record_id

    def grant(self, record_id: bytes, grantee: bytes, expires_at: int = 0, **kw: Entry) -> Entry:
        return self.write(GrantBody(record_id, grantee, b"s" * 80, expires_at), **kw)

    def sgrant(
        self,
        record_id: bytes,
        grant: bytes,
        index: int,
        *,
        patient: bool = False,
        expires_at: int = 0,
        **kw: Entry,
    ) -> Entry:
        return self.write(StealthGrantBody(record_id, grant, index, expires_at, patient), **kw)

    def revoke(self, record_id: bytes, grantee: bytes, **kw: Entry) -> Entry:
        return self.write(RevokeBody(record_id, grantee), **kw)

    def attest(self, record_id: bytes, manifest: bytes = b"m" * 32) -> Entry:
        return self.write(AttestBody(record_id, manifest))

    def tombstone(self, record_id: bytes) -> Entry:
        return self.write(TombstoneBody(record_id))
