"""The node's config.toml: defaults, parsing and validation.

Every error names the file and the key (`network.listen: ...`), and unknown
keys are refused so a typo cannot silently fall back to a default.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from node.config.addresses import PeerAddress, format_host_port, parse_host_port
from node.config.dht import DhtConfig
from node.config.gossip import GossipConfig
from node.config.storage import StorageConfig

CONFIG_FILE = "config.toml"
DEFAULT_PORT = 7420


class ConfigError(Exception):
    """The configuration is invalid; the message names the key."""


@dataclass(frozen=True)
class Limits:
    max_connections: int = 256
    max_handshakes: int = 32
    handshake_timeout: float = 10.0
    call_timeout: float = 10.0
    idle_timeout: float = 300.0
    max_message_bytes: int = 4 * 1024 * 1024
    max_concurrent_requests: int = 64
    backoff_initial: float = 1.0
    backoff_max: float = 300.0


@dataclass(frozen=True)
class NodeConfig:
    listen_host: str = "127.0.0.1"
    listen_port: int = DEFAULT_PORT
    advertise: str | None = None
    bootstrap: tuple[PeerAddress, ...] = ()
    limits: Limits = field(default_factory=Limits)
    dht: DhtConfig = field(default_factory=DhtConfig)
    gossip: GossipConfig = field(default_factory=GossipConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)

    @property
    def listen(self) -> str:
        return format_host_port(self.listen_host, self.listen_port)

    def advertised(self, bound: str) -> str:
        """The address peers should dial, given the address actually bound."""
        if self.advertise is not None:
            return self.advertise
        host, _ = parse_host_port(bound)
        if host in ("0.0.0.0", "::", ""):
            raise ConfigError(
                "network.advertise is required when listening on a wildcard address"
                " (peers cannot dial 0.0.0.0); set it to this node's reachable HOST:PORT"
            )
        return bound


_DHT_RANGES: dict[str, tuple[float, float]] = {
    "k": (1, 100),
    "alpha": (1, 20),
    "symbol_bits": (1, 8),
    "query_timeout": (0.05, 60),
    "query_attempts": (1, 5),
    "refresh_interval": (10, 86_400),
    "republish_interval": (10, 86_400),
    "record_lifetime": (60, 7 * 86_400),
}

_STORAGE_RANGES: dict[str, tuple[float, float]] = {
    "k": (1, 255),
    "n": (1, 255),
    "happy": (1, 255),
    "segment_size": (64 * 1024, 64 * 1024 * 1024),
    "quota_bytes": (0, 2**62),
    "repair_interval": (1, 7 * 86_400),
    "orphan_grace": (60, 365 * 86_400),
    "transfer_batch_bytes": (64 * 1024, 3 * 1024 * 1024),
    "call_timeout": (1, 3600),
}

_GOSSIP_RANGES: dict[str, tuple[float, float]] = {
    "interval": (0.05, 3600),
    "fanout": (1, 50),
    "push_fanout": (0, 50),
    "batch": (1, 1000),
    "budget": (1, 10_000),
    "call_timeout": (0.05, 600),
}

_LIMIT_RANGES: dict[str, tuple[float, float]] = {
    "max_connections": (1, 100_000),
    "max_handshakes": (1, 10_000),
    "handshake_timeout": (0.1, 600),
    "call_timeout": (0.1, 3600),
    "idle_timeout": (1, 86_400),
    "max_message_bytes": (64 * 1024, 64 * 1024 * 1024),
    "max_concurrent_requests": (1, 10_000),
    "backoff_initial": (0.01, 3600),
    "backoff_max": (0.01, 86_400),
}


def default_config_text(
    listen: str,
    bootstrap: list[str],
    storage: StorageConfig | None = None,
    gossip: GossipConfig | None = None,
) -> str:
    """The commented config.toml that `medvault init` writes (defaults unless given)."""
    limits = Limits()
    dht = DhtConfig()
    gossip = gossip or GossipConfig()
    storage = storage or StorageConfig()
    peers = ", ".join(f'"{p}"' for p in bootstrap)
    return f"""# medvault node configuration. Restart the node after editing.

[network]
# Address this node listens on (HOST:PORT; port 0 picks a free port).
listen = "{listen}"
# Address peers dial to reach this node; needed when listen is 0.0.0.0.
# advertise = "192.0.2.10:7420"
# Peers to contact at start: "PUBLIC_KEY_HEX@HOST:PORT" (see `medvault id`).
bootstrap = [{peers}]

[dht]
# Kademlia parameters (the paper's k and alpha) and bits per routing symbol.
k = {dht.k}
alpha = {dht.alpha}
symbol_bits = {dht.symbol_bits}
# Seconds to wait for a peer's answer in a lookup, and attempts per peer.
query_timeout = {dht.query_timeout}
query_attempts = {dht.query_attempts}
# Seconds between refreshes of idle buckets and republishing of announcements.
refresh_interval = {dht.refresh_interval}
republish_interval = {dht.republish_interval}
# Seconds a provider announcement stays valid.
record_lifetime = {dht.record_lifetime}

[storage]
# The hospital or building this node stands in; shards of one record are
# spread over distinct sites first. Empty: the node counts as its own site.
site = {json.dumps(storage.site)}
# Erasure code of new records: any k of n shards rebuild a record; a put
# succeeds only when `happy` distinct nodes confirmed their shards.
k = {storage.k}
n = {storage.n}
happy = {storage.happy}
segment_size = {storage.segment_size}
# Bytes of shard blocks this node accepts (0: only the disk limits it).
quota_bytes = {storage.quota_bytes}
# Seconds between repair passes over the records this node holds.
repair_interval = {storage.repair_interval}
# Seconds after which shards of an upload that never finished (no ledger
# entry), or of a transfer to this node that was given up, are deleted.
orphan_grace = {storage.orphan_grace}
# Bytes of shard blocks sent to a holder per call, and seconds a holder may
# take to answer one before it counts as failed.
transfer_batch_bytes = {storage.transfer_batch_bytes}
call_timeout = {storage.call_timeout}

[gossip]
# Seconds between anti-entropy rounds, and peers asked per round.
interval = {gossip.interval}
fanout = {gossip.fanout}
# Peers a new ledger entry is pushed to at once.
push_fanout = {gossip.push_fanout}
# Entries fetched per feed per exchange, and per exchange in all.
batch = {gossip.batch}
budget = {gossip.budget}

[limits]
# Connections kept open at once, and handshakes allowed in progress.
max_connections = {limits.max_connections}
max_handshakes = {limits.max_handshakes}
# Seconds: a handshake, one request, and an idle connection before closing.
handshake_timeout = {limits.handshake_timeout}
call_timeout = {limits.call_timeout}
idle_timeout = {limits.idle_timeout}
# Largest message accepted from a peer, in bytes.
max_message_bytes = {limits.max_message_bytes}
# Requests from one peer handled at the same time.
max_concurrent_requests = {limits.max_concurrent_requests}
# Seconds to wait before redialing a peer that failed, doubling up to the max.
backoff_initial = {limits.backoff_initial}
backoff_max = {limits.backoff_max}
"""


def load_config(path: Path) -> NodeConfig:
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path} does not exist (run `medvault init`)") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    try:
        return parse_config(raw)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def parse_config(raw: dict[str, Any]) -> NodeConfig:
    _only(raw, {"network", "limits", "dht", "gossip", "storage"}, "")
    network = _section(raw, "network")
    _only(network, {"listen", "advertise", "bootstrap"}, "network.")

    host, port = _address(network.get("listen", f"127.0.0.1:{DEFAULT_PORT}"), "network.listen")

    peers = network.get("bootstrap", [])
    if not isinstance(peers, list):
        raise ConfigError("network.bootstrap: expected a list of PUBLIC_KEY@HOST:PORT strings")
    bootstrap = []
    for index, item in enumerate(peers):
        where = f"network.bootstrap[{index}]"
        if not isinstance(item, str):
            raise ConfigError(f"{where}: expected a string PUBLIC_KEY@HOST:PORT")
        try:
            bootstrap.append(PeerAddress.parse(item))
        except ValueError as exc:
            raise ConfigError(f"{where}: {exc}") from None

    advertise = network.get("advertise")
    if advertise is not None:
        _address(advertise, "network.advertise")
    limits = Limits(**_numbers(raw, "limits", _LIMIT_RANGES, Limits))
    dht = DhtConfig(**_numbers(raw, "dht", _DHT_RANGES, DhtConfig))
    gossip = GossipConfig(**_numbers(raw, "gossip", _GOSSIP_RANGES, GossipConfig))
    return NodeConfig(host, port, advertise, tuple(bootstrap), limits, dht, gossip, _storage(raw))


def _storage(raw: dict[str, Any]) -> StorageConfig:
    table = dict(_section(raw, "storage"))
    site = table.pop("site", "")
    if not isinstance(site, str) or len(site) > 64:
        raise ConfigError("storage.site: expected a label of at most 64 characters")
    numbers = _numbers({"storage": table}, "storage", _STORAGE_RANGES, StorageConfig)
    try:
        return StorageConfig(site=site, **numbers)
    except ValueError as exc:
        raise ConfigError(f"storage: {exc}") from None


def _address(value: Any, where: str) -> tuple[str, int]:
    if not isinstance(value, str):
        raise ConfigError(f"{where}: expected a string HOST:PORT")
    try:
        return parse_host_port(value)
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _numbers(
    raw: dict[str, Any], name: str, ranges: dict[str, tuple[float, float]], defaults: type
) -> dict[str, Any]:
    """The numeric settings of table [name], checked against their ranges and kinds."""
    table = _section(raw, name)
    _only(table, set(ranges), f"{name}.")
    kinds = {f.name: type(f.default) for f in fields(defaults)}
    values: dict[str, Any] = {}
    for key, value in table.items():
        low, high = ranges[key]
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{name}.{key}: expected a number, got {value!r}")
        if kinds[key] is int and not isinstance(value, int):
            raise ConfigError(f"{name}.{key}: expected a whole number, got {value!r}")
        if not low <= value <= high:
            raise ConfigError(f"{name}.{key}: {value} is outside {low}..{high}")
        values[key] = float(value) if kinds[key] is float else value
    return values


def _section(raw: dict[str, Any], name: str) -> dict[str, Any]:
    section = raw.get(name, {})
    if not isinstance(section, dict):
        raise ConfigError(f"[{name}] must be a table")
    return section


def _only(table: dict[str, Any], allowed: set[str], prefix: str) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        names = ", ".join(prefix + key for key in unknown)
        raise ConfigError(f"unknown setting {names} (allowed: {', '.join(sorted(allowed))})")
