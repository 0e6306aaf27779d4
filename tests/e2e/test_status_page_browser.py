"""Issue 15's browser check: the status page of a real daemon loads in headless Chromium
(Debian's `chromium`; .ci/run installs it when missing) with no console errors, no page
errors and no failed requests, and a screenshot is written under the test's folder.

Playwright for Python drives the browser (`executable_path`: no browser download); it
reports console messages, page errors and every response, where the CLI's
--screenshot would only leave us log lines to parse.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from node.sim.localnet import Daemon, Network, configure, free_ports

pytestmark = pytest.mark.slow

CHROMIUM = Path(os.environ.get("MEDVAULT_CHROMIUM", "/usr/bin/chromium"))
FLAGS = [
    "--no-sandbox",  # CI runs as root
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SETTINGS: dict[str, dict[str, Any]] = {
    "storage": {"k": 2, "n": 3, "happy": 3, "repair_interval": 1},
    "gossip": {"interval": 0.5},
}


def browser() -> Any:
    """Playwright's sync API, or a skip that says what is missing."""
    if not CHROMIUM.exists():
        pytest.skip(
            f"{CHROMIUM} is missing: install Debian's chromium (apt-get install -y chromium;"
            " .ci/run does it when apt is available)"
        )
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright is not installed (pip install -e '.[test]')"
    )
    return sync_api.sync_playwright


def wait_for_page(url: str, text: str, timeout: float = 90) -> str:
    """The page once it contains `text` (polling the daemon's state)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            page = httpx.get(url, timeout=10)
            if page.status_code == 200 and text not in page.text:
                return page.text
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, f"{url} still showed {text!r} after {timeout}s"
        time.sleep(0.5)


def test_status_page_loads_in_headless_chromium(tmp_path: Path, daemons: list[Daemon]) -> None:
    sync_playwright = browser()
    net = Network(tmp_path / "net", 4, SETTINGS)
    public_port, private_port = free_ports(2)
    configure(
        net.nodes[0].data_dir / "config.toml",
        {"http": {"listen": f"127.0.0.1:{public_port}", "public_status": True}},
    )
    configure(
        net.nodes[1].data_dir / "config.toml", {"http": {"listen": f"127.0.0.1:{private_port}"}}
    )
    daemons.extend(net.nodes)
    net.start_all()
    net.wait_complete(60)
    record = tmp_path / "scan.pdf"
    record.write_bytes(os.urandom(200_000))
    put = net.run(0, "put", str(record))
    assert put.returncode == 0, put.stderr
    token = net.cli(1, "http", "token", "new", "--name", "ops", "--scope", "read")["token"]

    # A peer down: the page must still load fast and say so; wait for a pass to report.
    net.nodes[3].stop()
    public = f"http://127.0.0.1:{public_port}/"
    wait_for_page(public, "no repair pass yet")
    node_id = net.status(0).node_id.hex()

    shot = tmp_path / "status-page.png"
    problems: list[str] = []
    with sync_playwright() as playwright:
        profile = tmp_path / "chromium-profile"  # a new, empty user data dir
        context = playwright.chromium.launch_persistent_context(
            str(profile), executable_path=str(CHROMIUM), headless=True, args=FLAGS
        )
        try:
            page = context.new_page()
            page.on(
                "console",
                lambda msg: (
                    problems.append(f"console {msg.type}: {msg.text}")
                    if msg.type in ("error", "warning")
                    else None
                ),
            )
            page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
            page.on("requestfailed", lambda req: problems.append(f"request failed: {req.url}"))
            page.set_viewport_size({"width": 1280, "height": 900})
            response = page.goto(public, wait_until="load")
            assert response is not None and response.status == 200
            assert response.headers["content-security-policy"].startswith("default-src 'none'")
            body = page.inner_text("body")
            assert node_id in body
            assert "Peers" in body and "Recent warnings" in body
            assert "in the routing table" in body and "Identity" in body
            page.screenshot(path=str(shot), full_page=True)
            page.close()

            # Without public_status the browser needs the token, as a Basic password.
            private = f"http://127.0.0.1:{private_port}/"
            bare = context.request.get(private)
            assert bare.status == 401 and bare.headers["www-authenticate"].startswith("Basic")
        finally:
            context.close()
        authed = playwright.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile-2"),
            executable_path=str(CHROMIUM),
            headless=True,
            args=FLAGS,
            http_credentials={"username": "ops", "password": token},
        )
        try:
            page = authed.new_page()
            page.on("pageerror", lambda exc: problems.append(f"page error (basic): {exc}"))
            response = page.goto(f"http://127.0.0.1:{private_port}/", wait_until="load")
            assert response is not None and response.status == 200
            assert net.status(1).node_id.hex() in page.inner_text("body")
        finally:
            authed.close()

    print(f"\nstatus page screenshot: {shot}")
    assert shot.stat().st_size > 10_000
    assert problems == []
    keep = os.environ.get("MEDVAULT_SCREENSHOT_DIR")
    if keep:  # CI or a developer may keep the picture beyond tmp_path
        shutil.copy2(shot, Path(keep) / shot.name)
