"""Read permits (access statements): a reader's signed "serve this record's blocks
to this node, now, for this purpose, as part of this read".

A holder serves a record's blocks only to a request carrying a permit that
verifies, names the calling node (so no other node can replay it), is fresh
by the holder's clock, and whose reader the holder's own ledger lets read the
record (its owner, or a current grant). One permit covers a whole read of a
record, not one block.

Encoding (version 2, an access statement): the canonical msgpack array
[version, record_id, reader, node, issued_at_ms, purpose, read_id, signature];
the signature is the reader's, over a domain tag and the first seven fields.
`purpose` is an HL7 PurposeOfUse code (protocol.records.purpose); `read_id`
(16 random bytes the reader picks) groups the statements of one read: a
series signed for one long read shares it, so the audit shows one read, not
one per permit or block. Version 1 (no purpose, no read id) is refused with
`OldPermit`, so a holder can say exactly why. The signer is a parameter (a person's key in the
CLI, the node's own identity when it reads for itself, or a stealth grant's
one-time key P: any `protocol.signer.Signer`), so the reader is whichever key
the ledger granted, and holders need no other change.

Fresh: issued at most LIFETIME_MS before the holder's clock and at most
MAX_SKEW_MS after it. Freshness only limits how long the named node may go on
using a permit; the grant is checked against the holder's ledger at every
request, so a revocation binds whatever the permit's age.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgpack
import nacl.exceptions
import nacl.signing

from protocol.records.purpose import Purpose
from protocol.signer import Signer, as_signer

PERMIT_VERSION = 2
OLD_VERSION = 1  # no purpose, no read id: refused (OldPermit)
READ_ID_SIZE = 16
KEY_SIZE = 32
RECORD_ID_SIZE = 32
SIGNATURE_SIZE = 64
MAX_PERMIT_SIZE = 256  # bytes of an encoded permit (about 180), checked before decoding
LIFETIME_MS = 10 * 60 * 1000  # a permit serves for ten minutes after it was issued
MAX_SKEW_MS = 2 * 60 * 1000  # a reader's clock may run this far ahead of a holder's
_SIGN_TAG = b"medvault/read-permit/v2"


class PermitError(ValueError):
    """A permit does not allow this read; the message says why."""


class OldPermit(PermitError):
    """A version 1 permit: it states no purpose and no read, so it is not served."""


@dataclass(frozen=True)
class ReadPermit:
    record_id: bytes
    reader: bytes
    node: bytes
    issued_at_ms: int
    purpose: Purpose
    read_id: bytes
    signature: bytes


def _pack(value: Any) -> bytes:
    packed: bytes = msgpack.packb(value, use_bin_type=True)
    return packed


def _unsigned(*fields: Any) -> list[Any]:
    """[version, record_id, reader, node, issued_at_ms, purpose, read_id]: what is signed."""
    return [PERMIT_VERSION, *fields]


def sign(
    signing_key: Signer | nacl.signing.SigningKey,
    record_id: bytes,
    node: bytes,
    issued_at_ms: int,
    *,
    read_id: bytes,
    purpose: Purpose = Purpose.TREAT,
) -> bytes:
    """A statement for `node` to fetch `record_id`'s blocks, as the key's holder, from
    now, for `purpose`, within the read `read_id`."""
    if len(record_id) != RECORD_ID_SIZE or len(node) != KEY_SIZE or issued_at_ms < 0:
        raise ValueError("a permit needs a 32-byte record id, a 32-byte node key, a time >= 0")
    if len(read_id) != READ_ID_SIZE:
        raise ValueError(f"a read id is {READ_ID_SIZE} bytes")
    signer = as_signer(signing_key)
    fields = _unsigned(record_id, signer.public, node, issued_at_ms, Purpose(purpose), read_id)
    signature = signer.sign(_SIGN_TAG + _pack(fields))
    return _pack([*fields, signature])


def sign_series(
    signing_key: Signer | nacl.signing.SigningKey,
    record_id: bytes,
    node: bytes,
    start_ms: int,
    count: int,
    *,
    read_id: bytes,
    purpose: Purpose = Purpose.TREAT,
) -> tuple[bytes, ...]:
    """`count` permits issued LIFETIME_MS apart from `start_ms`: together good for
    count * LIFETIME_MS, for a long read whose signer cannot be asked again midway
    (`get --as`: the key stays in the CLI). Each is usable only by `node` and only
    in its own span; the holders check the grant at every request regardless. They
    share `read_id`: one read, one line in the audit."""
    return tuple(
        sign(
            signing_key,
            record_id,
            node,
            start_ms + i * LIFETIME_MS,
            read_id=read_id,
            purpose=purpose,
        )
        for i in range(count)
    )


def _reject_ext(code: int, data: bytes) -> Any:
    raise ValueError("extension types are not allowed")


def decode(raw: bytes) -> ReadPermit:
    """Parse and verify a permit's shape, canonical form and signature (PermitError if not)."""
    if len(raw) > MAX_PERMIT_SIZE:
        raise PermitError(f"oversize permit: {len(raw)} bytes, at most {MAX_PERMIT_SIZE}")
    try:
        value = msgpack.unpackb(raw, raw=False, strict_map_key=True, ext_hook=_reject_ext)
    except Exception as exc:
        raise PermitError(f"malformed permit ({type(exc).__name__})") from None
    if isinstance(value, list) and value and value[0] == OLD_VERSION:
        raise OldPermit(
            "a version 1 read permit states no purpose of use and no read: holders serve"
            " only access statements (version 2); upgrade the reader's node or CLI"
        )
    if not isinstance(value, list) or len(value) != 8:
        raise PermitError("malformed permit: not an 8-field array")
    version, record_id, reader, node, issued_at_ms, purpose, read_id, signature = value
    if version != PERMIT_VERSION:
        raise PermitError(f"unsupported permit version {version!r}")
    sizes = ((record_id, RECORD_ID_SIZE), (reader, KEY_SIZE), (node, KEY_SIZE))
    if not all(isinstance(v, bytes) and len(v) == size for v, size in sizes):
        raise PermitError("malformed permit: a record id or key has the wrong size")
    if type(issued_at_ms) is not int or issued_at_ms < 0:
        raise PermitError("malformed permit: issued_at must be an integer >= 0")
    if not isinstance(signature, bytes) or len(signature) != SIGNATURE_SIZE:
        raise PermitError("malformed permit: the signature must be 64 bytes")
    if not isinstance(read_id, bytes) or len(read_id) != READ_ID_SIZE:
        raise PermitError(f"malformed permit: the read id must be {READ_ID_SIZE} bytes")
    if not isinstance(purpose, str) or purpose not in Purpose.__members__:
        raise PermitError(f"unknown purpose of use {str(purpose)[:16]!r}")
    fields = _unsigned(record_id, reader, node, issued_at_ms, purpose, read_id)
    if _pack([*fields, signature]) != raw:
        raise PermitError("permit is not in canonical encoding")
    try:
        nacl.signing.VerifyKey(reader).verify(_SIGN_TAG + _pack(fields), signature)
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError):
        raise PermitError("bad signature: the permit is not signed by its reader") from None
    return ReadPermit(record_id, reader, node, issued_at_ms, Purpose(purpose), read_id, signature)


def fresh(issued_at_ms: int, now_ms: int) -> bool:
    """Whether a permit issued then is still good now (by the checker's clock)."""
    return issued_at_ms - MAX_SKEW_MS <= now_ms <= issued_at_ms + LIFETIME_MS


def check(raw: bytes, *, record_id: bytes, node: bytes, now_ms: int) -> ReadPermit:
    """The statement, if it verifies, is for this record and this calling node, and is
    fresh; PermitError naming the first fault otherwise (OldPermit for version 1).

    Whether that reader may read the record is the ledger's question, not this one.
    """
    permit = decode(raw)
    if permit.record_id != record_id:
        raise PermitError("the permit is for another record")
    if permit.node != node:
        raise PermitError("the permit names another node (a permit serves only its own node)")
    if not fresh(permit.issued_at_ms, now_ms):
        age_s = (now_ms - permit.issued_at_ms) / 1000
        raise PermitError(
            f"stale permit: issued {age_s:.0f} s from now by this holder's clock (good from"
            f" {MAX_SKEW_MS // 1000} s before to {LIFETIME_MS // 1000} s after)"
        )
    return permit
