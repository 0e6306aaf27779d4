"""Peer and listen addresses: `PUBLIC_KEY@HOST:PORT` and `HOST:PORT`, parsed and printed."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PeerAddress:
    """A peer to dial: its Ed25519 public key and where it listens."""

    public_key: bytes
    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> PeerAddress:
        """Parse `PUBKEY_HEX@HOST:PORT`."""
        key_text, sep, address = text.strip().partition("@")
        if not sep:
            raise ValueError(f"expected PUBLIC_KEY@HOST:PORT, got {text!r}")
        try:
            key = bytes.fromhex(key_text)
        except ValueError:
            raise ValueError(f"public key {key_text!r} is not hex") from None
        if len(key) != 32:
            raise ValueError(f"public key must be 32 bytes (64 hex digits), got {len(key)}")
        host, port = parse_host_port(address)
        return cls(key, host, port)

    @property
    def address(self) -> str:
        return format_host_port(self.host, self.port)

    def __str__(self) -> str:
        return f"{self.public_key.hex()}@{self.address}"


def parse_host_port(text: str) -> tuple[str, int]:
    """`HOST:PORT` or `[IPv6]:PORT`; port 0 asks the OS for a free port."""
    host, sep, port_text = text.strip().rpartition(":")
    if not sep or not host:
        raise ValueError(f"expected HOST:PORT, got {text!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        port = int(port_text)
    except ValueError:
        raise ValueError(f"port {port_text!r} is not a number") from None
    if not 0 <= port <= 65535:
        raise ValueError(f"port {port} is out of range 0..65535")
    return host, port


def format_host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
