"""Secure Scuttlebutt secret handshake (SHS) with a network key, sans-IO.

Four messages: client hello, server hello, client auth, server accept. Both
sides prove their Ed25519 identity, agree on forward-secret session keys from
ephemeral X25519 keys, and prove they know the 32-byte network key. A server
says nothing until a hello carries the network key's MAC, so a stranger
learns nothing about it, not even what protocol it speaks.

The steps are pure functions over explicit values (the published test
vectors exercise them one by one); `ClientHandshake` and `ServerHandshake`
chain them into byte-in, bytes-out machines. HMAC-SHA-512-256 is libsodium's
`crypto_auth`, which pynacl does not bind; the standard library's HMAC
computes the same function and the vectors prove it.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
from dataclasses import dataclass
from typing import ClassVar

import nacl.exceptions
import nacl.signing
from nacl import bindings

from protocol.errors import HandshakeFailed, LocalProtocolError

NETWORK_KEY_SIZE = 32
KEY_SIZE = 32
HELLO_SIZE = 64
CLIENT_AUTH_SIZE = 112
SERVER_ACCEPT_SIZE = 80
PROOF_SIZE = 96  # detached signature (64) + client public key (32)
NONCE_SIZE = 24
_ZERO_NONCE = bytes(NONCE_SIZE)


def hello_mac(network_key: bytes, ephemeral_public: bytes) -> bytes:
    """HMAC-SHA-512-256 of an ephemeral key under the network key."""
    return hmac.new(network_key, ephemeral_public, hashlib.sha512).digest()[:32]


def sha256(data: bytes) -> bytes:
    return bindings.crypto_hash_sha256(data)


def ephemeral_keypair(seed: bytes) -> tuple[bytes, bytes]:
    """(secret, public) X25519 ephemeral keys from 32 fresh random bytes.

    As in the reference implementation: the curve25519 form of the Ed25519
    key pair with that seed.
    """
    if len(seed) != KEY_SIZE:
        raise LocalProtocolError("an ephemeral seed is 32 bytes")
    key = nacl.signing.SigningKey(seed)
    return curve_secret(key), bytes(key.verify_key.to_curve25519_public_key())


def dh(secret: bytes, public: bytes) -> bytes:
    """X25519 shared secret; a low-order public key fails the handshake."""
    try:
        return bindings.crypto_scalarmult(secret, public)
    except (nacl.exceptions.RuntimeError, nacl.exceptions.CryptoError):
        raise HandshakeFailed("peer sent a degenerate key") from None


def curve_public(ed25519_public: bytes) -> bytes:
    try:
        return bindings.crypto_sign_ed25519_pk_to_curve25519(ed25519_public)
    except (nacl.exceptions.RuntimeError, nacl.exceptions.CryptoError):
        raise HandshakeFailed("peer key is not a valid Ed25519 public key") from None


def curve_secret(identity: nacl.signing.SigningKey) -> bytes:
    return bytes(identity.to_curve25519_private_key())


def make_hello(network_key: bytes, ephemeral_pk: bytes) -> bytes:
    return hello_mac(network_key, ephemeral_pk) + ephemeral_pk


def open_hello(network_key: bytes, packet: bytes) -> bytes:
    """The peer's ephemeral public key, if the hello carries this network's MAC."""
    if len(packet) != HELLO_SIZE:
        raise HandshakeFailed(f"hello is {len(packet)} bytes, expected {HELLO_SIZE}")
    mac, ephemeral_pk = packet[:32], packet[32:]
    if not hmac.compare_digest(mac, hello_mac(network_key, ephemeral_pk)):
        raise HandshakeFailed("hello is not from this network (MAC mismatch)")
    return ephemeral_pk


def auth_key(network_key: bytes, ab: bytes, a_b: bytes) -> bytes:
    """Box key of the client auth: sha256(K | ab | aB)."""
    return sha256(network_key + ab + a_b)


def accept_key(network_key: bytes, ab: bytes, a_b: bytes, b_a: bytes) -> bytes:
    """Box key of the server accept and root of the session: sha256(K | ab | aB | Ab)."""
    return sha256(network_key + ab + a_b + b_a)


def client_proof(
    network_key: bytes, client: nacl.signing.SigningKey, server_public: bytes, ab: bytes
) -> bytes:
    """The client's signature over K | B | sha256(ab), followed by its public key."""
    signature = client.sign(network_key + server_public + sha256(ab)).signature
    return signature + bytes(client.verify_key)


def seal(message: bytes, key: bytes) -> bytes:
    return bindings.crypto_secretbox_easy(message, _ZERO_NONCE, key)


def unseal(packet: bytes, key: bytes, what: str) -> bytes:
    try:
        return bindings.crypto_secretbox_open_easy(packet, _ZERO_NONCE, key)
    except nacl.exceptions.CryptoError:
        raise HandshakeFailed(f"{what} does not open (wrong key or tampered)") from None


def _verify(public: bytes, message: bytes, signature: bytes, what: str) -> None:
    try:
        nacl.signing.VerifyKey(public).verify(message, signature)
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError):
        raise HandshakeFailed(f"{what} signature is invalid") from None


def open_client_auth(
    packet: bytes, network_key: bytes, server_public: bytes, ab: bytes, box_key: bytes
) -> bytes:
    """Verify the client auth; returns the client's proof (signature + public key)."""
    if len(packet) != CLIENT_AUTH_SIZE:
        raise HandshakeFailed(f"client auth is {len(packet)} bytes, expected {CLIENT_AUTH_SIZE}")
    proof = unseal(packet, box_key, "client auth")
    signature, client_public = proof[:64], proof[64:]
    _verify(client_public, network_key + server_public + sha256(ab), signature, "client")
    return proof


def server_acceptance(
    network_key: bytes, server: nacl.signing.SigningKey, proof: bytes, ab: bytes
) -> bytes:
    """The server's signature over K | client proof | sha256(ab)."""
    return server.sign(network_key + proof + sha256(ab)).signature


def open_server_accept(
    packet: bytes,
    network_key: bytes,
    server_public: bytes,
    *,
    proof: bytes,
    ab: bytes,
    box_key: bytes,
) -> None:
    if len(packet) != SERVER_ACCEPT_SIZE:
        raise HandshakeFailed(
            f"server accept is {len(packet)} bytes, expected {SERVER_ACCEPT_SIZE}"
        )
    signature = unseal(packet, box_key, "server accept")
    _verify(server_public, network_key + proof + sha256(ab), signature, "server")


@dataclass(frozen=True, repr=False)
class SessionKeys:
    """What a completed handshake yields for the box streams of both directions."""

    local_public_key: bytes
    remote_public_key: bytes
    encrypt_key: bytes
    encrypt_nonce: bytes
    decrypt_key: bytes
    decrypt_nonce: bytes

    def __repr__(self) -> str:  # keys never appear in logs
        return f"SessionKeys(remote={self.remote_public_key.hex()[:16]}...)"


def session_keys(
    root: bytes,
    local_public: bytes,
    remote_public: bytes,
    local_hello_mac: bytes,
    remote_hello_mac: bytes,
) -> SessionKeys:
    """Box-stream keys and starting nonces from the accept key (`root`).

    Each direction is keyed to its receiver's long-term key; a writer starts
    from the first 24 bytes of the receiver's hello MAC.
    """
    return session_keys_from_secret(
        sha256(root), local_public, remote_public, local_hello_mac, remote_hello_mac
    )


def session_keys_from_secret(
    secret: bytes,
    local_public: bytes,
    remote_public: bytes,
    local_hello_mac: bytes,
    remote_hello_mac: bytes,
) -> SessionKeys:
    """The last derivation step: `secret` is sha256 of the accept key."""
    return SessionKeys(
        local_public_key=local_public,
        remote_public_key=remote_public,
        encrypt_key=sha256(secret + remote_public),
        encrypt_nonce=remote_hello_mac[:NONCE_SIZE],
        decrypt_key=sha256(secret + local_public),
        decrypt_nonce=local_hello_mac[:NONCE_SIZE],
    )


class _Stage(enum.Enum):
    HELLO = "hello"
    AUTH = "auth"
    ACCEPT = "accept"
    DONE = "done"
    FAILED = "failed"


class _Machine:
    """Buffers bytes until a whole handshake packet is in, then steps."""

    _sizes: ClassVar[dict[_Stage, int]]

    def __init__(self, network_key: bytes, identity: nacl.signing.SigningKey, seed: bytes):
        if len(network_key) != NETWORK_KEY_SIZE:
            raise LocalProtocolError(f"a network key is {NETWORK_KEY_SIZE} bytes")
        self._network_key = bytes(network_key)
        self._identity = identity
        self._public = bytes(identity.verify_key)
        self._eph_secret, self._eph_public = ephemeral_keypair(seed)
        self._mac = hello_mac(network_key, self._eph_public)
        self._buffer = bytearray()
        self._stage = _Stage.HELLO
        self._session: SessionKeys | None = None

    @property
    def complete(self) -> bool:
        return self._stage is _Stage.DONE

    @property
    def session(self) -> SessionKeys:
        if self._session is None:
            raise LocalProtocolError("the handshake has not completed")
        return self._session

    @property
    def bytes_expected(self) -> int:
        """How many more bytes the next step needs (0 when done)."""
        if self._stage in (_Stage.DONE, _Stage.FAILED):
            return 0
        return max(0, self._sizes[self._stage] - len(self._buffer))

    def take_leftover(self) -> bytes:
        """Bytes that arrived after the handshake: the start of the box stream."""
        if not self.complete:
            raise LocalProtocolError("the handshake has not completed")
        leftover = bytes(self._buffer)
        self._buffer.clear()
        return leftover

    def receive_data(self, data: bytes) -> bytes:
        """Feed received bytes; returns bytes to send (possibly empty)."""
        if self._stage is _Stage.FAILED:
            raise LocalProtocolError("the handshake already failed")
        self._buffer += data
        out = bytearray()
        while self._stage is not _Stage.DONE and len(self._buffer) >= self._sizes[self._stage]:
            size = self._sizes[self._stage]
            packet = bytes(self._buffer[:size])
            del self._buffer[:size]
            try:
                out += self._step(packet)
            except HandshakeFailed:
                self._stage = _Stage.FAILED
                self._buffer.clear()
                raise
        return bytes(out)

    def _step(self, packet: bytes) -> bytes:
        raise NotImplementedError


class ClientHandshake(_Machine):
    """The dialing side: knows the server's public key before it starts."""

    _sizes: ClassVar[dict[_Stage, int]] = {
        _Stage.HELLO: HELLO_SIZE,
        _Stage.ACCEPT: SERVER_ACCEPT_SIZE,
    }

    def __init__(
        self,
        network_key: bytes,
        identity: nacl.signing.SigningKey,
        server_public: bytes,
        ephemeral_seed: bytes,
    ) -> None:
        super().__init__(network_key, identity, ephemeral_seed)
        if len(server_public) != KEY_SIZE:
            raise LocalProtocolError("a server public key is 32 bytes")
        self._server_public = bytes(server_public)
        self._server_curve = curve_public(server_public)
        self._started = False

    def start(self) -> bytes:
        """The client hello: the first bytes on the connection."""
        if self._started:
            raise LocalProtocolError("the client hello was already produced")
        self._started = True
        return self._mac + self._eph_public

    def _step(self, packet: bytes) -> bytes:
        if not self._started:
            raise LocalProtocolError("call start() before feeding server bytes")
        if self._stage is _Stage.HELLO:
            k = self._network_key
            self._remote_mac = packet[:32]
            remote_eph = open_hello(k, packet)
            self._ab = dh(self._eph_secret, remote_eph)
            self._a_b = dh(self._eph_secret, self._server_curve)
            self._b_a = dh(curve_secret(self._identity), remote_eph)
            self._proof = client_proof(k, self._identity, self._server_public, self._ab)
            self._stage = _Stage.ACCEPT
            return seal(self._proof, auth_key(k, self._ab, self._a_b))
        root = accept_key(self._network_key, self._ab, self._a_b, self._b_a)
        open_server_accept(
            packet,
            self._network_key,
            self._server_public,
            proof=self._proof,
            ab=self._ab,
            box_key=root,
        )
        self._session = session_keys(
            root, self._public, self._server_public, self._mac, self._remote_mac
        )
        self._stage = _Stage.DONE
        return b""


class ServerHandshake(_Machine):
    """The answering side: learns the client's public key from its auth."""

    _sizes: ClassVar[dict[_Stage, int]] = {_Stage.HELLO: HELLO_SIZE, _Stage.AUTH: CLIENT_AUTH_SIZE}

    def _step(self, packet: bytes) -> bytes:
        k = self._network_key
        if self._stage is _Stage.HELLO:
            self._remote_mac = packet[:32]
            self._remote_eph = open_hello(k, packet)
            self._ab = dh(self._eph_secret, self._remote_eph)
            self._stage = _Stage.AUTH
            return self._mac + self._eph_public
        a_b = dh(curve_secret(self._identity), self._remote_eph)
        proof = open_client_auth(packet, k, self._public, self._ab, auth_key(k, self._ab, a_b))
        client_public = proof[64:]
        b_a = dh(self._eph_secret, curve_public(client_public))
        root = accept_key(k, self._ab, a_b, b_a)
        accept = seal(server_acceptance(k, self._identity, proof, self._ab), root)
        self._session = session_keys(root, self._public, client_public, self._mac, self._remote_mac)
        self._stage = _Stage.DONE
        return accept
