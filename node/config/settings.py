"""The node's config.toml: sections, parsing and validation, and the commented template.

Every setting is declared once, on its section's dataclass (node.config.fields):
validation and the template `medvault init` writes come from those
declarations. Every error names the file and the key (`network.listen: ...`),
and unknown keys are refused so a typo cannot silently fall back to a default.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from node.config.addresses import PeerAddress, format_host_port, parse_host_port
from node.config.dht import DhtConfig
from node.config.emergency import EmergencyConfig
from node.config.fields import ConfigError, only, parse_section, render_section
from node.config.gossip import GossipConfig
from node.config.http import HttpConfig
from node.config.network import Limits, NetworkConfig
from node.config.storage import StorageConfig

CONFIG_FILE = "config.toml"


@dataclass(frozen=True)
class NodeConfig:
    network: NetworkConfig = field(default_factory=NetworkConfig)
    limits: Limits = field(default_factory=Limits)
    dht: DhtConfig = field(default_factory=DhtConfig)
    gossip: GossipConfig = field(default_factory=GossipConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    http: HttpConfig = field(default_factory=HttpConfig)
    emergency: EmergencyConfig = field(default_factory=EmergencyConfig)

    @property
    def listen(self) -> str:
        return format_host_port(*parse_host_port(self.network.listen))

    @property
    def bootstrap(self) -> tuple[PeerAddress, ...]:
        return self.network.bootstrap

    def advertised(self, bound: str) -> str:
        """The address peers should dial, given the address actually bound."""
        if self.network.advertise is not None:
            return self.network.advertise
        host, _ = parse_host_port(bound)
        if host in ("0.0.0.0", "::", ""):
            raise ConfigError(
                "network.advertise is required when listening on a wildcard address"
                " (peers cannot dial 0.0.0.0); set it to this node's reachable HOST:PORT"
            )
        return bound


# (table, section class, what it is about): the file's layout, in order.
SECTIONS: tuple[tuple[str, type, str], ...] = (
    ("network", NetworkConfig, "Where this node listens and whom it dials first."),
    ("dht", DhtConfig, "The Kademlia DHT that finds nodes and shard holders."),
    ("storage", StorageConfig, "Records: site, erasure code, quota, repair."),
    ("gossip", GossipConfig, "Replication of the ledger between nodes."),
    ("limits", Limits, "Per-connection and per-peer bounds."),
    ("http", HttpConfig, "The HTTP API for EHRs (FHIR / IHE MHD), monitoring and operators."),
    ("emergency", EmergencyConfig, "Break-glass access to this node's records (emergency.md)."),
)


def config_text(config: NodeConfig) -> str:
    """The commented config.toml that `medvault init` writes, holding `config`'s values."""
    header = "# medvault node configuration. Restart the node after editing.\n"
    sections = [render_section(name, doc, getattr(config, name)) for name, _, doc in SECTIONS]
    return "\n".join([header, *sections])


def load_config(path: Path) -> NodeConfig:
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path} does not exist (run `medvault init`)") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    try:
        config = parse_config(raw)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    if "listen" not in raw.get("network", {}):  # an empty or truncated file, not the defaults
        raise ConfigError(
            f"{path}: network.listen is missing (the [network] section needs"
            ' listen = "HOST:PORT"; `medvault init` writes it)'
        )
    return config


MESSAGE_OVERHEAD = 64 * 1024  # room a shard message needs beside its blocks


def parse_config(raw: dict[str, Any]) -> NodeConfig:
    only(raw, {name for name, _, _ in SECTIONS}, "")
    config = NodeConfig(
        **{name: parse_section(cls, raw.get(name, {}), name) for name, cls, _ in SECTIONS}
    )
    check_message_sizes(config)
    return config


def check_message_sizes(config: NodeConfig) -> None:
    """Shard transfers must fit the largest message a node accepts (every node's, so
    keep limits.max_message_bytes alike across a network)."""
    storage, cap = config.storage, config.limits.max_message_bytes
    block = -(-storage.segment_size // storage.k)
    if block + MESSAGE_OVERHEAD > cap:
        raise ConfigError(
            f"storage.segment_size / storage.k is {block} bytes per block, more than a message"
            f" may carry (limits.max_message_bytes = {cap}); use a smaller segment_size or a"
            " larger k"
        )
    if storage.transfer_batch_bytes + MESSAGE_OVERHEAD > cap:
        raise ConfigError(
            f"storage.transfer_batch_bytes ({storage.transfer_batch_bytes}; the default is"
            f" 3 MiB since 2026-12) does not fit a message (limits.max_message_bytes = {cap});"
            f" set transfer_batch_bytes to at most {cap - MESSAGE_OVERHEAD} or raise the limit"
        )
