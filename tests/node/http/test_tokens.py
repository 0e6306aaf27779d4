"""Bearer tokens: shown once, kept as hashes, scoped, revocable while the node runs."""

from __future__ import annotations

import os
from pathlib import Path

import msgpack
import pytest

from node.http.tokens import TOKENS_FILE, Scope, TokenError, TokenStore


def test_a_token_verifies_and_only_its_hash_is_kept(tmp_path: Path) -> None:
    store = TokenStore(tmp_path, clock_ms=lambda: 1234)
    token, text = store.new("EHR-A", Scope.WRITE)
    assert store.verify(text) == token
    assert token.allows(Scope.READ) and token.allows(Scope.WRITE)
    assert not token.allows(Scope.ADMIN)
    stored = (tmp_path / TOKENS_FILE).read_bytes()
    secret = text.rsplit("_", 1)[1]
    assert secret.encode() not in stored and text.encode() not in stored
    assert oct((tmp_path / TOKENS_FILE).stat().st_mode & 0o777) == "0o600"
    assert [t.name for t in TokenStore(tmp_path).all()] == ["EHR-A"]


def test_forged_and_altered_tokens_are_refused(tmp_path: Path) -> None:
    store = TokenStore(tmp_path)
    _, text = store.new("a", Scope.ADMIN)
    token_id = text.split("_")[1]
    middle = len(text) - 10  # not the last: its low bits are base64 padding, ignored
    other = "A" if text[middle] != "A" else "B"
    for forged in [
        text[:middle] + other + text[middle + 1 :],  # one character of the secret changed
        f"mvt_{token_id}_" + "A" * 43,  # the right id, another secret
        f"mvt_{'0' * 16}_" + text.split("_", 2)[2],  # the secret under another id
        "",
        "mvt_",
        "Bearer " + text,
        text + "x" * 200,
        "mvt_zz_zz",
    ]:
        assert store.verify(forged) is None, forged


def test_revocation_reaches_another_store_of_the_same_file(tmp_path: Path) -> None:
    running = TokenStore(tmp_path)  # the daemon's
    cli = TokenStore(tmp_path)  # `medvault http token ...` in another process
    _, text = cli.new("prometheus", Scope.READ)
    assert running.verify(text) is not None
    cli.revoke("prometheus")
    assert running.verify(text) is None
    with pytest.raises(TokenError, match="no token is named 'prometheus'"):
        cli.revoke("prometheus")


def test_names_are_unique_and_checked(tmp_path: Path) -> None:
    store = TokenStore(tmp_path)
    store.new("EHR-A", Scope.READ)
    with pytest.raises(TokenError, match="a token named 'EHR-A' exists"):
        store.new("EHR-A", Scope.ADMIN)
    for bad in ["", " padded", "x" * 65, "tab\there"]:
        with pytest.raises(TokenError, match="printable"):
            store.new(bad, Scope.READ)
    with pytest.raises(TokenError, match="scope 'root' is not one of"):
        Scope.parse("root")


def test_a_corrupt_token_file_is_named_and_nothing_verifies(tmp_path: Path) -> None:
    store = TokenStore(tmp_path)
    _, text = store.new("a", Scope.READ)
    (tmp_path / TOKENS_FILE).write_bytes(os.urandom(64))
    with pytest.raises(TokenError, match=TOKENS_FILE):
        store.verify(text)
    (tmp_path / TOKENS_FILE).write_bytes(msgpack.packb({"format": 99}))
    with pytest.raises(TokenError, match="not a medvault token file"):
        TokenStore(tmp_path).all()
