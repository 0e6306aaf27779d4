"""The published secret-handshake test vectors, every one of them.

Each vector is one step of the reference implementation applied to an
explicit state; this adapter performs the same step with our functions and
compares the whole resulting state (or the rejection) with the published one.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nacl.signing
import pytest

from protocol.errors import HandshakeFailed
from protocol.net import handshake as shs

VECTORS = Path(__file__).resolve().parents[3] / "shared" / "vectors" / "shs" / "data.json"
State = dict[str, Any]


def h(value: str) -> bytes:
    return bytes.fromhex(value)


def signing_key(secret_key_hex: str) -> nacl.signing.SigningKey:
    return nacl.signing.SigningKey(h(secret_key_hex)[:32])


def initialize(st: State) -> State:
    secret, eph = shs.ephemeral_keypair(h(st["random"]))
    st["local"].update(
        kx_pk=eph.hex(), kx_sk=secret.hex(), app_mac=shs.hello_mac(h(st["app_key"]), eph).hex()
    )
    st.setdefault("remote", {})
    return st


def create_challenge(st: State) -> str:
    return shs.make_hello(h(st["app_key"]), h(st["local"]["kx_pk"])).hex()


def verify_challenge(st: State, challenge: str) -> State:
    eph = shs.open_hello(h(st["app_key"]), h(challenge))
    st["remote"].update(kx_pk=eph.hex(), app_mac=challenge[:64])
    secret = shs.dh(h(st["local"]["kx_sk"]), eph)
    st.update(secret=secret.hex(), shash=shs.sha256(secret).hex())
    return st


def client_verify_challenge(st: State, challenge: str) -> State:
    st = verify_challenge(st, challenge)
    key, server = h(st["app_key"]), h(st["remote"]["publicKey"])
    a_bob = shs.dh(h(st["local"]["kx_sk"]), shs.curve_public(server))
    secret = h(st["secret"])
    proof = shs.client_proof(key, signing_key(st["local"]["secretKey"]), server, secret)
    st.update(a_bob=a_bob.hex(), secret2=shs.auth_key(key, secret, a_bob).hex())
    st["local"]["hello"] = proof.hex()
    return st


def client_create_auth(st: State) -> str:
    return shs.seal(h(st["local"]["hello"]), h(st["secret2"])).hex()


def server_verify_auth(st: State, packet: str) -> State:
    key, secret = h(st["app_key"]), h(st["secret"])
    a_bob = shs.dh(
        shs.curve_secret(signing_key(st["local"]["secretKey"])), h(st["remote"]["kx_pk"])
    )
    secret2 = shs.auth_key(key, secret, a_bob)
    proof = shs.open_client_auth(h(packet), key, h(st["local"]["publicKey"]), secret, secret2)
    client = proof[64:]
    b_alice = shs.dh(h(st["local"]["kx_sk"]), shs.curve_public(client))
    st.update(
        a_bob=a_bob.hex(),
        secret2=secret2.hex(),
        b_alice=b_alice.hex(),
        secret3=shs.accept_key(key, secret, a_bob, b_alice).hex(),
    )
    st["remote"].update(hello=proof.hex(), publicKey=client.hex())
    return st


def server_create_accept(st: State) -> str:
    key = h(st["app_key"])
    signature = shs.server_acceptance(
        key, signing_key(st["local"]["secretKey"]), h(st["remote"]["hello"]), h(st["secret"])
    )
    return shs.seal(signature, h(st["secret3"])).hex()


def client_verify_accept(st: State, packet: str) -> State:
    key, secret = h(st["app_key"]), h(st["secret"])
    b_alice = shs.dh(
        shs.curve_secret(signing_key(st["local"]["secretKey"])), h(st["remote"]["kx_pk"])
    )
    secret3 = shs.accept_key(key, secret, h(st["a_bob"]), b_alice)
    shs.open_server_accept(
        h(packet),
        key,
        h(st["remote"]["publicKey"]),
        proof=h(st["local"]["hello"]),
        ab=secret,
        box_key=secret3,
    )
    st.update(b_alice=b_alice.hex(), secret3=secret3.hex())
    return st


def clean(st: State) -> State:
    local, remote = h(st["local"]["publicKey"]), h(st["remote"]["publicKey"])
    if st["secret3"] is None:
        # The reference logged this state after clean() had already replaced
        # `secret` by sha256(secret3): check the key derivation from there.
        keys = shs.session_keys_from_secret(h(st["secret"]), local, remote, bytes(32), bytes(32))
        secret = st["secret"]
    else:
        keys = shs.session_keys(h(st["secret3"]), local, remote, bytes(32), bytes(32))
        secret = shs.sha256(h(st["secret3"])).hex()
    st.update(
        secret=secret,
        encryptKey=keys.encrypt_key.hex(),
        decryptKey=keys.decrypt_key.hex(),
        shash=None,
        secret2=None,
        secret3=None,
        a_bob=None,
        b_alice=None,
    )
    st["local"]["kx_sk"] = None
    return st


def to_keys(given: str | State) -> State:
    # A key pair is passed through; ours must derive the same public key from its seed.
    seed = h(given["secretKey"][:64] if isinstance(given, dict) else given)
    public = bytes(nacl.signing.SigningKey(seed).verify_key)
    return {"publicKey": public.hex(), "secretKey": (seed + public).hex()}


OPERATIONS: dict[str, Callable[..., Any]] = {
    "initialize": initialize,
    "createChallenge": create_challenge,
    "verifyChallenge": verify_challenge,
    "clientVerifyChallenge": client_verify_challenge,
    "clientCreateAuth": client_create_auth,
    "serverVerifyAuth": server_verify_auth,
    "serverCreateAccept": server_create_accept,
    "clientVerifyAccept": client_verify_accept,
    "clean": clean,
    "toKeys": to_keys,
}


def load_vectors() -> list[dict[str, Any]]:
    if not VECTORS.exists():
        return []
    vectors = json.loads(VECTORS.read_text())
    assert isinstance(vectors, list)
    return vectors


ALL = load_vectors()


@pytest.mark.skipif(not ALL, reason=f"shared SHS vectors not found at {VECTORS}")
@pytest.mark.parametrize("index", range(len(ALL)) if ALL else [0])
def test_vector(index: int) -> None:
    vector = ALL[index]
    args = copy.deepcopy(vector["args"])
    try:
        result = OPERATIONS[vector["name"]](*args)
    except HandshakeFailed:
        result = None
    assert result == vector["result"], vector["name"]


@pytest.mark.skipif(not ALL, reason=f"shared SHS vectors not found at {VECTORS}")
def test_every_operation_and_both_outcomes_are_covered() -> None:
    names = {v["name"] for v in ALL}
    assert names == set(OPERATIONS)
    rejected = {v["name"] for v in ALL if v["result"] is None}
    assert {"verifyChallenge", "clientVerifyChallenge", "serverVerifyAuth"} <= rejected
