from __future__ import annotations

import json
from pathlib import Path

import pytest

from node.dht.peerstore import UnreadablePeers, load_peers, save_peers


def test_round_trip_and_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "peers.json"
    assert load_peers(path) == []
    entries = [(bytes([i]) * 32, f"10.0.0.{i}:7420") for i in range(1, 4)]
    save_peers(path, entries)
    assert load_peers(path) == entries
    assert not (tmp_path / "peers.json.tmp").exists()


@pytest.mark.parametrize(
    "content",
    [
        "not json",
        json.dumps({"version": 2, "contacts": []}),
        json.dumps({"version": 1, "contacts": [{"public_key": "zz", "address": "h:1"}]}),
        json.dumps({"version": 1, "contacts": [{"public_key": "ab" * 32, "address": "nocolon"}]}),
        json.dumps({"version": 1}),
    ],
)
def test_unreadable_file_is_moved_aside(tmp_path: Path, content: str) -> None:
    path = tmp_path / "peers.json"
    path.write_text(content)
    with pytest.raises(UnreadablePeers, match=r"moved to peers\.json\.unreadable"):
        load_peers(path)
    assert not path.exists() and (tmp_path / "peers.json.unreadable").read_text() == content
    assert load_peers(path) == []
