"""A grant as the ledger state holds it (shared by the fold and the stealth rules)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class GrantInfo:
    """A current grant of a record to `grantee`.

    Old format: `sealed_key` is the record key sealed to the grantee's long-term
    key. Stealth (`index` is set): `grantee` is the grant's one-time key P and
    `sealed_key` the whole 114-byte StealthGrant, opened with the context
    record_id || index; `patient`: P co-owns the record's sharing.
    """

    record_id: bytes
    grantee: bytes
    sealed_key: bytes
    expires_at: int
    entry: bytes
    index: int | None = None
    patient: bool = False

    @property
    def stealth(self) -> bool:
        return self.index is not None

    def active(self, now_ms: int) -> bool:
        return self.expires_at == 0 or now_ms < self.expires_at
