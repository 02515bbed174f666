"""Every app in examples/ answers correctly when served by Tricorn, over both backends.

The framework examples need their framework (scripts/test.sh installs them); they are
skipped only when it is missing. The last test runs the README's serve command for real.
"""

from __future__ import annotations

import os
import re
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.utils import TIME_UNIT, run_server

ROOT = Path(__file__).resolve().parent.parent


def test_hello(http_backend: str) -> None:
    from examples.hello import app

    with (
        run_server(app, http=http_backend, lifespan="on") as server,
        httpx.Client(base_url=server.url) as client,
    ):
        for path in ("/", "/any/path?x=1"):
            response = client.get(path)
            assert response.status_code == 200
            assert response.text == "Hello, world!"
            assert response.headers["content-type"] == "text/plain; charset=utf-8"
            assert response.headers["content-length"] == "13"
            assert response.headers["server"] == "tricorn"
        # The server counted both requests.
        assert server.server.server_state.total_requests == 2


def test_asgi2(http_backend: str) -> None:
    from examples.asgi2_app import App

    with (
        run_server(App, http=http_backend, interface="asgi2", lifespan="on") as server,
        httpx.Client(base_url=server.url) as client,
    ):
        response = client.post("/upload", content=b"x" * 100_000)
        assert response.status_code == 200
        assert response.text == "ASGI 2: POST /upload (100000 bytes)"


def test_asgi2_detected_by_auto_interface(http_backend: str) -> None:
    from examples.asgi2_app import App

    with run_server(App, http=http_backend) as server:
        response = httpx.get(server.url + "/")
        assert response.text == "ASGI 2: GET / (0 bytes)"


def test_fastapi(http_backend: str) -> None:
    pytest.importorskip("fastapi")
    from examples.fastapi_app import app

    with (
        run_server(app, http=http_backend, lifespan="on") as server,
        httpx.Client(base_url=server.url) as client,
    ):
        assert client.get("/").json() == {"message": "Hello, world!"}
        # "Hello" comes from the lifespan state, through scope["state"].
        assert client.get("/hello/Ada").json() == {"message": "Hello, Ada!"}
        response = client.post("/items", json={"name": "hat", "price": 2.5, "quantity": 4})
        assert response.status_code == 200
        assert response.json() == {"name": "hat", "total": 10.0}
        assert client.post("/items", json={"name": "hat"}).status_code == 422
        assert client.get("/missing").status_code == 404
        with client.stream("GET", "/count/500") as streamed:
            assert streamed.headers["transfer-encoding"] == "chunked"
            body = streamed.read().decode()
        assert body.splitlines() == [str(i) for i in range(500)]


def test_flask_wsgi(http_backend: str) -> None:
    pytest.importorskip("flask")
    from examples.flask_app import app

    with (
        run_server(app, http=http_backend, interface="wsgi") as server,
        httpx.Client(base_url=server.url) as client,
    ):
        response = client.get("/")
        assert response.status_code == 200
        assert response.text == "Hello from Flask!"
        payload = bytes(range(256)) * 200
        response = client.post(
            "/echo", content=payload, headers={"content-type": "application/octet-stream"}
        )
        assert response.content == payload
        assert response.headers["content-type"] == "application/octet-stream"
        assert client.get("/nowhere").status_code == 404


def test_flask_under_root_path(http_backend: str) -> None:
    """--root-path reaches WSGI as SCRIPT_NAME, and the route still matches."""
    pytest.importorskip("flask")
    from examples.flask_app import app

    with run_server(app, http=http_backend, interface="wsgi", root_path="/api") as server:
        response = httpx.get(server.url + "/where")
        assert response.json() == {"path": "/where", "script_root": "/api", "scheme": "http"}


def read_output_until(proc: subprocess.Popen[bytes], pattern: str, timeout: float) -> str:
    """Collect the child's output until ``pattern`` matches; fail after ``timeout``."""
    assert proc.stdout is not None
    text = ""
    deadline = time.monotonic() + timeout * TIME_UNIT
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        while not re.search(pattern, text):
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not selector.select(remaining):
                raise AssertionError(f"no {pattern!r} in output:\n{text}")
            chunk = os.read(proc.stdout.fileno(), 65536)
            if not chunk:
                raise AssertionError(f"server exited before {pattern!r}:\n{text}")
            text += chunk.decode(errors="replace")
    return text


def test_readme_serve_command() -> None:
    """`python -m tricorn examples.hello:app` serves, logs its real port and stops on Ctrl+C."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "tricorn", "examples.hello:app", "--port", "0"],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,  # access lines go to stdout, the rest to stderr: as uvicorn
        stderr=subprocess.STDOUT,
    )
    try:
        log = read_output_until(proc, r"running on (http://127\.0\.0\.1:\d+)", timeout=15)
        match = re.search(r"running on (http://127\.0\.0\.1:(\d+))", log)
        assert match is not None and match.group(2) != "0"
        assert "Application startup complete." in log
        response = httpx.get(match.group(1) + "/")
        assert response.text == "Hello, world!"
        log += read_output_until(proc, r'"GET / HTTP/1\.1" 200', timeout=5)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10 * TIME_UNIT) == 0
        assert proc.stdout is not None
        log += proc.stdout.read().decode(errors="replace")
        assert "Application shutdown complete." in log
        assert "Traceback" not in log
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=5)
        if proc.stdout is not None:
            proc.stdout.close()
