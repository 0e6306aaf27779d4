"""Test-wide settings: Hypothesis profiles (CI runs a larger, fixed budget); worker steps
inline under the autojump clock."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings

from node.offload import inline_work
from storage.codec.erasure import backend_from_environment

settings.register_profile(
    "default", deadline=None, suppress_health_check=[HealthCheck.too_slow], print_blob=True
)
settings.register_profile(
    "ci",
    parent=settings.get_profile("default"),
    max_examples=200,
    derandomize=True,
)
settings.load_profile("ci" if os.environ.get("CI") == "true" else "default")
# MEDVAULT_RS_BACKEND=numpy|isal runs the whole suite on one Reed-Solomon backend.
backend_from_environment(os.environ)


@pytest.fixture(autouse=True)
def _worker_steps_inline_under_autojump(request: pytest.FixtureRequest) -> Iterator[None]:
    """Under the autojump clock, worker-thread steps run inline (node.offload).

    A task waiting on a worker thread counts as blocked, so virtual time jumps on while
    the thread works: on a busy machine a call's timeout expired in the middle of a put
    (CI saw it). Inline, the work takes no virtual time. Tests on real time are untouched.
    """
    if "autojump_clock" not in request.fixturenames:
        yield
        return
    with inline_work():
        yield
