"""The pure cores make no randomness and read no clocks (import-linter checks imports;
this checks the calls it cannot see, like os.urandom)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FORBIDDEN_CALLS = {
    "os.urandom",
    "os.getrandom",
    "nacl.utils.random",
    "utils.random",
    "SigningKey.generate",
    "PrivateKey.generate",
    "time.time",
    "time.monotonic",
    "time.perf_counter",
}
FORBIDDEN_SEALING = "SealedBox"  # encrypt() draws its own ephemeral key


def dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{dotted(node.value)}.{node.attr}"
    return ""


def violations(source: str) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call):
            name = dotted(node.func)
            if any(name == f or name.endswith("." + f) for f in FORBIDDEN_CALLS):
                found.append(name)
            if name.endswith(".encrypt") and FORBIDDEN_SEALING in dotted(node.func):
                found.append(name)
    return found


@pytest.mark.parametrize("package", ["protocol", "storage"])
def test_pure_core_has_no_clock_or_randomness(package: str) -> None:
    bad = {
        str(path.relative_to(REPO)): v
        for path in sorted((REPO / package).rglob("*.py"))
        if (v := violations(path.read_text()))
    }
    assert bad == {}


def test_the_scanner_catches_what_it_should() -> None:
    assert violations("import os\nos.urandom(32)\n") == ["os.urandom"]
    assert violations("nacl.utils.random(32)") == ["nacl.utils.random"]
    assert violations("nacl.signing.SigningKey.generate()") == ["nacl.signing.SigningKey.generate"]
    assert violations("x = len(b'')") == []
