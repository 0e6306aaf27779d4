"""A compromised member, built from the project's own modules, for attack tests.

`python -m node.sim.adversary LIE[,LIE...] -- medvault-args...` runs the
ordinary daemon (or any medvault command) with some of its honest code
replaced by a lie, so end-to-end tests can watch real honest daemons deal
with a member that has the network key and a valid certificate. The same
lies patch a single in-process node (`lie_on(node, ...)`) for cluster tests.

Lies:
- `fake-storage`: acknowledge every block and claim every index complete, but
  keep nothing (the attack that made "successful" puts unreadable); storage
  proofs (asked apart or with the last batch) are answered with made-up hashes.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

from node.assembly import Node
from node.cli.main import main as medvault
from node.net.rpc_port import Caller
from node.records.intake import ShardIntake
from node.records.proving import Challenges
from node.records.scrub import Scrubber
from protocol.records.messages import ProveShards, ProveShardsV2, ShardsProven, StoreShards
from storage.codec.manifest import Manifest


def _keep_nothing(self: ShardIntake, message: StoreShards, sender: bytes) -> Any:
    """Check and note the batch like an honest holder, but store no block."""
    manifest = self._accept_manifest(message)
    raw = manifest.encode() if message.manifest is not None and manifest is not None else None
    added = self.holdings.begin(message.record_id, raw, message.index, self.clock_ms(), sender)
    return manifest, len(message.blocks), added


def _keep_nothing_whole(
    self: ShardIntake, manifest: Manifest, message: StoreShards, sender: bytes
) -> Any:
    """A whole index in one batch: noted and claimed complete, no block stored."""
    raw = manifest.encode()
    added = self.holdings.begin(message.record_id, raw, message.index, self.clock_ms(), sender)
    self.holdings.complete(message.record_id, message.index)
    return len(message.blocks), added, True


def _claim_complete(self: ShardIntake, manifest: Manifest, index: int) -> Any:
    self.holdings.complete(manifest.record_id, index)
    return True, 0


async def _make_up_proofs(self: Challenges, message: ProveShards, caller: Caller) -> Any:
    return ShardsProven(tuple(os.urandom(32) for _ in message.segments))


def _make_up_batch_proofs(
    self: ShardIntake,
    message: StoreShards,
    nonce: bytes,
    segments: tuple[int, ...],
    version: int,
) -> Any:
    return tuple(os.urandom(32) for _ in segments)


def _never_demote(self: Scrubber, record_id: bytes, index: int) -> None:
    return None


# The parts of a ShardService (its attribute names) and their classes.
PARTS: dict[str, type] = {"intake": ShardIntake, "challenges": Challenges, "scrubber": Scrubber}

# lie -> (part, method) -> what replaces the honest method.
LIES: dict[str, dict[tuple[str, str], Callable[..., Any]]] = {
    "fake-storage": {
        ("intake", "_store_blocks"): _keep_nothing,
        ("intake", "_finish"): _claim_complete,
        ("intake", "_store_whole"): _keep_nothing_whole,
        ("challenges", "_on_prove"): _make_up_proofs,
        ("intake", "_batch_proofs"): _make_up_batch_proofs,
        ("scrubber", "demote_on_read"): _never_demote,
        ("scrubber", "_scrub"): lambda self, manifest, indices: [],
    },
}


# Handlers are bound when a service installs its routes: these are routed anew.
_HANDLERS = {"_on_prove": (ProveShards, ProveShardsV2)}


def lie_on(node: Node, *lies: str) -> None:
    """Make one in-process node tell `lies`."""
    for lie in lies:
        for (part, name), function in LIES[lie].items():
            target = getattr(node.shards, part)
            bound = function.__get__(target)
            setattr(target, name, bound)
            for kind in _HANDLERS.get(name, ()):
                node.dispatcher._routes[kind] = bound


def patch_class(*lies: str) -> None:
    """Make every ShardService in this process tell `lies`."""
    for lie in lies:
        for (part, name), function in LIES[lie].items():
            setattr(PARTS[part], name, function)


def main() -> None:
    if len(sys.argv) < 3 or sys.argv[2] != "--":
        sys.exit("usage: python -m node.sim.adversary LIE[,LIE...] -- medvault-args...")
    lies = sys.argv[1].split(",")
    unknown = [lie for lie in lies if lie not in LIES]
    if unknown:
        sys.exit(f"unknown lie {unknown[0]!r}; known: {', '.join(LIES)}")
    patch_class(*lies)
    sys.argv = ["medvault", *sys.argv[3:]]
    medvault()


if __name__ == "__main__":
    main()
