"""A node without `[http]` never loads the HTTP stack, and a node on ISA-L never loads
numpy (issue 17: idle memory)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HTTP_STACK = ("starlette", "hypercorn", "fhir", "fhir_core", "pydantic", "h2", "wsproto")
PROBE = """
import json, sys
import {module}
print(json.dumps(sorted({{name.split(".")[0] for name in sys.modules}})))
"""


def loaded_by(module: str) -> set[str]:
    """Top-level packages a fresh interpreter holds after importing `module`."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE.format(module=module)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return set(json.loads(done.stdout))


def test_the_medvault_command_and_daemon_load_no_http_stack() -> None:
    # `medvault run` imports the whole CLI, then runs node.daemon.
    assert loaded_by("node.cli.main").isdisjoint(HTTP_STACK)


def test_the_probe_sees_the_http_stack_where_it_is_used() -> None:
    assert {"starlette", "hypercorn"} <= loaded_by("node.http.server")


# What a daemon does at start about the codec: the whole CLI imported, the backend
# chosen and described (loading libisal and running its self-test).
CODEC_START = """
import json, sys
import node.cli.main, node.daemon
from storage.codec import erasure, isal
erasure.backend_from_environment({})
described = erasure.describe_backend()
have_isal = not isinstance(isal.load(), isal.Unavailable)
code = erasure.ReedSolomon(4, 8)
shards = code.encode(b"x" * 5000)
ok = code.decode({i: s for i, s in enumerate(shards) if i >= 2}, 5000) == b"x" * 5000
print(json.dumps({"isal": have_isal, "numpy": "numpy" in sys.modules, "ok": ok}))
"""


def test_a_node_on_isal_never_loads_numpy() -> None:
    done = subprocess.run(
        [sys.executable, "-c", CODEC_START], capture_output=True, text=True, check=True, timeout=120
    )
    seen = json.loads(done.stdout)
    if not seen["isal"]:
        pytest.skip("no libisal on this machine: the numpy fallback is in use")
    assert seen == {"isal": True, "numpy": False, "ok": True}
