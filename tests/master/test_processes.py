"""The master as a real process tree: real forks, real signals, pids checked with psutil.

Every test starts the master in its own session and always ends it with ``killpg``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil

from tests.utils import TIME_UNIT, wait_for

ROOT = Path(__file__).resolve().parents[2]
LISTENING_RE = re.compile(r"Master listening on (\S+)")
READY_RE = re.compile(r"Worker \[(\d+)\] ready")


class Master:
    """A running master (``python -m tests.master.serve``) and its log file."""

    def __init__(self, proc: subprocess.Popen[bytes], log_path: Path) -> None:
        self.proc = proc
        self.log_path = log_path
        self.pid = proc.pid
        self.url = ""

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def ready_pids(self) -> list[int]:
        return [int(pid) for pid in READY_RE.findall(self.log())]

    def workers(self) -> set[int]:
        try:
            return {child.pid for child in psutil.Process(self.pid).children()}
        except psutil.NoSuchProcess:
            return set()

    def serving(self) -> set[int]:
        """Workers told ready and still children of the master."""
        return set(self.ready_pids()) & self.workers()

    def signal(self, sig: int) -> None:
        os.kill(self.pid, sig)

    def get(self, path: str = "/", timeout: float = 5.0) -> httpx.Response:
        return httpx.get(self.url + path, timeout=timeout * TIME_UNIT)

    def wait_exit(self, timeout: float = 10.0) -> int:
        return self.proc.wait(timeout=timeout * TIME_UNIT)


@contextlib.contextmanager
def run_master(
    tmp_path: Path, app: str = "tests.master.apps:pid", **settings: Any
) -> Iterator[Master]:
    settings.setdefault("workers", 2)
    settings.setdefault("lifespan", "off")
    settings.setdefault("port", 0)
    settings.setdefault("log_level", "info")
    settings.setdefault("loop", "asyncio")  # see the report: uvloop transports vs connection.py
    log_path = tmp_path / "master.log"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.master.serve", app, json.dumps(settings)],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
        )
    master = Master(proc, log_path)
    try:
        wait_for(
            lambda: LISTENING_RE.search(master.log()) or proc.poll() is not None,
            timeout=10,
            what="master listening",
        )
        match = LISTENING_RE.search(master.log())
        if match:
            master.url = "http://" + match.group(1)
        yield master
    finally:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)


def wait_serving(master: Master, count: int, timeout: float = 10.0) -> None:
    wait_for(
        lambda: len(master.serving()) == count == len(master.workers()),
        timeout=timeout,
        what=f"{count} ready workers\n{master.log()}",
    )


def wait_workers(master: Master, count: int) -> None:
    wait_for(lambda: len(master.workers()) == count, what=f"{count} workers")


def wait_log_count(master: Master, text: str, count: int, timeout: float = 10.0) -> None:
    wait_for(lambda: master.log().count(text) == count, timeout=timeout, what=f"{count} x {text}")


def test_workers_serve_and_scale(tmp_path: Path) -> None:
    with run_master(tmp_path, workers=3) as master:
        wait_serving(master, 3)
        seen = {int(master.get().text) for _ in range(30)}
        assert seen <= master.workers()
        master.signal(signal.SIGTTIN)
        wait_serving(master, 4)
        assert "Received SIGTTIN, scaled to 4 workers" in master.log()
        for expected in (3, 2, 1, 1):
            master.signal(signal.SIGTTOU)
            wait_workers(master, expected)
        wait_for(lambda: "already at 1 worker" in master.log(), what="TTOU refused")
        assert len(master.workers()) == 1
        assert master.get().status_code == 200


def test_killed_worker_is_replaced_fast(tmp_path: Path) -> None:
    with run_master(tmp_path, workers=2) as master:
        wait_serving(master, 2)
        victim, other = sorted(master.workers())
        os.kill(victim, signal.SIGKILL)
        start = time.monotonic()
        wait_for(
            lambda: len(master.serving() - {victim, other}) == 1,
            timeout=1.0,
            what="replacement ready",
        )
        assert time.monotonic() - start < 1.0 * TIME_UNIT
        assert other in master.workers()  # the others never stopped
        assert f"Worker [{victim}] died (signal 9 (SIGKILL))" in master.log()
        for _ in range(10):
            assert master.get().status_code == 200


def test_term_waits_for_in_flight_request(tmp_path: Path) -> None:
    with run_master(tmp_path, app="tests.apps:slow_stream", workers=2) as master:
        wait_serving(master, 2)
        tree = master.workers() | {master.pid}
        host, port = master.url[len("http://") :].rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=10 * TIME_UNIT) as client:
            client.sendall(b"GET /?delay=2 HTTP/1.1\r\nhost: x\r\n\r\n")
            received = b""
            while b"started" not in received:
                received += client.recv(4096)
            master.signal(signal.SIGTERM)
            while not received.endswith(b"0\r\n\r\n"):
                chunk = client.recv(4096)
                assert chunk, received
                received += chunk
        assert b"done\n" in received
        assert master.wait_exit() == 0
        wait_for(lambda: not any(psutil.pid_exists(pid) for pid in tree), what="tree gone")


def test_startup_failure_exits_3(tmp_path: Path) -> None:
    with run_master(tmp_path, app="tests.apps:startup_failed", workers=2, lifespan="on") as master:
        assert master.wait_exit() == 3
        assert "failed to start (exit code 3); stopping" in master.log()


def test_stuck_worker_is_aborted_and_replaced(tmp_path: Path) -> None:
    with run_master(tmp_path, workers=1, timeout_worker_healthcheck=1) as master:
        wait_serving(master, 1)
        (stuck,) = master.workers()
        with contextlib.suppress(httpx.HTTPError):
            master.get("/?block=60", timeout=0.2)
        wait_for(lambda: f"Worker [{stuck}] timed out" in master.log(), what="timed out")
        wait_for(lambda: len(master.serving() - {stuck}) == 1, what="replacement ready")
        wait_for(lambda: stuck not in master.workers(), what="stuck worker gone")
        assert int(master.get().text) != stuck


def test_master_death_takes_workers_down(tmp_path: Path) -> None:
    with run_master(tmp_path, workers=2) as master:
        wait_serving(master, 2)
        workers = master.workers()
        master.signal(signal.SIGKILL)
        master.wait_exit()
        wait_for(
            lambda: (
                not any(
                    psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
                    for pid in workers
                )
            ),
            what="orphaned workers exit",
        )


class Load:
    """Several keep-alive clients issuing requests in a loop; every failure is kept."""

    def __init__(self, url: str, clients: int = 4) -> None:
        self.url = url
        self.errors: list[BaseException] = []
        self.served = 0
        self.pids: set[int] = set()
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self.run) for _ in range(clients)]

    def run(self) -> None:
        with httpx.Client(timeout=5 * TIME_UNIT) as client:
            while not self.stop.is_set():
                try:
                    response = client.get(self.url)
                    assert response.status_code == 200, response
                    self.pids.add(int(response.text))
                    self.served += 1
                except BaseException as exc:  # collected, asserted by the test
                    self.errors.append(exc)

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=10 * TIME_UNIT)


def test_hup_under_load_loses_nothing(tmp_path: Path) -> None:
    with run_master(tmp_path, workers=4) as master:
        wait_serving(master, 4)
        before = master.workers()
        with Load(master.url) as load:
            for n in range(5):
                master.signal(signal.SIGHUP)
                wait_log_count(master, "Reloaded:", n + 1)
            wait_serving(master, 4)
        assert not load.errors, load.errors[:3]
        assert load.served > 0
        assert not (master.workers() & before)


def test_recycling_under_load_loses_nothing(tmp_path: Path) -> None:
    with run_master(
        tmp_path, workers=2, limit_max_requests=100, limit_max_requests_jitter=20
    ) as master:
        wait_serving(master, 2)
        with Load(master.url) as load:
            wait_for(
                lambda: master.log().count("recycled (max requests") >= 3,
                timeout=20,
                what="3 recycles",
            )
        assert not load.errors, load.errors[:3]
        assert len(load.pids) >= 4


def test_pid_file_names_the_master(tmp_path: Path) -> None:
    pid_path = tmp_path / "app.pid"
    with run_master(tmp_path, workers=1, pid=str(pid_path)) as master:
        wait_serving(master, 1)
        assert pid_path.read_text() == f"{master.pid}\n"
        (tmp_path / "second").mkdir()
        with run_master(tmp_path / "second", workers=1, pid=str(pid_path)) as second:
            assert second.wait_exit() == 1
            assert f"already owned by running process {master.pid}" in second.log()
        master.signal(signal.SIGINT)
        assert master.wait_exit() == 0
        assert not pid_path.exists()


def test_bad_input_is_one_line(tmp_path: Path) -> None:
    with run_master(tmp_path, pid=str(tmp_path / "missing" / "app.pid")) as master:
        assert master.wait_exit() == 1
        assert master.log().strip().splitlines()[-1].endswith("does not exist")
        assert "Traceback" not in master.log()
