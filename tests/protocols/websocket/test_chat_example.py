"""The chat example (examples/chat/) end to end: real clients, then a real headless browser.

The browser test needs Debian's ``chromium`` (.ci/run installs it); it is skipped, saying
so, when the binary is absent. It drives the browser over the DevTools protocol and polls
the page's DOM with a bound: ``--dump-dom --virtual-time-budget`` could print the page
before the WebSocket reply had arrived, since virtual time does not wait for the network.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.sync.client import ClientConnection, connect

from examples.chat.app import app
from tests.protocols.websocket.conftest import WS_BACKENDS, ws_url
from tests.utils import TIME_UNIT, run_server, wait_for


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


class DevTools:
    """A minimal Chrome DevTools Protocol client: one browser WebSocket, flat sessions."""

    def __init__(self, socket: ClientConnection) -> None:
        self.socket = socket
        self.last_id = 0

    def call(self, method: str, session: str | None = None, **params: Any) -> dict[str, Any]:
        """Send one command (to ``session``'s page, if given) and return its result."""
        self.last_id += 1
        command: dict[str, Any] = {"id": self.last_id, "method": method, "params": params}
        if session is not None:
            command["sessionId"] = session
        self.socket.send(json.dumps(command))
        while True:
            # Events carry no "id"; nothing here subscribes to any, but skip them anyway.
            reply = json.loads(self.socket.recv(30 * TIME_UNIT))
            if reply.get("id") == self.last_id:
                assert "error" not in reply, f"{method}: {reply['error']}"
                return dict(reply["result"])

    def evaluate(self, session: str, expression: str) -> Any:
        """The JSON value of ``expression`` evaluated in the page."""
        reply = self.call("Runtime.evaluate", session, expression=expression, returnByValue=True)
        return reply["result"].get("value")


@contextlib.contextmanager
def headless_chromium(profile: Path) -> Iterator[DevTools]:
    """Chromium with a DevTools port (any free one) and an empty profile in ``profile``.

    Chromium writes the port it bound and the browser's WebSocket path to
    ``DevToolsActivePort`` in its profile; the client waits for that file, not for a time.
    """
    chromium = _chromium()
    assert chromium is not None
    profile.mkdir()
    log = profile.parent / "chromium.log"
    command = [
        chromium,
        "--headless",
        "--no-sandbox",  # CI runs as root
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--remote-debugging-port=0",
        f"--user-data-dir={profile}",
        "about:blank",
    ]
    port_file = profile / "DevToolsActivePort"
    with (
        log.open("wb") as stderr,
        subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr
        ) as browser,
    ):
        try:

            def endpoint() -> list[str]:
                # The file may be seen half written: wait for both lines.
                lines = port_file.read_text().split() if port_file.exists() else []
                return lines if len(lines) == 2 and lines[1].startswith("/devtools/") else []

            wait_for(
                lambda: endpoint() or browser.poll() is not None,
                timeout=30,
                what="chromium's DevToolsActivePort",
            )
            assert browser.poll() is None, log.read_text(errors="replace")[-2000:]
            port, path = endpoint()
            url = f"ws://127.0.0.1:{port}{path}"
            with connect(url, proxy=None, max_size=None, open_timeout=30 * TIME_UNIT) as ws:
                yield DevTools(ws)
                ws.send(json.dumps({"id": 0, "method": "Browser.close"}))
            browser.wait(30 * TIME_UNIT)
        finally:
            if browser.poll() is None:
                browser.kill()
                browser.wait()


def open_page(devtools: DevTools, url: str) -> str:
    """Open ``url`` in a new tab; return the DevTools session that drives it."""
    target = devtools.call("Target.createTarget", url=url)["targetId"]
    return str(devtools.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"])


def wait_for_page(devtools: DevTools, session: str, expression: str, expected: str) -> None:
    """Poll ``expression`` in the page until it equals ``expected`` (bounded)."""
    seen: list[Any] = [None]

    def matches() -> bool:
        seen[0] = devtools.evaluate(session, expression)
        return bool(seen[0] == expected)

    try:
        wait_for(matches, timeout=30, what=f"{expression} == {expected!r}")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; last value {seen[0]!r}") from None


STATUS = 'document.getElementById("status").textContent'
LAST_LINE = 'document.querySelector("#log p:last-child")?.textContent ?? ""'


@pytest.mark.skipif(
    _chromium() is None,
    reason="headless browser test: chromium is not installed (Debian package chromium)",
)
def test_chat_page_in_headless_chromium(ws_backend: str, tmp_path: Path) -> None:
    with (
        run_server(app, ws=WS_BACKENDS[ws_backend], lifespan="on", loop="asyncio") as server,
        headless_chromium(tmp_path / "profile") as devtools,
    ):
        # "#selftest": the page joins as "browser" and sends one line once connected.
        page = open_page(devtools, server.url + "/#selftest")
        # Set only when the browser's own line came back over its WebSocket.
        wait_for_page(devtools, page, STATUS, "selftest ok: hello from the browser")
        # A second member's line reaches the browser too (the broadcast, not an echo).
        with connect(ws_url(server, "/ws") + "?name=ann", proxy=None) as ann:
            assert json.loads(ann.recv(5 * TIME_UNIT))["text"] == "ann joined"
            ann.send("hi browser")
            assert json.loads(ann.recv(5 * TIME_UNIT)) == {"from": "ann", "text": "hi browser"}
            wait_for_page(devtools, page, LAST_LINE, "ann: hi browser")
        wait_for_page(devtools, page, LAST_LINE, "server: ann left")
