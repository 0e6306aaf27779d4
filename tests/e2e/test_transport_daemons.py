"""Real daemons on 127.0.0.1, driven through the CLI: handshake, RPC, refusal, clean stop."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from node.config.datadir import DataDir
from node.sim.localnet import Daemon, medvault

pytestmark = pytest.mark.slow


def init(path: Path, *args: str) -> dict[str, str]:
    medvault("init", "--data-dir", str(path), "--listen", "127.0.0.1:0", *args)
    info = json.loads(medvault("id", "--data-dir", str(path), "--json").stdout)
    assert isinstance(info, dict)
    return info


def test_two_daemons_handshake_and_exchange_rpcs(tmp_path: Path, daemons: list[Daemon]) -> None:
    a_info = init(tmp_path / "a", "--new-network")
    a = Daemon(tmp_path / "a")
    daemons.append(a)
    a.start()
    a_address = a.wait_for("listening")["address"]
    assert a_address.startswith("127.0.0.1:")

    peer = f"{a_info['public_key']}@{a_address}"
    authority = DataDir(tmp_path / "a").config().network.authorities[0].hex()
    network_key = str(tmp_path / "a" / "network.key")
    b_info = init(
        tmp_path / "b", "--network-key", network_key, "--authority", authority,
        "--bootstrap", peer,
    )  # fmt: skip
    admitted = tmp_path / "b.cert"
    medvault("admit", b_info["public_key"], "--site", "b", "--data-dir", str(tmp_path / "a"),
             "-o", str(admitted))  # fmt: skip
    medvault("certificate", "install", str(admitted), "--data-dir", str(tmp_path / "b"))
    b = Daemon(tmp_path / "b")
    daemons.append(b)
    b.start()
    reached = b.wait_for("peer reachable")
    assert reached["peer"] == a_info["public_key"][:16] and reached["ping_ms"] >= 0
    assert a.wait_for("accepted")["peer"]

    # A node of another network cannot get in; A keeps serving.
    init(tmp_path / "c", "--new-network", "--bootstrap", peer)
    c = Daemon(tmp_path / "c")
    daemons.append(c)
    c.start()
    assert "handshake" in c.wait_for("dial failed")["reason"]
    assert c.wait_for("bootstrap peer unreachable")
    assert a.wait_for("handshake failed")

    # A member of the network key without a certificate (its config trusts no authority,
    # so it starts) is refused after the handshake; it gets no answer to anything.
    init(tmp_path / "d", "--network-key", network_key, "--bootstrap", peer)
    d = Daemon(tmp_path / "d")
    daemons.append(d)
    d.start()
    assert d.wait_for("bootstrap peer unreachable")
    refused = a.wait_for("refused")
    assert refused["reason"] == "no valid membership certificate"
    assert refused["peer"] == d.wait_for("starting")["public_key"][:16]

    assert [x.stop() for x in (d, c, b, a)] == [0, 0, 0, 0]
    for daemon in (a, b, c, d):
        assert daemon.events[-1]["event"] == "stopped"

    # No secret appears in any log line.
    secrets = []
    for name in ("a", "b", "c", "d"):
        data = DataDir(tmp_path / name)
        secrets += [data.network_key().hex(), bytes(data.identity()).hex()]
    secrets.append((tmp_path / "a" / "authority.key").read_text().split()[-1])
    logs = "".join(a.raw_lines + b.raw_lines + c.raw_lines + d.raw_lines)
    assert not any(secret in logs for secret in secrets)


def test_cli_refuses_what_an_operator_must_fix(tmp_path: Path) -> None:
    result = medvault("init", "--data-dir", str(tmp_path / "x"), check=False)
    assert result.returncode != 0 and "exactly one of" in result.stderr
    init(tmp_path / "x", "--new-network")
    again = medvault("init", "--data-dir", str(tmp_path / "x"), "--new-network", check=False)
    assert again.returncode == 1 and "already initialised" in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1
    (tmp_path / "x" / "identity.key").chmod(0o644)
    run = medvault("run", "--data-dir", str(tmp_path / "x"), check=False)
    assert run.returncode == 1 and "chmod 600" in run.stderr
    missing = medvault("id", "--data-dir", str(tmp_path / "nowhere"), check=False)
    assert missing.returncode == 1 and "medvault init" in missing.stderr
