"""The [network] and [limits] sections: where a node listens, whom it dials, what it bounds."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from node.config.addresses import PeerAddress, parse_host_port
from node.config.fields import ConfigError, setting

DEFAULT_PORT = 7420


def address(value: Any, where: str) -> str:
    """A HOST:PORT setting, checked (ConfigError names the key)."""
    if not isinstance(value, str):
        raise ConfigError(f"{where}: expected a string HOST:PORT")
    try:
        parse_host_port(value)
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    return value


def _peers(value: Any, where: str) -> tuple[PeerAddress, ...]:
    if not isinstance(value, list):
        raise ConfigError(f"{where}: expected a list of PUBLIC_KEY@HOST:PORT strings")
    peers = []
    for index, item in enumerate(value):
        if not isinstance(item, str):
            raise ConfigError(f"{where}[{index}]: expected a string PUBLIC_KEY@HOST:PORT")
        try:
            peers.append(PeerAddress.parse(item))
        except ValueError as exc:
            raise ConfigError(f"{where}[{index}]: {exc}") from None
    return tuple(peers)


def _show_peers(peers: tuple[PeerAddress, ...]) -> list[str]:
    return [str(peer) for peer in peers]


def _keys(value: Any, where: str) -> tuple[bytes, ...]:
    if not isinstance(value, list):
        raise ConfigError(f"{where}: expected a list of public keys (64 hex digits each)")
    keys = []
    for index, item in enumerate(value):
        try:
            key = bytes.fromhex(item) if isinstance(item, str) else b""
        except ValueError:
            key = b""
        if len(key) != 32:
            raise ConfigError(f"{where}[{index}]: expected a public key of 64 hex digits")
        keys.append(key)
    return tuple(keys)


def _show_keys(keys: tuple[bytes, ...]) -> list[str]:
    return [key.hex() for key in keys]


@dataclass(frozen=True)
class NetworkConfig:
    listen: str = setting(
        f"127.0.0.1:{DEFAULT_PORT}",
        "Address this node listens on (HOST:PORT; port 0 picks a free port).",
        parse=address,
    )
    advertise: str | None = setting(
        None,
        "Address peers dial to reach this node; needed when listen is 0.0.0.0.",
        parse=address,
        example='"192.0.2.10:7420"',
    )
    bootstrap: tuple[PeerAddress, ...] = setting(
        (),
        'Peers to contact at start: "PUBLIC_KEY_HEX@HOST:PORT" (see `medvault id`).',
        parse=_peers,
        show=_show_peers,
    )
    authorities: tuple[bytes, ...] = setting(
        (),
        "Public keys (hex) of the network's membership authorities: a peer must show a"
        " certificate one of them signed (`medvault admit`). Empty: an open network, where"
        " anyone with the network key is a member.",
        parse=_keys,
        show=_show_keys,
    )
    revoked: tuple[bytes, ...] = setting(
        (),
        "Public keys (hex) of nodes no longer members: refused at connect and dropped"
        " within a minute, whatever their certificates say (restart to apply). In a"
        " certified network prefer `medvault membership revoke`: signed once, gossiped.",
        parse=_keys,
        show=_show_keys,
    )


@dataclass(frozen=True)
class Limits:
    max_connections: int = setting(256, "Connections kept open at once.", low=1, high=100_000)
    max_handshakes: int = setting(32, "Handshakes allowed in progress at once.", low=1, high=10_000)
    max_handshakes_per_host: int = setting(
        8,
        "Handshakes allowed in progress at once from one source address (a hospital's"
        " nodes behind one NAT share it).",
        low=1,
        high=10_000,
    )
    handshake_timeout: float = setting(
        10.0, "Seconds a peer has to complete the handshake.", low=0.1, high=600
    )
    call_timeout: float = setting(
        10.0, "Seconds to wait for the answer to one request.", low=0.1, high=3600
    )
    idle_timeout: float = setting(
        300.0, "Seconds an idle connection stays open.", low=1, high=86_400
    )
    max_message_bytes: int = setting(
        4 * 1024 * 1024,
        "Largest message accepted from a peer, in bytes.",
        low=64 * 1024,
        high=64 * 1024 * 1024,
    )
    max_concurrent_requests: int = setting(
        64, "Requests from one peer handled at the same time.", low=1, high=10_000
    )
    backoff_initial: float = setting(
        1.0,
        "Seconds to wait before redialing a peer that failed (jittered, doubling up to"
        " backoff_max).",
        low=0.01,
        high=3600,
    )
    backoff_max: float = setting(
        300.0, "Longest wait before redialing a failed peer, in seconds.", low=0.01, high=86_400
    )
