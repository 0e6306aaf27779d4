"""A node without `[http]` never loads the HTTP stack (issue 17: idle memory)."""

from __future__ import annotations

import json
import subprocess
import sys

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
