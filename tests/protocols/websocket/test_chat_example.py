"""The chat example (examples/chat/) end to end: real clients, then a real headless browser.

The browser test needs Debian's ``chromium`` (.ci/run installs it); it is skipped, saying
so, when the binary is absent.
"""

from __future__ import annotations

import json
import shutil
import subprocess

import httpx
import pytest
from websockets.sync.client import connect

from examples.chat.app import app
from tests.protocols.websocket.conftest import WS_BACKENDS, ws_url
from tests.utils import TIME_UNIT, run_server


def test_chat_broadcasts_to_every_member(ws_backend: str) -> None:
    with run_server(app, ws=WS_BACKENDS[ws_backend], lifespan="on", loop="asyncio") as server:
        page = httpx.get(server.url + "/")
        assert page.status_code == 200
        assert "new WebSocket(" in page.text
        url = ws_url(server, "/ws")
        with (
            connect(url + "?name=ann", proxy=None) as ann,
            connect(url + "?name=bob", proxy=None) as bob,
        ):
            assert json.loads(ann.recv(5 * TIME_UNIT))["text"] == "ann joined"
            assert json.loads(ann.recv(5 * TIME_UNIT))["text"] == "bob joined"
            assert json.loads(bob.recv(5 * TIME_UNIT))["text"] == "bob joined"
            bob.send("hi ann")
            expected = {"from": "bob", "text": "hi ann"}
            assert json.loads(ann.recv(5 * TIME_UNIT)) == expected
            assert json.loads(bob.recv(5 * TIME_UNIT)) == expected
            bob.close()
            assert json.loads(ann.recv(5 * TIME_UNIT))["text"] == "bob left"


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path is not None:
            return path
    return None


@pytest.mark.skipif(
    _chromium() is None,
    reason="headless browser test: chromium is not installed (Debian package chromium)",
)
def test_chat_page_in_headless_chromium(ws_backend: str) -> None:
    chromium = _chromium()
    assert chromium is not None
    with run_server(app, ws=WS_BACKENDS[ws_backend], lifespan="on", loop="asyncio") as server:
        result = subprocess.run(
            [
                chromium,
                "--headless",
                "--no-sandbox",  # CI runs as root
                "--disable-gpu",
                "--no-first-run",
                "--virtual-time-budget=10000",
                "--dump-dom",
                server.url + "/#selftest",
            ],
            capture_output=True,
            text=True,
            timeout=60 * TIME_UNIT,
            check=False,
        )
    # The page's status line, set only when its own line came back over the WebSocket.
    expected = '<p id="status">selftest ok: hello from the browser</p>'
    assert expected in result.stdout, result.stderr[-2000:]
