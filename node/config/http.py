"""The [http] section: the HTTP API (FHIR, JSON, /metrics, the status page); off unless set."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from node.config.addresses import parse_host_port
from node.config.fields import ConfigError, setting
from node.config.network import address as _address

LOOPBACK_HOSTS = ("127.0.0.1", "::1", "localhost")


def _path(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where}: expected the path of a PEM file")
    return value


@dataclass(frozen=True)
class HttpConfig:
    listen: str | None = setting(
        None,
        "HOST:PORT the HTTP API listens on (FHIR under /fhir, JSON under /v1, /metrics and"
        " the status page at /); unset: no HTTP server. Every request needs a bearer token"
        " (`medvault http token new`). Keep it on 127.0.0.1 unless tls_cert and tls_key are set.",
        parse=_address,
        example='"127.0.0.1:8080"',
    )
    tls_cert: str | None = setting(
        None,
        "PEM certificate chain for HTTPS (with tls_key); unset: plain HTTP.",
        parse=_path,
        example='"/etc/medvault/http-cert.pem"',
    )
    tls_key: str | None = setting(
        None,
        "PEM private key of tls_cert (readable by the node's user only).",
        parse=_path,
        example='"/etc/medvault/http-key.pem"',
    )
    public_status: bool = setting(
        False,
        "Serve the status page (/) without a token, to clients on this machine only.",
    )
    max_bundle_bytes: int = setting(
        64 * 1024 * 1024,
        "Largest FHIR request body (an ITI-65 Bundle carries its document base64-encoded in"
        " JSON, so it is held in memory); larger documents go through POST /v1/records, which"
        " streams.",
        low=1024,
        high=1024 * 1024 * 1024,
    )

    def __post_init__(self) -> None:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key are set together or not at all")

    @property
    def loopback_only(self) -> bool:
        """Whether the listen address is this machine's only."""
        return self.listen is not None and parse_host_port(self.listen)[0] in LOOPBACK_HOSTS
