from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.errors import HandshakeFailed, LocalProtocolError, RemoteProtocolError
from protocol.net.handshake import (
    CLIENT_AUTH_SIZE,
    HELLO_SIZE,
    SERVER_ACCEPT_SIZE,
    ClientHandshake,
    ServerHandshake,
    ephemeral_keypair,
    make_hello,
)
from tests.protocol.keys import NETWORK, OTHER_NETWORK, seed, signing_key

CLIENT = signing_key("client")
SERVER = signing_key("server")


def make_pair(
    client_network: bytes = NETWORK,
    server_network: bytes = NETWORK,
    expected_server: bytes | None = None,
) -> tuple[ClientHandshake, ServerHandshake]:
    server_pk = expected_server or bytes(SERVER.verify_key)
    client = ClientHandshake(client_network, CLIENT, server_pk, seed("client eph"))
    server = ServerHandshake(server_network, SERVER, seed("server eph"))
    return client, server


def run(client: ClientHandshake, server: ServerHandshake) -> None:
    to_server = client.start()
    while not (client.complete and server.complete):
        to_client = server.receive_data(to_server)
        to_server = client.receive_data(to_client) if to_client else b""
        if not to_client and not to_server:
            break


def test_handshake_completes_with_matching_keys() -> None:
    client, server = make_pair()
    run(client, server)
    assert client.complete and server.complete
    c, s = client.session, server.session
    assert c.remote_public_key == bytes(SERVER.verify_key)
    assert s.remote_public_key == bytes(CLIENT.verify_key)
    assert (c.encrypt_key, c.encrypt_nonce) == (s.decrypt_key, s.decrypt_nonce)
    assert (c.decrypt_key, c.decrypt_nonce) == (s.encrypt_key, s.encrypt_nonce)
    assert c.encrypt_key != c.decrypt_key
    assert c.encrypt_key.hex() not in repr(c)


def test_packet_sizes_on_the_wire() -> None:
    client, server = make_pair()
    hello = client.start()
    assert len(hello) == HELLO_SIZE
    server_hello = server.receive_data(hello)
    assert len(server_hello) == HELLO_SIZE
    auth = client.receive_data(server_hello)
    assert len(auth) == CLIENT_AUTH_SIZE
    accept = server.receive_data(auth)
    assert len(accept) == SERVER_ACCEPT_SIZE and server.complete
    assert client.receive_data(accept) == b"" and client.complete


def test_bytes_may_arrive_one_at_a_time_and_leftovers_are_kept() -> None:
    client, server = make_pair()
    out = b""
    for byte in client.start():
        assert not out
        out = server.receive_data(bytes([byte]))
    auth = b"".join(client.receive_data(bytes([b])) for b in out)
    accept = b"".join(server.receive_data(bytes([b])) for b in auth)
    assert server.complete
    assert client.receive_data(accept + b"early box-stream bytes") == b""
    assert client.take_leftover() == b"early box-stream bytes"
    assert client.take_leftover() == b""


def test_wrong_network_key_gets_no_answer() -> None:
    client, server = make_pair(client_network=OTHER_NETWORK)
    with pytest.raises(HandshakeFailed, match="not from this network"):
        server.receive_data(client.start())
    with pytest.raises(LocalProtocolError, match="already failed"):
        server.receive_data(b"more")


def test_client_rejects_a_server_of_another_network() -> None:
    client, _ = make_pair(server_network=OTHER_NETWORK)
    # The server rejects the hello first; simulate a server that answered anyway.
    _, impostor_eph = ephemeral_keypair(seed("x"))
    impostor_hello = make_hello(OTHER_NETWORK, impostor_eph)
    client.start()
    with pytest.raises(HandshakeFailed, match="not from this network"):
        client.receive_data(impostor_hello)


def test_server_with_a_different_key_than_expected_is_refused() -> None:
    expected = bytes(signing_key("someone else").verify_key)
    client, server = make_pair(expected_server=expected)
    server_hello = server.receive_data(client.start())
    auth = client.receive_data(server_hello)
    # The real server cannot open an auth addressed to another key.
    with pytest.raises(HandshakeFailed, match="client auth does not open"):
        server.receive_data(auth)


def test_tampered_auth_and_accept_fail() -> None:
    client, server = make_pair()
    auth = client.receive_data(server.receive_data(client.start()))
    with pytest.raises(HandshakeFailed):
        server.receive_data(auth[:-1] + bytes([auth[-1] ^ 1]))
    client, server = make_pair()
    auth = client.receive_data(server.receive_data(client.start()))
    accept = server.receive_data(auth)
    with pytest.raises(HandshakeFailed, match="server accept"):
        client.receive_data(accept[:5] + bytes([accept[5] ^ 1]) + accept[6:])


def test_replayed_client_messages_fail_against_a_fresh_server() -> None:
    client, server = make_pair()
    hello = client.start()
    auth = client.receive_data(server.receive_data(hello))
    fresh = ServerHandshake(NETWORK, SERVER, seed("another server eph"))
    fresh.receive_data(hello)  # the old hello is accepted as a hello...
    with pytest.raises(HandshakeFailed):
        fresh.receive_data(auth)  # ...but its auth is bound to the old ephemeral keys


def test_truncated_handshake_waits_for_more() -> None:
    client, server = make_pair()
    hello = client.start()
    assert server.receive_data(hello[:40]) == b""
    assert server.bytes_expected == 24
    assert not server.complete
    with pytest.raises(LocalProtocolError):
        _ = server.session


def test_api_misuse_is_local_error() -> None:
    with pytest.raises(LocalProtocolError):
        ClientHandshake(b"short", CLIENT, bytes(SERVER.verify_key), seed("e"))
    client, _ = make_pair()
    client.start()
    with pytest.raises(LocalProtocolError):
        client.start()
    with pytest.raises(LocalProtocolError):
        client.take_leftover()


def test_invalid_server_key_point() -> None:
    with pytest.raises(HandshakeFailed, match="not a valid Ed25519"):
        ClientHandshake(NETWORK, CLIENT, (2).to_bytes(32, "little"), seed("e"))


@given(st.lists(st.binary(max_size=200), max_size=6))
def test_server_fed_arbitrary_bytes_raises_only_remote_errors(chunks: list[bytes]) -> None:
    server = ServerHandshake(NETWORK, SERVER, seed("server eph"))
    try:
        for chunk in chunks:
            server.receive_data(chunk)
    except RemoteProtocolError:
        return
    assert not server.complete


@given(st.lists(st.binary(max_size=200), max_size=6))
def test_client_fed_arbitrary_bytes_raises_only_remote_errors(chunks: list[bytes]) -> None:
    client, _ = make_pair()
    client.start()
    try:
        for chunk in chunks:
            client.receive_data(chunk)
    except RemoteProtocolError:
        return
    assert not client.complete


@given(st.data())
def test_mutated_real_handshake_is_rejected_or_harmless(data: st.DataObject) -> None:
    client, server = make_pair()
    hello = bytearray(client.start())
    position = data.draw(st.integers(0, len(hello) - 1))
    hello[position] ^= data.draw(st.integers(1, 255))
    with pytest.raises(HandshakeFailed):
        server.receive_data(bytes(hello))
