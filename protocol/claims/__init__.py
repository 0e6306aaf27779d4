"""Claim events: a patient's attestation that discloses, bound to its record (docs/claims.md)."""
