"""A DHT contact: a node's public key and where it listens.

`Contact` is a `kademlia.node.Node` (id, long_id, distance), so the kademlia
package's `KBucket` and `NodeHeap` work on it unchanged; it adds the Ed25519
public key the id is derived from. On the wire a contact is only
`ContactInfo(public_key, address)`: ids are recomputed, never trusted.
"""

from __future__ import annotations

from dataclasses import dataclass

from kademlia.node import Node

from protocol.ids import NODE_ID_SIZE, PUBLIC_KEY_SIZE, node_id

MAX_ADDRESS_LENGTH = 255


@dataclass(frozen=True)
class ContactInfo:
    """Wire form of a contact."""

    public_key: bytes
    address: str

    def __post_init__(self) -> None:
        if len(self.public_key) != PUBLIC_KEY_SIZE:
            raise ValueError(f"contact public key must be {PUBLIC_KEY_SIZE} bytes")
        if not 0 < len(self.address) <= MAX_ADDRESS_LENGTH or ":" not in self.address:
            raise ValueError("contact address must be HOST:PORT")


class Contact(Node):  # type: ignore[misc]
    """A routing-table entry; equal when the public key is equal."""

    def __init__(self, public_key: bytes, address: str, *, info: ContactInfo | None = None) -> None:
        self._info = info if info is not None else ContactInfo(public_key, address)  # validates
        super().__init__(node_id(public_key), address, None)
        self.public_key = public_key
        self.address = address
        self.node_id: bytes = self.id

    @classmethod
    def from_info(cls, info: ContactInfo) -> Contact:
        """A contact from an already validated wire contact."""
        return cls(info.public_key, info.address, info=info)

    def info(self) -> ContactInfo:
        return self._info

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Contact) and other.public_key == self.public_key

    def __hash__(self) -> int:
        return hash(self.public_key)

    def __repr__(self) -> str:
        return f"Contact({self.public_key.hex()[:16]}@{self.address})"


def target_node(target: bytes) -> Node:
    """A bare kademlia Node for a lookup target (a 160-bit key)."""
    if len(target) != NODE_ID_SIZE:
        raise ValueError(f"a DHT key is {NODE_ID_SIZE} bytes, got {len(target)}")
    return Node(target)


def distance(a: bytes, b: bytes) -> int:
    """XOR distance of two 160-bit ids."""
    return int.from_bytes(a, "big") ^ int.from_bytes(b, "big")
