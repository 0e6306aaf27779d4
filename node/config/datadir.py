"""A node's data directory: what lives where, creating it, and owning it.

Only one process may use a data directory at a time: `lock()` takes an
exclusive flock on `<dir>/lock` that the OS releases if the process dies.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import nacl.signing

from node.config.addresses import PeerAddress
from node.config.gossip import GossipConfig
from node.config.keyfiles import (
    KeyKind,
    create_signing_key,
    load_signing_key,
    read_secret,
    write_secret,
)
from node.config.network import NetworkConfig
from node.config.settings import CONFIG_FILE, NodeConfig, config_text, load_config
from node.config.storage import StorageConfig
from protocol.membership.certificate import Certificate, CertificateError, from_text

ENV_HOME = "MEDVAULT_HOME"
IDENTITY_FILE = "identity.key"
NETWORK_KEY_FILE = "network.key"
CERTIFICATE_FILE = "node.cert"
AUTHORITY_FILE = "authority.key"  # written by `init --new-network`: move it offline
LOCK_FILE = "lock"


class DataDirError(Exception):
    """The data directory is missing, already set up, or in use."""


def default_data_dir() -> Path:
    return Path(os.environ.get(ENV_HOME) or Path.home() / ".medvault")


@dataclass(frozen=True)
class DataDir:
    root: Path

    @property
    def identity_path(self) -> Path:
        return self.root / IDENTITY_FILE

    @property
    def network_key_path(self) -> Path:
        return self.root / NETWORK_KEY_FILE

    @property
    def config_path(self) -> Path:
        return self.root / CONFIG_FILE

    def initialize(
        self,
        *,
        network_key: bytes,
        listen: str,
        bootstrap: list[str],
        random_bytes: Callable[[int], bytes],
        storage: StorageConfig | None = None,
        gossip: GossipConfig | None = None,
        advertise: str | None = None,
        authorities: tuple[bytes, ...] = (),
    ) -> nacl.signing.SigningKey:
        """Create the directory (0700), identity, network key and config."""
        if self.identity_path.exists():
            raise DataDirError(f"{self.root} is already initialised (found {IDENTITY_FILE})")
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.root, 0o700)
        identity = create_signing_key(self.identity_path, KeyKind.IDENTITY, random_bytes(32))
        write_secret(self.network_key_path, KeyKind.NETWORK, network_key)
        config = NodeConfig(
            network=NetworkConfig(
                listen=listen,
                advertise=advertise,
                bootstrap=tuple(PeerAddress.parse(p) for p in bootstrap),
                authorities=authorities,
            ),
            storage=storage or StorageConfig(),
            gossip=gossip or GossipConfig(),
        )
        self.config_path.write_text(config_text(config), encoding="utf-8")
        return identity

    def _require(self) -> None:
        if not self.identity_path.exists():
            raise DataDirError(
                f"{self.root} is not a medvault data directory (run `medvault init`)"
            )

    def identity(self) -> nacl.signing.SigningKey:
        self._require()
        return load_signing_key(self.identity_path, KeyKind.IDENTITY)

    def network_key(self) -> bytes:
        self._require()
        return read_secret(self.network_key_path, KeyKind.NETWORK)

    def config(self) -> NodeConfig:
        self._require()
        return load_config(self.config_path)

    @property
    def certificate_path(self) -> Path:
        return self.root / CERTIFICATE_FILE

    def certificate(self) -> Certificate | None:
        """This node's membership certificate, None when none is installed."""
        self._require()
        try:
            text = self.certificate_path.read_text(encoding="ascii")
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            raise DataDirError(f"{self.certificate_path}: cannot read it ({exc})") from None
        try:
            return from_text(text)
        except CertificateError as exc:
            raise DataDirError(f"{self.certificate_path}: {exc}") from None

    def install_certificate(self, cert: Certificate) -> None:
        """Keep `cert` as this node's certificate (replacing an older one atomically)."""
        self._require()
        if cert.node_key != bytes(self.identity().verify_key):
            raise DataDirError(
                "the certificate is for key " + cert.node_key.hex()[:16] + "..., not this node's"
            )
        fd, temporary = tempfile.mkstemp(dir=self.root, prefix=".node.cert.")
        try:
            with os.fdopen(fd, "w", encoding="ascii") as handle:
                handle.write(cert.text() + "\n")
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(temporary, 0o644)
            os.replace(temporary, self.certificate_path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
            raise
        directory = os.open(self.root, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the directory exclusively; DataDirError if another process does."""
        self._require()
        fd = os.open(self.root / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise DataDirError(f"{self.root} is in use by another medvault process") from None
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
            yield
        finally:
            os.close(fd)
