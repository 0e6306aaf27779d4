"""Secret key files: node identity, network key, and people's keys.

A key file is two text lines: a header naming what it is (`medvault
identity v1`, `medvault network-key v1`, `medvault person v1`) and the 32
secret bytes in hex (a view-only key, `medvault view-key v1`: its 66-byte
encoding, protocol.privacy.ViewKey). Files are created with mode 0600 and never overwritten;
loading refuses a file that group or others can read, and errors name the
file and the fix without ever echoing key material.
"""

from __future__ import annotations

import os
import stat
from enum import StrEnum
from pathlib import Path

import nacl.signing

SECRET_SIZE = 32


class KeyKind(StrEnum):
    IDENTITY = "identity"
    NETWORK = "network-key"
    PERSON = "person"
    AUTHORITY = "authority"  # a network's membership authority: signs certificates
    VIEW = "view-key"  # a person's view-only key: finds her grants, cannot open or sign


_SIZES = {KeyKind.VIEW: 66}  # every other kind holds SECRET_SIZE bytes


def _size(kind: KeyKind) -> int:
    return _SIZES.get(kind, SECRET_SIZE)


class KeyFileError(Exception):
    """A key file is missing, unsafe or malformed; the message says which and why."""


def _header(kind: KeyKind) -> str:
    return f"medvault {kind} v1"


def write_secret(path: Path, kind: KeyKind, secret: bytes) -> None:
    """Create `path` (mode 0600) holding `secret`; refuses to replace a file."""
    if len(secret) != _size(kind):
        raise ValueError(f"a {kind} secret is {_size(kind)} bytes")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        raise KeyFileError(f"{path} already exists; refusing to overwrite a key") from None
    with os.fdopen(fd, "w") as handle:
        handle.write(f"{_header(kind)}\n{secret.hex()}\n")
        handle.flush()
        os.fsync(handle.fileno())


def read_secret(path: Path, kind: KeyKind) -> bytes:
    """The secret in `path`, after checking its permissions and format."""
    try:
        info = path.stat()
    except FileNotFoundError:
        raise KeyFileError(f"{path} does not exist") from None
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o077:
        raise KeyFileError(
            f"{path} is readable by group or others (mode {mode:04o}); run: chmod 600 {path}"
        )
    lines = path.read_text(encoding="ascii", errors="replace").splitlines()
    if len(lines) != 2 or lines[0].strip() != _header(kind):
        raise KeyFileError(f"{path} is not a medvault {kind} file")
    try:
        secret = bytes.fromhex(lines[1].strip())
    except ValueError:
        raise KeyFileError(f"{path} holds a malformed key (not hex)") from None
    if len(secret) != _size(kind):
        raise KeyFileError(f"{path} holds a key of the wrong length")
    return secret


def create_signing_key(path: Path, kind: KeyKind, seed: bytes) -> nacl.signing.SigningKey:
    write_secret(path, kind, seed)
    return nacl.signing.SigningKey(seed)


def load_signing_key(path: Path, kind: KeyKind) -> nacl.signing.SigningKey:
    return nacl.signing.SigningKey(read_secret(path, kind))
