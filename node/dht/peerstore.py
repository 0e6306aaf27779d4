"""The routing table on disk: `peers.json`, so a restarted node can rejoin alone.

A versioned JSON list of (public key, address), written to a temporary file,
fsync'd and renamed into place. A file that cannot be read is moved aside
(`peers.json.unreadable`) and reported; it is derived state, so the node
starts with its configured bootstrap peers instead of refusing to start.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from protocol.dht.contact import ContactInfo

PEERS_FILE = "peers.json"
_VERSION = 1

Entries = list[tuple[bytes, str]]


class UnreadablePeers(Exception):
    """peers.json is malformed; it was moved aside."""


def save_peers(path: Path, entries: Entries) -> None:
    document = {
        "version": _VERSION,
        "contacts": [{"public_key": key.hex(), "address": address} for key, address in entries],
    }
    temporary = path.with_name(path.name + ".tmp")
    with open(temporary, "w", encoding="utf-8") as handle:
        json.dump(document, handle, indent=1)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    directory = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def load_peers(path: Path) -> Entries:
    """The saved contacts ([] when there is no file yet)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    try:
        return _parse(json.loads(text))
    except (ValueError, TypeError, KeyError) as exc:
        aside = path.with_name(path.name + ".unreadable")
        os.replace(path, aside)
        raise UnreadablePeers(f"{path} is unreadable ({exc}); moved to {aside.name}") from None


def _parse(document: object) -> Entries:
    if not isinstance(document, dict) or document.get("version") != _VERSION:
        raise ValueError("not a version 1 peers file")
    entries = []
    for item in document["contacts"]:
        info = ContactInfo(bytes.fromhex(item["public_key"]), str(item["address"]))
        entries.append((info.public_key, info.address))
    return entries
