"""The gunicorn worker classes (``tricorn.workers``) under the real gunicorn command line.

Each test runs ``python -m gunicorn APP -k tricorn.workers.<Worker>`` in its own session,
bound to a unix socket in ``tmp_path`` (gunicorn does not log the port it picked for
``:0``), talks to it with httpx or the websockets client, and always ends the whole
process group with ``killpg``. gunicorn's log goes to a file the tests read.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import gunicorn
import httpx
import pytest

from tests.apps import STARTUP_FAILED_MESSAGE
from tests.utils import TIME_UNIT, wait_for

ROOT = Path(__file__).resolve().parents[1]
WORKERS = ["tricorn.workers.TricornWorker", "tricorn.workers.TricornH11Worker"]
PID_APP = "tests.master.apps:pid"

# gunicorn >= 25.1 opens a control socket in $HOME: keep parallel test servers apart.
_VERSION = tuple(int(part) for part in gunicorn.__version__.split(".")[:2])
CONTROL_ARGS = ["--no-control-socket"] if _VERSION >= (25, 1) else []


@pytest.fixture(params=WORKERS, ids=["TricornWorker", "TricornH11Worker"])
def worker_class(request: pytest.FixtureRequest) -> str:
    """Every test runs with both worker classes (httptools/uvloop and h11/asyncio)."""
    return str(request.param)


class Gunicorn:
    """A gunicorn master started by ``run_gunicorn``: its process, socket and log."""

    def __init__(self, proc: subprocess.Popen[bytes], sock: Path, log: Path) -> None:
        self.proc = proc
        self.sock = sock
        self.log_path = log
        self.client = httpx.Client(
            transport=httpx.HTTPTransport(uds=str(sock)),
            base_url="http://gunicorn",
            timeout=10 * TIME_UNIT,
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def get(self, path: str = "/") -> httpx.Response:
        return self.client.get(path)

    def pid(self) -> int:
        """The pid of the worker that answered (``tests.master.apps:pid``)."""
        response = self.get("/")
        assert response.status_code == 200
        return int(response.text)

    def wait_ready(self) -> None:
        def listening() -> bool:
            assert self.proc.poll() is None, f"gunicorn exited early:\n{self.log()}"
            # A raw probe: httpx leaks its socket when a unix connect is refused.
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
                try:
                    probe.connect(str(self.sock))
                except OSError:
                    return False
            return True

        wait_for(listening, timeout=15, what="gunicorn to listen")
        # Connections wait in the backlog until the worker accepts them.
        assert self.get("/").status_code < 500

    def wait_exit(self, timeout: float = 15) -> int:
        try:
            return self.proc.wait(timeout=timeout * TIME_UNIT)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"gunicorn did not exit:\n{self.log()}") from None


@contextlib.contextmanager
def run_gunicorn(
    tmp_path: Path, app: str, worker_class: str, *args: str, ready: bool = True
) -> Iterator[Gunicorn]:
    """Start gunicorn serving ``app``; on leaving, TERM it, then ``killpg`` the group."""
    sock = tmp_path / "g.sock"
    log = tmp_path / "gunicorn.log"
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        app,
        "--worker-class",
        worker_class,
        "--bind",
        f"unix:{sock}",
        "--graceful-timeout",
        "5",
        *CONTROL_ARGS,
        *args,
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GUNICORN_", "TRICORN_"))}
    env.pop("FORWARDED_ALLOW_IPS", None)
    env["PYTHONUNBUFFERED"] = "1"
    with open(log, "wb") as output:
        proc = subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = Gunicorn(proc, sock, log)
    try:
        if ready:
            server.wait_ready()
        yield server
    finally:
        server.client.close()
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10 * TIME_UNIT)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5 * TIME_UNIT)


def test_serves_http(tmp_path: Path, worker_class: str) -> None:
    with run_gunicorn(tmp_path, "tests.apps:hello", worker_class) as server:
        response = server.get("/")
        assert response.status_code == 200
        assert response.text == "Hello, world!"
        assert response.headers["server"] == "tricorn"
        assert f"Using worker: {worker_class}" in server.log()
        # Tricorn's own records reach gunicorn's error log.
        assert "Application startup complete." in server.log()


def test_serves_websocket(tmp_path: Path, worker_class: str) -> None:
    from websockets.sync.client import unix_connect

    with (
        run_gunicorn(tmp_path, "tests.conformance.echo:app", worker_class) as server,
        unix_connect(str(server.sock), "ws://gunicorn/", open_timeout=5 * TIME_UNIT) as ws,
    ):
        ws.send("hello over gunicorn")
        assert ws.recv(timeout=5 * TIME_UNIT) == "hello over gunicorn"
        ws.send(b"\x00\x01")
        assert ws.recv(timeout=5 * TIME_UNIT) == b"\x00\x01"


def test_max_requests_replaces_the_worker(tmp_path: Path, worker_class: str) -> None:
    with run_gunicorn(tmp_path, PID_APP, worker_class, "--max-requests", "5") as server:
        # wait_ready made one request already. Every request must succeed while the
        # worker retires and gunicorn starts the next one.
        pids = [server.pid()]
        wait_for(
            lambda: pids.append(server.pid()) or len(set(pids)) > 1,
            timeout=15,
            what="a new worker",
        )
        first = pids[0]
        # The limit is checked about ten times a second, so a few more may be served.
        assert pids.count(first) + 1 >= 5
        assert pids[: pids.count(first)] == [first] * pids.count(first)
        log = server.log()
        assert "Maximum request limit of 5 exceeded. Terminating process." in log
        wait_for(lambda: f"Worker exiting (pid: {first})" in server.log(), what="worker exit")
        assert f"Worker (pid:{first}) exited with code" not in server.log()


def test_sigterm_drains_the_request_in_flight(tmp_path: Path, worker_class: str) -> None:
    with (
        run_gunicorn(tmp_path, "tests.apps:slow_stream", worker_class) as server,
        server.client.stream("GET", "/?delay=1") as response,
    ):
        chunks = response.iter_raw()
        assert next(chunks) == b"started\n"  # the request is in flight
        server.proc.send_signal(signal.SIGTERM)
        assert b"".join(chunks) == b"done\n"
        assert server.wait_exit() == 0
    assert "Shutting down" in server.log()


def test_lifespan_startup_failure_stops_gunicorn(tmp_path: Path, worker_class: str) -> None:
    with run_gunicorn(tmp_path, "tests.apps:startup_failed", worker_class, ready=False) as server:
        assert server.wait_exit() == 3
        log = server.log()
    assert STARTUP_FAILED_MESSAGE in log
    assert "Worker failed to boot." in log
    assert log.count("Booting worker with pid") == 1


def test_heartbeat_and_blocked_loop(tmp_path: Path, worker_class: str) -> None:
    # --timeout 1: gunicorn's arbiter checks about once a second and aborts a worker that
    # has not notified for a second.
    with run_gunicorn(tmp_path, PID_APP, worker_class, "--timeout", "1") as server:
        first = server.pid()
        # The loop is free while this request awaits: the heartbeat keeps the worker
        # alive well past the timeout.
        response = server.get("/?delay=2.5")
        assert response.status_code == 200
        assert int(response.text) == first
        assert "WORKER TIMEOUT" not in server.log()

        # A blocked loop: no heartbeat, gunicorn sends SIGABRT, the worker exits with 1.
        with pytest.raises(httpx.TransportError):
            server.get("/?block=30")
        wait_for(lambda: server.pid() != first, timeout=10, what="a replacement worker")
        log = server.log()
        assert f"WORKER TIMEOUT (pid:{first})" in log
        assert re.search(rf"Worker \(pid:{first}\) aborted: no heartbeat", log)
        assert f"Worker (pid:{first}) exited with code 1." in log
        assert "apps.py" in log  # where the worker was stuck


def test_maps_gunicorn_settings(tmp_path: Path, worker_class: str) -> None:
    args = ["--root-path", "/api", "--forwarded-allow-ips", "*", "--access-logfile", "-"]
    with run_gunicorn(tmp_path, "tests.apps:scope_json", worker_class, *args) as server:
        response = server.client.get("/", headers={"x-forwarded-for": "203.0.113.7"})
        assert response.status_code == 200
        scope = response.json()
        assert scope["root_path"] == "/api"
        assert scope["client"][0] == "203.0.113.7"
        # Tricorn's access records reach gunicorn's access log handler.
        wait_for(lambda: '"GET /api/ HTTP/1.1" 200' in server.log(), what="an access line")


def test_serves_tls_from_gunicorn_settings(tmp_path: Path, worker_class: str) -> None:
    import ssl

    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("gunicorn")
    certfile, keyfile = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(certfile))
    cert.private_key_pem.write_to_path(str(keyfile))
    args = ["--certfile", str(certfile), "--keyfile", str(keyfile)]
    with run_gunicorn(
        tmp_path, "tests.apps:scope_json", worker_class, *args, ready=False
    ) as server:
        context = ssl.create_default_context()
        ca.configure_trust(context)
        with httpx.Client(
            transport=httpx.HTTPTransport(uds=str(server.sock), verify=context),
            base_url="https://gunicorn",
            timeout=10 * TIME_UNIT,
        ) as client:
            wait_for(server.sock.exists, timeout=15, what="gunicorn to listen")
            response = client.get("/")
        assert response.status_code == 200
        assert response.json()["scheme"] == "https"


def test_sigquit_stops_without_draining(tmp_path: Path, worker_class: str) -> None:
    with (
        run_gunicorn(tmp_path, "tests.apps:slow_stream", worker_class) as server,
        server.client.stream("GET", "/?delay=30") as response,
    ):
        chunks = response.iter_raw()
        assert next(chunks) == b"started\n"
        server.proc.send_signal(signal.SIGQUIT)
        # The request is cut off: the connection closes before the body ends.
        with pytest.raises(httpx.RemoteProtocolError):
            b"".join(chunks)
        # Well before the 30 s request and the 5 s --graceful-timeout.
        assert server.wait_exit(timeout=3) == 0
    assert "Waiting for connections to close." not in server.log()


def test_sigusr1_reopens_the_log_files(tmp_path: Path, worker_class: str) -> None:
    access = tmp_path / "access.log"
    args = ["--access-logfile", str(access)]
    with run_gunicorn(tmp_path, "tests.apps:hello", worker_class, *args) as server:
        wait_for(lambda: access.exists() and "GET / " in access.read_text(), what="access log")
        access.rename(tmp_path / "access.log.1")  # what logrotate does
        server.proc.send_signal(signal.SIGUSR1)  # gunicorn relays it to its workers
        # Only the worker writes access lines: one in the new file proves it reopened.
        wait_for(access.exists, what="the master to reopen")

        def logged_in_new_file() -> bool:
            assert server.get("/").status_code == 200
            return "GET / " in access.read_text()

        wait_for(logged_in_new_file, what="an access line in the new file")
        assert server.proc.poll() is None


def test_worker_exits_when_the_master_dies(tmp_path: Path, worker_class: str) -> None:
    import psutil

    with run_gunicorn(tmp_path, PID_APP, worker_class) as server:
        worker = psutil.Process(server.pid())
        server.proc.kill()  # the master only: the worker is orphaned
        server.proc.wait(timeout=5 * TIME_UNIT)

        def worker_gone() -> bool:
            try:
                return worker.status() == psutil.STATUS_ZOMBIE
            except psutil.NoSuchProcess:
                return True

        wait_for(worker_gone, what="the orphaned worker to exit")
        assert "Parent changed, shutting down" in server.log()
