"""Bearer tokens of the HTTP API: shown once when made, only their hashes kept.

A token is `mvt_<id>_<secret>`: the id (8 random bytes, hex) names the entry
in http-tokens.msgpack and appears in logs; the secret (32 random bytes) is
never stored, only its keyed BLAKE2b hash, compared in constant time. The
file is rewritten atomically (0600) under a lock, and a running node
reloads it when it changes, so `token new` and `token revoke` take effect
at once without a restart.
"""

from __future__ import annotations

import base64
import contextlib
import enum
import fcntl
import hmac
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack
import nacl.encoding
import nacl.hash

TOKENS_FILE = "http-tokens.msgpack"
PREFIX = "mvt_"
ID_BYTES = 8
SECRET_BYTES = 32
MAX_NAME = 64
MAX_TOKENS = 10_000
FORMAT = 1
_PERSON = b"medvault-token1"  # BLAKE2b personalisation: these hashes are for nothing else


class TokenError(Exception):
    """A token file or a token command is unusable; the message says why."""


class Scope(enum.IntEnum):
    """What a token may do; each scope includes the ones below it."""

    READ = 1  # search and retrieve documents, status, peers, metrics
    WRITE = 2  # also store documents
    ADMIN = 3  # also check and repair records

    @classmethod
    def parse(cls, text: str) -> Scope:
        try:
            return cls[text.upper()]
        except KeyError:
            raise TokenError(f"scope {text!r} is not one of read, write, admin") from None

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclass(frozen=True)
class Token:
    token_id: str
    name: str
    scope: Scope
    created_ms: int
    digest: bytes

    def allows(self, needed: Scope) -> bool:
        return self.scope >= needed


def _digest(secret: bytes) -> bytes:
    return nacl.hash.blake2b(
        secret, digest_size=32, person=_PERSON, encoder=nacl.encoding.RawEncoder
    )


def _split(presented: str) -> tuple[str, bytes] | None:
    """(id, secret) of a well-formed token, or None."""
    if not presented.startswith(PREFIX) or len(presented) > 128:
        return None
    token_id, sep, secret_text = presented[len(PREFIX) :].partition("_")
    if not sep or len(token_id) != 2 * ID_BYTES:
        return None
    try:
        bytes.fromhex(token_id)
        secret = base64.urlsafe_b64decode(secret_text + "=" * (-len(secret_text) % 4))
    except ValueError:
        return None
    return (token_id, secret) if len(secret) == SECRET_BYTES else None


def check_name(name: str) -> str:
    if not name or len(name) > MAX_NAME or not name.isprintable() or name != name.strip():
        raise TokenError(f"a token name is 1 to {MAX_NAME} printable characters, no edge spaces")
    return name


class TokenStore:
    """The tokens of one data directory."""

    def __init__(
        self,
        root: Path,
        *,
        random_bytes: Callable[[int], bytes] = os.urandom,
        clock_ms: Callable[[], int] | None = None,
    ) -> None:
        self.path = root / TOKENS_FILE
        self.random_bytes = random_bytes
        self.clock_ms = clock_ms
        self._seen: tuple[int, int, int] | None = None
        self._tokens: dict[str, Token] = {}

    # -- reading -------------------------------------------------------------------------

    def all(self) -> list[Token]:
        self._refresh()
        return sorted(self._tokens.values(), key=lambda t: (t.created_ms, t.name))

    def verify(self, presented: str) -> Token | None:
        """The token `presented` is, if it is one of ours and not revoked."""
        parts = _split(presented)
        if parts is None:
            return None
        self._refresh()
        token = self._tokens.get(parts[0])
        if token is None or not hmac.compare_digest(token.digest, _digest(parts[1])):
            return None
        return token

    def _refresh(self) -> None:
        """Reread the file when it changed (another process made or revoked a token)."""
        try:
            info = self.path.stat()
        except FileNotFoundError:
            self._seen, self._tokens = None, {}
            return
        seen = (info.st_mtime_ns, info.st_size, info.st_ino)
        if seen != self._seen:
            self._tokens = self._load()
            self._seen = seen

    def _load(self) -> dict[str, Token]:
        try:
            raw = msgpack.unpackb(self.path.read_bytes(), raw=False)
        except (OSError, ValueError, msgpack.ExtraData) as exc:
            raise TokenError(f"{self.path} cannot be read: {exc}") from None
        if not isinstance(raw, dict) or raw.get("format") != FORMAT:
            raise TokenError(f"{self.path} is not a medvault token file (format {FORMAT})")
        tokens = {}
        for item in raw.get("tokens", []):
            try:
                token = Token(
                    token_id=str(item["id"]),
                    name=str(item["name"]),
                    scope=Scope(int(item["scope"])),
                    created_ms=int(item["created"]),
                    digest=bytes(item["digest"]),
                )
            except (KeyError, TypeError, ValueError) as exc:
                raise TokenError(f"{self.path} has a malformed entry: {exc}") from None
            tokens[token.token_id] = token
        return tokens

    # -- changing ------------------------------------------------------------------------

    def new(self, name: str, scope: Scope) -> tuple[Token, str]:
        """A new token and its text (shown once: only its hash is kept)."""
        check_name(name)
        with self._locked():
            tokens = self._load() if self.path.exists() else {}
            if any(t.name == name for t in tokens.values()):
                raise TokenError(f"a token named {name!r} exists (revoke it first)")
            if len(tokens) >= MAX_TOKENS:
                raise TokenError(f"{MAX_TOKENS} tokens exist; revoke unused ones first")
            token_id = self.random_bytes(ID_BYTES).hex()
            secret = self.random_bytes(SECRET_BYTES)
            now = self.clock_ms() if self.clock_ms is not None else 0
            token = Token(token_id, name, scope, now, _digest(secret))
            tokens[token_id] = token
            self._write(tokens)
        text = base64.urlsafe_b64encode(secret).rstrip(b"=").decode()
        return token, f"{PREFIX}{token_id}_{text}"

    def revoke(self, which: str) -> Token:
        """Remove the token named `which` (or with that id)."""
        with self._locked():
            tokens = self._load() if self.path.exists() else {}
            found = [t for t in tokens.values() if which in (t.name, t.token_id)]
            if not found:
                raise TokenError(f"no token is named {which!r} (see `medvault http token ls`)")
            del tokens[found[0].token_id]
            self._write(tokens)
        return found[0]

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        fd = os.open(
            self.path.with_name(f".{TOKENS_FILE}.lock"),
            os.O_RDWR | os.O_CREAT | os.O_CLOEXEC,
            0o600,
        )
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _write(self, tokens: dict[str, Token]) -> None:
        items: list[dict[str, Any]] = [
            {
                "id": t.token_id,
                "name": t.name,
                "scope": int(t.scope),
                "created": t.created_ms,
                "digest": t.digest,
            }
            for t in tokens.values()
        ]
        data = msgpack.packb({"format": FORMAT, "tokens": items}, use_bin_type=True)
        fd, temporary = tempfile.mkstemp(dir=self.path.parent, prefix=f".{TOKENS_FILE}.")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, self.path)  # mkstemp made it 0600
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
            raise
