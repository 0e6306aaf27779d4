"""Membership through the command: a new network certifies its first node, an admin admits
the others, and a node without a valid certificate, or a site other than its
certificate's, will not start (one line naming what to do)."""

from __future__ import annotations

import json
import os
import stat
import time
import tomllib
from pathlib import Path

from click.testing import CliRunner, Result

from node.cli.main import cli
from node.config.datadir import DataDir
from node.daemon import open_membership
from node.sim.localnet import configure
from protocol.membership.certificate import from_text
from protocol.membership.revocation import from_text as revocation_from_text


def medvault(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


def new_network(tmp_path: Path) -> dict[str, object]:
    made = medvault(
        "init", "--data-dir", str(tmp_path / "a"), "--new-network", "--site", "hospital-a",
        "--json",
    )  # fmt: skip
    assert made.exit_code == 0, made.output
    return dict(json.loads(made.stdout))


def join(tmp_path: Path, name: str, authority: str) -> str:
    made = medvault(
        "init", "--data-dir", str(tmp_path / name),
        "--network-key", str(tmp_path / "a" / "network.key"), "--authority", authority,
        "--json",
    )  # fmt: skip
    assert made.exit_code == 0, made.output
    return str(json.loads(made.stdout)["public_key"])


def test_a_new_network_makes_its_authority_and_certifies_its_first_node(tmp_path: Path) -> None:
    made = new_network(tmp_path)
    authority_key = Path(str(made["authority_key"]))
    assert authority_key == tmp_path / "a" / "authority.key"
    assert stat.S_IMODE(authority_key.stat().st_mode) == 0o600
    config = tomllib.loads((tmp_path / "a" / "config.toml").read_text())
    assert config["network"]["authorities"] == made["authorities"]
    data_dir = DataDir(tmp_path / "a")
    cert = data_dir.certificate()
    assert cert is not None and cert.site == "hospital-a"
    assert cert.node_key.hex() == made["public_key"]
    membership = open_membership(data_dir, data_dir.config(), cert.node_key)
    assert membership is not None and membership.own == cert


def test_an_admin_admits_a_joining_node_which_then_starts(tmp_path: Path) -> None:
    made = new_network(tmp_path)
    authorities = made["authorities"]
    assert isinstance(authorities, list)
    key = join(tmp_path, "b", authorities[0])
    data_dir = DataDir(tmp_path / "b")
    refused = medvault("run", "--data-dir", str(tmp_path / "b"))
    assert refused.exit_code == 1
    assert "admits only certified nodes" in refused.stderr
    assert "medvault admit" in refused.stderr and len(refused.stderr.splitlines()) == 1
    cert_file = tmp_path / "b.cert"
    admitted = medvault(
        "admit", key, "--site", "hospital-b", "--expires", "365d",
        "--data-dir", str(tmp_path / "a"), "-o", str(cert_file), "--json",
    )  # fmt: skip
    assert admitted.exit_code == 0, admitted.output
    assert json.loads(admitted.stdout)["site"] == "hospital-b"
    installed = medvault(
        "certificate", "install", str(cert_file), "--data-dir", str(tmp_path / "b")
    )
    assert installed.exit_code == 0, installed.output
    cert = data_dir.certificate()
    assert cert is not None and cert.site == "hospital-b" and cert.expires_at > cert.issued_at
    membership = open_membership(data_dir, data_dir.config(), bytes.fromhex(key))
    assert membership is not None and membership.own.site == "hospital-b"
    shown = medvault("certificate", "show", "--data-dir", str(tmp_path / "b"), "--json")
    assert json.loads(shown.stdout)["node_key"] == key


def test_certificates_of_another_network_or_key_are_refused(tmp_path: Path) -> None:
    made = new_network(tmp_path)
    authorities = made["authorities"]
    assert isinstance(authorities, list)
    key = join(tmp_path, "b", authorities[0])
    other = medvault("authority", "new", "-o", str(tmp_path / "rogue.key"))
    assert other.exit_code == 0, other.output
    foreign = tmp_path / "foreign.cert"
    medvault(
        "admit", key, "--site", "x", "--authority-key", str(tmp_path / "rogue.key"),
        "-o", str(foreign),
    )  # fmt: skip
    refused = medvault("certificate", "install", str(foreign), "--data-dir", str(tmp_path / "b"))
    assert refused.exit_code == 1 and "not signed by an authority" in refused.stderr
    someone_else = tmp_path / "a.cert"
    medvault(
        "admit", str(made["public_key"]), "--site", "x", "--data-dir", str(tmp_path / "a"),
        "-o", str(someone_else),
    )  # fmt: skip
    refused = medvault(
        "certificate", "install", str(someone_else), "--data-dir", str(tmp_path / "b")
    )
    assert refused.exit_code == 1 and "not this node's" in refused.stderr


def test_a_configured_site_other_than_the_certificates_stops_the_start(tmp_path: Path) -> None:
    new_network(tmp_path)
    config = tmp_path / "a" / "config.toml"
    config.write_text(config.read_text().replace('site = "hospital-a"', 'site = "hospital-z"'))
    refused = medvault("run", "--data-dir", str(tmp_path / "a"))
    assert refused.exit_code == 1 and "the certificate says 'hospital-a'" in refused.stderr


def test_a_damaged_certificate_file_is_named(tmp_path: Path) -> None:
    new_network(tmp_path)
    path = tmp_path / "a" / "node.cert"
    text = path.read_text()
    path.write_text(text[:-12] + "AAAAAAAAAAA\n")
    refused = medvault("run", "--data-dir", str(tmp_path / "a"))
    assert refused.exit_code == 1 and str(path) in refused.stderr
    assert from_text(text) is not None


def test_admit_needs_an_authority_key_and_a_site(tmp_path: Path) -> None:
    key = os.urandom(32).hex()
    nothing = medvault("admit", key, "--site", "s", "--data-dir", str(tmp_path / "none"))
    assert nothing.exit_code != 0
    made = new_network(tmp_path)
    bad_site = medvault("admit", key, "--site", "a\nb", "--data-dir", str(tmp_path / "a"))
    assert bad_site.exit_code == 2 and "--site" in bad_site.stderr
    assert made["new_network"] is True


def test_an_open_network_asks_no_certificate(tmp_path: Path) -> None:
    made = medvault(
        "init", "--data-dir", str(tmp_path / "o"), "--new-network", "--open-network", "--json"
    )
    assert made.exit_code == 0, made.output
    assert json.loads(made.stdout)["authorities"] == []
    data_dir = DataDir(tmp_path / "o")
    assert data_dir.certificate() is None
    assert open_membership(data_dir, data_dir.config(), b"k" * 32) is None


def test_a_bad_init_leaves_nothing_behind(tmp_path: Path) -> None:
    bad_site = medvault(
        "init", "--data-dir", str(tmp_path / "s"), "--new-network", "--site", "a\tb"
    )
    assert bad_site.exit_code == 2 and "--site" in bad_site.stderr
    assert not (tmp_path / "s").exists()
    nowhere = medvault(
        "init", "--data-dir", str(tmp_path / "k"), "--new-network",
        "--authority-key", str(tmp_path / "missing" / "a.key"),
    )  # fmt: skip
    assert nowhere.exit_code == 1 and len(nowhere.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "k").exists()
    elsewhere = medvault(
        "init", "--data-dir", str(tmp_path / "k"), "--new-network",
        "--authority-key", str(tmp_path / "offline.key"), "--json",
    )  # fmt: skip
    assert elsewhere.exit_code == 0, elsewhere.output
    assert (tmp_path / "offline.key").exists() and not (tmp_path / "k" / "authority.key").exists()
    again = medvault("init", "--data-dir", str(tmp_path / "k"), "--new-network")
    assert again.exit_code == 1 and "already initialised" in again.stderr


def test_admit_defaults_to_a_year_tolerates_a_fast_admin_clock_and_never_follows_links(
    tmp_path: Path,
) -> None:
    new_network(tmp_path)
    key = os.urandom(32).hex()
    made = medvault("admit", key, "--site", "s", "--data-dir", str(tmp_path / "a"), "--json")
    cert = from_text(json.loads(made.stdout)["certificate"])
    now = int(time.time() * 1000)
    assert cert.issued_at <= now - 3_000_000  # valid for nodes up to an hour behind
    assert 364 * 86_400_000 < cert.expires_at - now <= 365 * 86_400_000
    forever = medvault(
        "admit", key, "--site", "s", "--expires", "never", "--data-dir", str(tmp_path / "a"),
        "--json",
    )  # fmt: skip
    assert json.loads(forever.stdout)["expires_at"] == 0
    huge = medvault(
        "admit", key, "--site", "s", "--expires", "999999999999999d",
        "--data-dir", str(tmp_path / "a"),
    )  # fmt: skip
    assert huge.exit_code == 2 and "--expires" in huge.stderr
    link = tmp_path / "link.cert"
    link.symlink_to(tmp_path / "victim.txt")
    refused = medvault(
        "admit", key, "--site", "s", "--data-dir", str(tmp_path / "a"), "-o", str(link)
    )
    assert refused.exit_code != 0 and not (tmp_path / "victim.txt").exists()


def test_revoked_keys_in_the_config_reach_the_membership(tmp_path: Path) -> None:
    made = new_network(tmp_path)
    gone = os.urandom(32)
    configure(tmp_path / "a" / "config.toml", {"network": {"revoked": [gone.hex()]}})
    data_dir = DataDir(tmp_path / "a")
    membership = open_membership(
        data_dir, data_dir.config(), bytes.fromhex(str(made["public_key"]))
    )
    assert membership is not None and membership.revoked == {gone}


def test_an_admin_signs_a_revocation_offline_and_never_over_a_file(tmp_path: Path) -> None:
    made = new_network(tmp_path)
    key = os.urandom(32).hex()
    out = tmp_path / "gone.revocation"
    signed = medvault(
        "membership", "revoke", key, "--data-dir", str(tmp_path / "a"), "-o", str(out), "--json"
    )
    assert signed.exit_code == 0, signed.output
    shown = json.loads(signed.stdout)
    revocation = revocation_from_text(out.read_text())
    assert revocation.node_key.hex() == key and shown["node_key"] == key
    assert [revocation.authority.hex()] == made["authorities"]
    again = medvault("membership", "revoke", key, "--data-dir", str(tmp_path / "a"), "-o", str(out))
    assert again.exit_code == 2 and "already exists" in again.stderr
    link = tmp_path / "link.revocation"
    link.symlink_to(tmp_path / "victim.txt")
    linked = medvault(
        "membership", "revoke", key, "--data-dir", str(tmp_path / "a"), "-o", str(link)
    )
    assert linked.exit_code != 0 and not (tmp_path / "victim.txt").exists()
    authority = str(made["authorities"][0])
    itself = medvault("membership", "revoke", authority, "--data-dir", str(tmp_path / "a"))
    assert itself.exit_code == 2 and "cannot be revoked" in itself.stderr
    bad = medvault("membership", "revoke", "abc", "--data-dir", str(tmp_path / "a"))
    assert bad.exit_code == 2 and "NODE_KEY" in bad.stderr


def test_publish_names_what_is_wrong_before_it_reaches_a_daemon(tmp_path: Path) -> None:
    new_network(tmp_path)
    junk = tmp_path / "junk.revocation"
    junk.write_text("medvault-certificate-v1:AAAA\n")
    refused = medvault("membership", "publish", str(junk), "--data-dir", str(tmp_path / "a"))
    assert refused.exit_code == 1 and "junk.revocation" in refused.stderr
    assert "starts with" in refused.stderr and len(refused.stderr.splitlines()) == 1
    good = tmp_path / "good.revocation"
    medvault(
        "membership", "revoke", os.urandom(32).hex(), "--data-dir", str(tmp_path / "a"),
        "-o", str(good),
    )  # fmt: skip
    stopped = medvault("membership", "publish", str(good), "--data-dir", str(tmp_path / "a"))
    assert stopped.exit_code == 1 and "running" in stopped.stderr
