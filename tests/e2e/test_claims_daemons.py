"""Claim events with real daemons: a patient shares her record with an insurer's address
and attests it; the insurer's `events --as` receives exactly one claim event (also with
`--follow`) and verifies it offline; one altered byte is rejected; a clinician's
attestation makes no event; an insurer without a grant receives nothing; the event carries
the owner's certificate and verifies with the network's authority key."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from node.sim.localnet import Daemon, Network, medvault
from tests.e2e.polling import wait_until

pytestmark = pytest.mark.slow

NODES = 4


def events(net: Network, index: int, key: Path) -> list[dict[str, Any]]:
    done = net.run(index, "events", "--as", str(key), "--json")
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


def canonical(event: dict[str, Any]) -> bytes:
    shown = {k: v for k, v in event.items() if k != "hash"}
    return json.dumps(shown, sort_keys=True, separators=(",", ":")).encode()


def test_the_insurer_receives_one_claim_and_verifies_it(
    tmp_path: Path, daemons: list[Daemon]
) -> None:
    net = Network(tmp_path / "net", NODES, {"storage": {"k": 2, "n": 4, "happy": 3},
                                            "gossip": {"interval": 0.5}})  # fmt: skip
    daemons.extend(net.nodes)
    net.start_all()
    keys = {n: tmp_path / f"{n}.key" for n in ("alice", "insurer", "nurse", "other")}
    for path in keys.values():
        medvault("keys", "new", "-o", str(path))
    address = {n: medvault("keys", "address", str(k)).stdout.strip() for n, k in keys.items()}
    source = tmp_path / "scan.bin"
    source.write_bytes(os.urandom(30_000))
    record = net.cli(0, "put", str(source), "--patient", address["alice"], "--grant",
                     address["nurse"])["record_id"]  # fmt: skip

    def wallet_sees(index: int, who: str) -> Callable[[], bool]:
        def check() -> bool:
            listed = net.cli(index, "wallet", "ls", "--as", str(keys[who]))["records"]
            return any(r["record_id"] == record and r["current"] for r in listed)

        return check

    wait_until("her wallet finds the record at node 1", wallet_sees(1, "alice"))
    net.cli(1, "wallet", "share", record, address["insurer"], "--as", str(keys["alice"]))
    wait_until("the insurer's grant reaches node 2", wallet_sees(2, "insurer"))

    # The insurer follows the ledger before anything is attested.
    follow = subprocess.Popen(
        [sys.executable, "-m", "node", "events", "--as", str(keys["insurer"]), "--follow",
         "--interval", "0.5", "--json", "--data-dir", str(net.nodes[2].data_dir)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        attested = net.cli(1, "wallet", "attest", record, "--as", str(keys["alice"]))
        wait_until("the nurse's grant reaches node 3", wallet_sees(3, "nurse"))
        net.cli(3, "wallet", "attest", record, "--as", str(keys["nurse"]))  # no patient
        assert follow.stdout is not None
        first = json.loads(follow.stdout.readline())  # blocks until the event arrives
    finally:
        follow.send_signal(signal.SIGINT)
        rest, errors = follow.communicate(timeout=60)
    assert follow.returncode == 0, errors
    assert rest == ""  # exactly one event: the nurse's claim made none
    assert first["patient_key"] == attested["grant_key"] and first["record_id"] == record

    wait_until("the nurse's claim reaches node 2", lambda: len(events(net, 2, keys["nurse"])) == 1)
    (event,) = events(net, 2, keys["insurer"])
    assert event == first
    assert events(net, 2, keys["other"]) == []  # no grant: nothing

    good = tmp_path / "event.json"
    good.write_bytes(canonical(event) + b"\n")
    done = medvault("events", "verify", str(good), check=False)
    assert done.returncode == 0, done.stderr
    assert event["hash"] in done.stdout
    # It carries the owner's certificate (node 2 met node 0): the site is proven with the
    # network's authority key, and another authority's key is refused.
    assert event["certificate"] is not None and event["provider"]["site"]
    done = medvault("events", "verify", str(good), "--authority", net.authority, check=False)
    assert done.returncode == 0, done.stderr
    done = medvault("events", "verify", str(good), "--authority", "ab" * 32, check=False)
    assert done.returncode == 1 and "not signed by that authority" in done.stderr
    text = canonical(event)
    for position in (10, len(text) // 2, len(text) - 5):
        altered = bytearray(text)
        altered[position] ^= 0x01
        bad = tmp_path / f"altered-{position}.json"
        bad.write_bytes(bytes(altered))
        done = medvault("events", "verify", str(bad), check=False)
        assert done.returncode == 1 and "invalid" in done.stderr
