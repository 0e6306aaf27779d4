from __future__ import annotations

import os
import tomllib
from pathlib import Path

import pytest

from node.config.addresses import PeerAddress, parse_host_port
from node.config.datadir import DataDir, DataDirError
from node.config.fields import ConfigError, specs
from node.config.gossip import GossipConfig
from node.config.keyfiles import KeyFileError, KeyKind, read_secret, write_secret
from node.config.network import Limits, NetworkConfig
from node.config.settings import SECTIONS, NodeConfig, config_text, load_config, parse_config
from node.config.storage import StorageConfig


def test_key_file_round_trip_and_mode(tmp_path: Path) -> None:
    path = tmp_path / "identity.key"
    write_secret(path, KeyKind.IDENTITY, b"s" * 32)
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert read_secret(path, KeyKind.IDENTITY) == b"s" * 32


def test_key_file_is_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "identity.key"
    write_secret(path, KeyKind.IDENTITY, b"a" * 32)
    with pytest.raises(KeyFileError, match="refusing to overwrite"):
        write_secret(path, KeyKind.IDENTITY, b"b" * 32)
    assert read_secret(path, KeyKind.IDENTITY) == b"a" * 32


def test_readable_key_file_is_refused_without_leaking_it(tmp_path: Path) -> None:
    path = tmp_path / "identity.key"
    write_secret(path, KeyKind.IDENTITY, b"k" * 32)
    os.chmod(path, 0o644)
    with pytest.raises(KeyFileError, match="chmod 600") as caught:
        read_secret(path, KeyKind.IDENTITY)
    assert (b"k" * 32).hex() not in str(caught.value)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("medvault network-key v1\n" + "00" * 32 + "\n", "not a medvault identity file"),
        ("medvault identity v1\nzz\n", "not hex"),
        ("medvault identity v1\n" + "00" * 31 + "\n", "wrong length"),
        ("garbage", "not a medvault identity file"),
    ],
)
def test_malformed_key_files(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "key"
    path.write_text(content)
    os.chmod(path, 0o600)
    with pytest.raises(KeyFileError, match=message):
        read_secret(path, KeyKind.IDENTITY)


def test_missing_key_file(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="does not exist"):
        read_secret(tmp_path / "nope", KeyKind.NETWORK)


def test_peer_address_and_host_port() -> None:
    peer = PeerAddress.parse("ab" * 32 + "@127.0.0.1:7420")
    assert (peer.host, peer.port, peer.public_key) == ("127.0.0.1", 7420, bytes.fromhex("ab" * 32))
    assert PeerAddress.parse(str(peer)) == peer
    assert parse_host_port("[::1]:80") == ("::1", 80)
    for bad in ("127.0.0.1", "x:99999", "x:port", ":80"):
        with pytest.raises(ValueError):
            parse_host_port(bad)
    for bad in ("ab@1.2.3.4:5", "zz" * 32 + "@h:1", "ab" * 32):
        with pytest.raises(ValueError):
            PeerAddress.parse(bad)


def test_defaults_and_values() -> None:
    config = parse_config({})
    assert (
        config.listen == "127.0.0.1:7420" and config.bootstrap == () and config.limits == Limits()
    )
    config = parse_config(
        {
            "network": {"listen": "0.0.0.0:9000", "bootstrap": ["cd" * 32 + "@10.0.0.2:7420"]},
            "limits": {"max_connections": 10, "call_timeout": 2.5},
        }
    )
    assert config.listen == "0.0.0.0:9000" and config.bootstrap[0].host == "10.0.0.2"
    assert config.limits.max_connections == 10 and config.limits.call_timeout == 2.5


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"netwrok": {}}, "unknown setting netwrok"),
        ({"network": {"lisen": "x"}}, "unknown setting network.lisen"),
        ({"network": {"listen": 7420}}, "network.listen: expected a string"),
        ({"network": {"listen": "nohost"}}, "network.listen: expected HOST:PORT"),
        ({"network": {"bootstrap": "x"}}, "network.bootstrap: expected a list"),
        ({"network": {"bootstrap": ["nope"]}}, r"network.bootstrap\[0\]: expected PUBLIC_KEY"),
        ({"limits": {"max_connections": 0}}, "limits.max_connections: 0 is outside"),
        ({"storage": {"manifest_version": 1}}, "storage.manifest_version: 1 is outside"),
        ({"storage": {"manifest_version": 4}}, "storage.manifest_version: 4 is outside"),
        ({"limits": {"max_connections": 2.5}}, "limits.max_connections: expected a whole number"),
        ({"limits": {"call_timeout": "1"}}, "limits.call_timeout: expected a number"),
        ({"limits": {"call_timeout": True}}, "limits.call_timeout: expected a number"),
        ({"limits": 3}, r"\[limits\] must be a table"),
        ({"network": {"authorities": "ab"}}, "network.authorities: expected a list"),
        ({"network": {"authorities": ["ab"]}}, r"network.authorities\[0\]: expected a public"),
        ({"network": {"authorities": [7]}}, r"network.authorities\[0\]: expected a public"),
    ],
)
def test_invalid_settings_name_the_key(raw: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(raw)


def test_config_file_errors_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(path)
    path.write_text("[network\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(path)
    path.write_text("[limits]\nmax_handshakes = -1\n")
    with pytest.raises(ConfigError, match=f"{path}: limits.max_handshakes"):
        load_config(path)
    # A file without the listen address is not taken for the defaults.
    for text in ("", "[network]\n", '[storage]\nsite = "a"\n'):
        path.write_text(text)
        with pytest.raises(ConfigError, match=f"{path}: network.listen is missing"):
            load_config(path)


def test_data_dir_initialise_load_and_lock(tmp_path: Path) -> None:
    data = DataDir(tmp_path / "node")
    identity = data.initialize(
        network_key=b"n" * 32, listen="127.0.0.1:0", bootstrap=[], random_bytes=os.urandom
    )
    assert oct((tmp_path / "node").stat().st_mode & 0o777) == "0o700"
    assert data.identity().verify_key == identity.verify_key
    assert data.network_key() == b"n" * 32
    assert data.config().listen == "127.0.0.1:0"
    with pytest.raises(DataDirError, match="already initialised"):
        data.initialize(network_key=b"n" * 32, listen="x:1", bootstrap=[], random_bytes=os.urandom)
    with data.lock(), pytest.raises(DataDirError, match="in use"), data.lock():
        pass
    with data.lock():  # released again
        pass
    with pytest.raises(DataDirError, match="not a medvault data directory"):
        DataDir(tmp_path / "empty").identity()


def test_the_template_loads_to_exactly_the_defaults() -> None:
    assert parse_config(tomllib.loads(config_text(NodeConfig()))) == NodeConfig()


def test_the_template_holds_the_values_it_was_given_escaped() -> None:
    tricky = 'St. "Mary\'s" \\ ward\n2 # not a comment'
    config = NodeConfig(
        network=NetworkConfig(
            listen="[::1]:0", bootstrap=(PeerAddress.parse("ab" * 32 + "@10.0.0.2:7420"),)
        ),
        storage=StorageConfig(site=tricky, k=2, n=3, happy=3),
        gossip=GossipConfig(call_timeout=0.5),
    )
    assert parse_config(tomllib.loads(config_text(config))) == config


def test_every_setting_is_declared_documented_and_in_the_template() -> None:
    text = config_text(NodeConfig())
    raw = tomllib.loads(text)
    for name, section, _ in SECTIONS:
        declared = specs(section)  # TypeError for a field not declared with setting()
        assert declared, name
        for key, default, spec in declared:
            assert spec.doc.strip(), f"{name}.{key} has no doc"
            if default is None:
                assert f"# {key} = " in text  # optional: shown commented out
            else:
                assert key in raw[name], f"{name}.{key} missing from the template"
    assert raw["gossip"]["call_timeout"] == GossipConfig().call_timeout


def test_settings_outside_their_declared_range_are_refused() -> None:
    for name, section, _ in SECTIONS:
        for key, default, spec in specs(section):
            if spec.high is None or isinstance(default, bool):
                continue
            with pytest.raises(ConfigError, match=f"{name}.{key}: .* is outside"):
                parse_config({name: {key: spec.high * 2 + 1}})


def test_cross_field_rules_name_the_section() -> None:
    with pytest.raises(ConfigError, match="storage: need k <= happy <= n"):
        parse_config({"storage": {"k": 4, "n": 8, "happy": 3}})
    with pytest.raises(ConfigError, match=r"storage\.site: at most 64 characters"):
        parse_config({"storage": {"site": "x" * 65}})


def test_shard_transfers_must_fit_the_message_limit() -> None:
    # A block of a segment, or a batch, larger than a message would be refused by every
    # holder at put time: the config says so at start instead.
    with pytest.raises(ConfigError, match=r"segment_size / storage\.k is 8388608 bytes per"):
        parse_config({"storage": {"segment_size": 16 * 1024 * 1024, "k": 2, "n": 3, "happy": 2}})
    with pytest.raises(ConfigError, match=r"transfer_batch_bytes \(3145728; the default"):
        parse_config(
            {
                "storage": {"transfer_batch_bytes": 3 * 1024 * 1024},
                "limits": {"max_message_bytes": 3 * 1024 * 1024},
            }
        )
    # A lowered limit with the batch left at its default: the error says what fits.
    with pytest.raises(ConfigError, match=r"at most 2031616 or raise the limit"):
        parse_config({"limits": {"max_message_bytes": 2 * 1024 * 1024}})
    parse_config({"storage": {"segment_size": 16 * 1024 * 1024, "k": 8, "n": 12, "happy": 10}})
