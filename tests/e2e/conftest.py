"""Daemons started by a test are killed when it ends, whatever happened."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from node.sim.localnet import Daemon
from tests.e2e.member import Member


@pytest.fixture
def daemons() -> Iterator[list[Daemon]]:
    started: list[Daemon] = []
    yield started
    for daemon in started:
        daemon.kill()


@pytest.fixture
def members() -> Iterator[list[Member]]:
    """In-process members (tests/e2e/member.py) a test started: stopped when it ends."""
    started: list[Member] = []
    yield started
    for member in started:
        member.stop()
