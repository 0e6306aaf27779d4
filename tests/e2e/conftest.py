"""Daemons started by a test are killed when it ends, whatever happened."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from node.sim.localnet import Daemon


@pytest.fixture
def daemons() -> Iterator[list[Daemon]]:
    started: list[Daemon] = []
    yield started
    for daemon in started:
        daemon.kill()
