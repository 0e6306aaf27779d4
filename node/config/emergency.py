"""The [emergency] section: who may break the glass on this node's records (default: nobody)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from node.config.fields import ConfigError, setting
from node.config.network import _keys, _show_keys
from protocol.emergency.policy import Policy

MAX_SITE = 64


def _sites(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(
        isinstance(s, str) and 0 < len(s) <= MAX_SITE for s in value
    ):
        raise ConfigError(f"{where}: expected a list of site names (1..{MAX_SITE} characters)")
    return tuple(value)


@dataclass(frozen=True)
class EmergencyConfig:
    allowed_sites: tuple[str, ...] = setting(
        (),
        "Certified sites (the site in a node's membership certificate) whose nodes may ask"
        " for break-glass access to this node's records. Empty with allowed_nodes empty:"
        " nobody may (the default), so an operator turns it on knowingly.",
        parse=_sites,
        show=list,
    )
    allowed_nodes: tuple[bytes, ...] = setting(
        (),
        "Node public keys (64 hex digits) that may ask for break-glass access.",
        parse=_keys,
        show=_show_keys,
    )
    max_duration: float = setting(
        12 * 3600.0,
        "Longest emergency grant in seconds; a request for more gets this much.",
        low=1.0,
        high=30 * 86400.0,
    )
    require_approval: bool = setting(
        False,
        "Queue allowed requests until an operator runs `medvault emergency approve ID`"
        " (false: grant at once, flagged for review until signed off).",
    )
    max_pending: int = setting(
        200, "Requests the approval queue holds in all (more are refused).", low=1, high=100_000
    )
    max_pending_per_requester: int = setting(
        20, "Requests the approval queue holds per requesting node.", low=1, high=10_000
    )
    max_grants_per_hour: int = setting(
        100,
        "Emergency grants written per requesting node in any hour (more are refused).",
        low=1,
        high=100_000,
    )

    @property
    def policy(self) -> Policy:
        return Policy(
            allowed_sites=frozenset(self.allowed_sites),
            allowed_nodes=frozenset(self.allowed_nodes),
            max_duration_ms=int(self.max_duration * 1000),
            require_approval=self.require_approval,
        )
