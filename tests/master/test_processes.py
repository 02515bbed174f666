"""The master as a real process tree, started through the real command line.

Every test runs ``python -m tricorn APP --workers N ...`` in its own session, sends real
signals, checks pids with psutil and always ends the whole group with ``killpg``. These are
the acceptance tests of the pre-fork master (issue 3).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from tests.utils import TIME_UNIT, wait_for

ROOT = Path(__file__).resolve().parents[2]
LISTENING_RE = re.compile(r"Tricorn running on (http://\S+)")
READY_RE = re.compile(r"Worker \[(\d+)\] ready")
PID_APP = "tests.master.apps:pid"


def clean_env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TRICORN_", "LISTEN_", "WATCHDOG_"))
        and k not in ("WEB_CONCURRENCY", "NOTIFY_SOCKET")
    }
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def gone(pid: int) -> bool:
    """The process exited (a zombie waiting for a parent that is not us counts as gone)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def zombie(proc: psutil.Process) -> bool:
    """Exited but not reaped by its parent (False once it is gone altogether)."""
    try:
        return proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def group_gone(pgid: int) -> bool:
    """No live process is left in the process group (the CLI's session)."""
    for proc in psutil.process_iter(["pid"]):
        # The process may exit between the listing and getpgid().
        with contextlib.suppress(psutil.Error, ProcessLookupError):
            if os.getpgid(proc.pid) == pgid and not gone(proc.pid):
                return False
    return True


class Master:
    """A running ``tricorn`` command (``run_cli``) and its log file."""

    def __init__(self, proc: subprocess.Popen[bytes], log_path: Path) -> None:
        self.proc = proc
        self.log_path = log_path
        self.pid = proc.pid
        self.url = ""

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def ready_pids(self) -> list[int]:
        return [int(pid) for pid in READY_RE.findall(self.log())]

    def workers(self, pid: int | None = None) -> set[int]:
        try:
            children = psutil.Process(pid or self.pid).children()
        except psutil.NoSuchProcess:
            return set()
        return {child.pid for child in children if not gone(child.pid)}

    def serving(self) -> set[int]:
        """Workers told ready and still children of the master."""
        return set(self.ready_pids()) & self.workers()

    def signal(self, sig: int) -> None:
        os.kill(self.pid, sig)

    def get(self, path: str = "/", timeout: float = 5.0) -> httpx.Response:
        return httpx.get(self.url + path, timeout=timeout * TIME_UNIT)

    def wait_exit(self, timeout: float = 10.0) -> int:
        return self.proc.wait(timeout=timeout * TIME_UNIT)

    def address(self) -> tuple[str, int]:
        host, port = self.url[len("http://") :].rsplit(":", 1)
        return host, int(port)


@contextlib.contextmanager
def run_cli(
    tmp_path: Path,
    *args: str,
    app: str = PID_APP,
    env: dict[str, str] | None = None,
    wrapper: list[str] | None = None,
    pass_fds: tuple[int, ...] = (),
    wait_listening: bool = True,
) -> Iterator[Master]:
    """``python -m tricorn APP ARGS`` with test defaults (port 0, no lifespan, info logs);
    the loop is the default one (uvloop when installed)."""
    defaults = ["--port", "0", "--lifespan", "off", "--log-level", "info", "--no-use-colors"]
    command = [*(wrapper or [sys.executable, "-m", "tricorn"]), app, *defaults, *args]
    log_path = tmp_path / f"tricorn-{len(list(tmp_path.glob('tricorn-*.log')))}.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            command,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env or clean_env(),
            pass_fds=pass_fds,
        )
    master = Master(proc, log_path)
    try:
        if wait_listening:
            wait_for(
                lambda: LISTENING_RE.search(master.log()) or proc.poll() is not None,
                timeout=10,
                what="tricorn listening",
            )
            match = LISTENING_RE.search(master.log())
            if match:
                master.url = match.group(1)
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
    wait_for(lambda: len(master.workers()) == count, what=f"{count} workers\n{master.log()}")


def wait_log(master: Master, text: str, count: int = 1, timeout: float = 10.0) -> None:
    wait_for(
        lambda: master.log().count(text) >= count,
        timeout=timeout,
        what=f"{count} x {text!r}\n{master.log()}",
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

    def wait_served(self, more: int) -> None:
        target = self.served + more
        wait_for(lambda: self.served >= target or self.errors, what=f"{more} more requests")

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=10 * TIME_UNIT)


# -- acceptance: workers, signals, recycling, health ------------------------------------------


def test_four_workers_serve_and_scale(tmp_path: Path) -> None:
    with run_cli(tmp_path, "--workers", "4") as master:
        wait_serving(master, 4)
        assert "Started master process" in master.log()
        assert master.log().count("Tricorn running on") == 1  # the master's, not per worker
        seen = {int(master.get().text) for _ in range(20)}
        assert seen <= master.workers()
        master.signal(signal.SIGTTIN)
        wait_serving(master, 5)
        assert "Received SIGTTIN, scaled to 5 workers" in master.log()
        master.signal(signal.SIGTTOU)
        wait_workers(master, 4)
        assert "Received SIGTTOU, scaled to 4 workers" in master.log()
        for expected in (3, 2, 1):
            master.signal(signal.SIGTTOU)
            wait_workers(master, expected)
        master.signal(signal.SIGTTOU)
        wait_log(master, "already at 1 worker")
        assert len(master.workers()) == 1
        assert master.get().status_code == 200


@pytest.mark.parametrize("loop", ["auto", "asyncio"])
def test_hup_under_load_loses_nothing(tmp_path: Path, loop: str) -> None:
    with run_cli(tmp_path, "--workers", "4", "--loop", loop) as master:
        wait_serving(master, 4)
        before = master.workers()
        with Load(master.url) as load:
            for n in range(5):
                master.signal(signal.SIGHUP)
                wait_log(master, "Reloaded:", n + 1)
            wait_serving(master, 4)
            load.wait_served(20)
        assert not load.errors, load.errors[:3]
        assert not (master.workers() & before)  # every worker was replaced
        assert load.pids & before and load.pids - before  # and both generations served


def test_recycling_under_load_loses_nothing(tmp_path: Path) -> None:
    args = ["--workers", "2", "--limit-max-requests", "200", "--limit-max-requests-jitter", "50"]
    with run_cli(tmp_path, *args) as master:
        wait_serving(master, 2)
        originals = master.workers()
        with Load(master.url) as load:
            # Both originals and one replacement (which served 200+ requests) recycled.
            wait_log(master, "recycled (max requests", 3, timeout=30)
            wait_log(master, "draining (recycled)", 3)
            load.wait_served(100)
        assert not load.errors, load.errors[:3]
        assert originals <= load.pids and load.pids - originals
        # A recycled worker drains before it exits: wait for that, then look.
        wait_for(lambda: not (master.workers() & originals), what=f"originals gone\n{master.log()}")
        for line in re.findall(r"recycled \(max requests: (\d+) >= (\d+)\)", master.log()):
            assert 200 <= int(line[1]) <= 250


def test_killed_worker_is_replaced_within_a_second(tmp_path: Path) -> None:
    with run_cli(tmp_path, "--workers", "2") as master:
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


def test_blocked_worker_is_killed_and_replaced(tmp_path: Path) -> None:
    with run_cli(tmp_path, "--workers", "2", "--timeout-worker-healthcheck", "1") as master:
        wait_serving(master, 2)
        before = master.workers()
        with contextlib.suppress(httpx.HTTPError):
            master.get("/?block=60", timeout=0.2)
        wait_log(master, "timed out: no heartbeat")
        match = re.search(r"Worker \[(\d+)\] timed out", master.log())
        assert match
        stuck = int(match.group(1))
        assert stuck in before
        wait_for(lambda: gone(stuck), what="stuck worker killed")
        wait_serving(master, 2)
        assert master.workers() == (before - {stuck}) | (master.workers() - before)
        assert len(master.workers() - before) == 1
        assert {int(master.get().text) for _ in range(10)} <= master.workers()


def test_term_finishes_the_request_in_flight(tmp_path: Path) -> None:
    with run_cli(tmp_path, "--workers", "2", app="tests.apps:slow_stream") as master:
        wait_serving(master, 2)
        tree = master.workers() | {master.pid}
        with socket.create_connection(master.address(), timeout=10 * TIME_UNIT) as client:
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
        wait_for(lambda: all(gone(pid) for pid in tree), what="tree gone")
        assert group_gone(master.pid)


def test_startup_failure_exits_3(tmp_path: Path) -> None:
    args = ["--workers", "2", "--lifespan", "on"]
    with run_cli(tmp_path, *args, app="tests.apps:startup_failed") as master:
        assert master.wait_exit() == 3
        assert "failed to start (exit code 3); stopping" in master.log()
        wait_for(lambda: group_gone(master.pid), what="nothing left running")


def test_master_death_takes_workers_down(tmp_path: Path) -> None:
    with run_cli(tmp_path, "--workers", "2") as master:
        wait_serving(master, 2)
        workers = master.workers()
        master.signal(signal.SIGKILL)
        master.wait_exit()
        wait_for(lambda: all(gone(pid) for pid in workers), what="orphaned workers exit")


# -- acceptance: USR2 -------------------------------------------------------------------------


def test_usr2_under_load_hands_over_to_a_new_master(tmp_path: Path) -> None:
    pid_path = tmp_path / "app.pid"
    notify_path = str(tmp_path / "notify")
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(notify_path)
    notify.settimeout(10 * TIME_UNIT)
    env = clean_env(NOTIFY_SOCKET=notify_path)
    with notify, run_cli(tmp_path, "--workers", "2", "--pid", str(pid_path), env=env) as master:
        wait_serving(master, 2)
        assert notify.recv(4096).startswith(b"READY=1")
        old_workers = master.workers()
        with Load(master.url) as load:
            load.wait_served(20)
            master.signal(signal.SIGUSR2)
            assert master.wait_exit(timeout=20) == 0  # the old master drained and left
            load.wait_served(50)
        assert not load.errors, load.errors[:3]
        new_pid = int(pid_path.read_text())
        assert new_pid != master.pid
        assert not (tmp_path / "app.pid.oldbin").exists()
        assert f"Telling old master [{master.pid}] to stop (SIGTERM)" in master.log()
        assert notify.recv(4096).decode().startswith(f"MAINPID={new_pid}\nREADY=1")
        wait_for(lambda: all(gone(pid) for pid in old_workers), what="old workers gone")
        new_workers = master.workers(new_pid)
        assert len(new_workers) == 2 and not (new_workers & old_workers)
        assert int(master.get().text) in new_workers  # the new master's workers serve
        # The new master is fully in charge: a TERM stops it and removes the pid file.
        os.kill(new_pid, signal.SIGTERM)
        wait_for(lambda: gone(new_pid), what="new master exits")
        assert not pid_path.exists()
        assert notify.recv(4096) == b"STOPPING=1"


# -- operations: pid file, status, systemd, preload, listeners ---------------------------------


def test_pid_file_and_status(tmp_path: Path) -> None:
    pid_path = tmp_path / "app.pid"
    with run_cli(tmp_path, "--workers", "2", "--pid", str(pid_path), "--name", "shop") as master:
        wait_serving(master, 2)
        assert pid_path.read_text() == f"{master.pid}\n"
        assert psutil.Process(master.pid).cmdline()[0] == "tricorn: master [shop]"
        for pid in master.workers():
            assert psutil.Process(pid).cmdline()[0] == "tricorn: worker [shop]"
        for _ in range(5):
            master.get()
        status = subprocess.run(
            [sys.executable, "-m", "tricorn", "status", "--pid", str(pid_path)],
            cwd=ROOT,
            env=clean_env(),
            capture_output=True,
            text=True,
            timeout=10 * TIME_UNIT,
            check=False,
        )
        assert status.returncode == 0, status.stderr
        lines = status.stdout.splitlines()
        assert lines[0].startswith(f"master {master.pid} [shop] running, up ")
        assert lines[2].split() == ["PID", "AGE", "STATE", "GEN", "REQUESTS", "RSS", "HEARTBEAT"]
        rows = {int(line.split()[0]): line.split() for line in lines[3:]}
        assert set(rows) == master.workers()
        assert all(row[2] == "ready" and row[6] == "MiB" for row in rows.values())
        # A second server refuses the pid file of a live one.
        (tmp_path / "second").mkdir()
        with run_cli(tmp_path / "second", "--pid", str(pid_path), wait_listening=False) as second:
            assert second.wait_exit() == 1
            assert f"already owned by running process {master.pid}" in second.log()
        master.signal(signal.SIGINT)
        assert master.wait_exit() == 0
        assert not pid_path.exists()


def test_sd_notify_and_watchdog(tmp_path: Path) -> None:
    notify_path = str(tmp_path / "notify")
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(notify_path)
    notify.settimeout(10 * TIME_UNIT)
    env = clean_env(NOTIFY_SOCKET=notify_path, WATCHDOG_USEC="200000")
    received: list[str] = []

    def expect(prefix: str) -> str:
        while True:
            message = notify.recv(4096).decode()
            received.append(message)
            if message.startswith(prefix):
                return message

    with notify, run_cli(tmp_path, "--workers", "2", env=env) as master:
        expect("READY=1")
        expect("WATCHDOG=1")
        master.signal(signal.SIGHUP)
        reloading = expect("RELOADING=1")
        assert re.fullmatch(r"RELOADING=1\nMONOTONIC_USEC=\d+", reloading)
        expect("READY=1")
        assert "Reloaded:" in master.log()
        master.signal(signal.SIGTERM)
        expect("STOPPING=1")
        assert master.wait_exit() == 0
    kinds = {message.split("=", 1)[0] for message in received}
    assert kinds == {"READY", "WATCHDOG", "RELOADING", "STOPPING"}


def test_preload_imports_in_the_master(tmp_path: Path) -> None:
    with run_cli(tmp_path, "--workers", "1", "--preload") as master:
        wait_serving(master, 1)
        assert int(master.get("/?imported=1").text) == master.pid
    with run_cli(tmp_path, "--workers", "2") as master:
        wait_serving(master, 2)
        assert int(master.get("/?imported=1").text) in master.workers()


def test_socket_activation_and_several_binds(tmp_path: Path) -> None:
    activated = socket.socket()
    activated.bind(("127.0.0.1", 0))
    activated.listen()
    uds = str(tmp_path / "app.sock")
    # As systemd does: the socket as fd 3, LISTEN_PID naming the exec'd process itself.
    wrapper = [
        sys.executable,
        "-c",
        "import os, sys; os.dup2(int(sys.argv[1]), 3); "
        "os.environ.update(LISTEN_FDS='1', LISTEN_PID=str(os.getpid())); "
        "os.execv(sys.executable, [sys.executable, '-m', 'tricorn', *sys.argv[2:]])",
        str(activated.fileno()),
    ]
    fds = (activated.fileno(),)
    with activated, run_cli(tmp_path, wrapper=wrapper, pass_fds=fds) as master:
        wait_serving(master, 1)  # --workers 1 and LISTEN_FDS: the master runs
        assert "Started master process" in master.log()
        host, port = activated.getsockname()
        assert master.url == f"http://{host}:{port}"
        assert int(master.get().text) in master.workers()
    args = ["--bind", "127.0.0.1:0", "--bind", f"unix:{uds}", "--workers", "1"]
    with run_cli(tmp_path, *args) as master:
        wait_serving(master, 1)
        transport = httpx.HTTPTransport(uds=uds)
        with httpx.Client(transport=transport, timeout=5 * TIME_UNIT) as client:
            assert int(client.get("http://x/").text) in master.workers()
        assert int(master.get().text) in master.workers()
        master.signal(signal.SIGTERM)
        assert master.wait_exit() == 0
    assert not os.path.exists(uds)


def test_reuse_port_memory_and_lifetime_recycling(tmp_path: Path) -> None:
    args = ["--workers", "2", "--reuse-port", "--limit-max-memory", "1"]
    with run_cli(tmp_path, *args) as master:
        wait_log(master, "recycled (max memory")
        assert master.get().status_code == 200
    with run_cli(tmp_path, "--worker-lifetime", "0.5") as master:
        wait_log(master, "recycled (lifetime")
        wait_log(master, "draining (recycled)")
        assert master.get().status_code == 200


# -- bad input: one line, non-zero, nothing left running ---------------------------------------


def run_to_end(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tricorn", *args],
        cwd=ROOT,
        env=env or clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=20 * TIME_UNIT)
    finally:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    wait_for(lambda: group_gone(proc.pid), what="nothing left running")
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        yield busy.getsockname()[1]


def test_bad_input_is_one_line(tmp_path: Path, busy_port: int) -> None:
    stale = tmp_path / "stale.pid"
    stale.write_text("999999999\n")
    not_a_socket = os.open(tmp_path / "file", os.O_CREAT | os.O_RDONLY)
    app = [PID_APP, "--lifespan", "off"]
    cases: list[tuple[list[str], str]] = [
        (["status", "--pid", str(tmp_path / "none.pid")], "no such pid file"),
        (["status", "--pid", str(stale)], "process 999999999 is not running (stale pid file)"),
        ([*app, "--workers", "2", "--pid", str(tmp_path / "missing" / "app.pid")], "missing does"),
        ([*app, "--workers", "0"], "Invalid value for '--workers': 0 is not in the range x>=1"),
        ([*app, "--workers", "2", "--port", str(busy_port)], "Address already in use"),
        ([*app, "--workers", "2", "--fd", str(not_a_socket)], f"--fd {not_a_socket} is not a"),
        ([*app, "--bind", "localhost"], "Invalid value for '--bind': expected HOST:PORT"),
        ([*app, "--limit-max-memory", "0"], "Invalid value for '--limit-max-memory'"),
    ]
    try:
        # A pool, not bare threads: an error inside run_to_end() must fail the test as itself.
        with concurrent.futures.ThreadPoolExecutor(len(cases)) as pool:
            futures = [pool.submit(run_to_end, *args) for args, _ in cases]
            results = [future.result(timeout=30 * TIME_UNIT) for future in futures]
    finally:
        os.close(not_a_socket)
    for (args, message), result in zip(cases, results, strict=True):
        output = result.stdout + result.stderr
        assert result.returncode != 0, (args, output)
        assert output.count("\n") == 1 and message in output, (args, output)
        assert "Traceback" not in output


def test_stray_signal_is_one_log_line_not_an_outage(tmp_path: Path) -> None:
    with run_cli(tmp_path, "--workers", "2") as master:
        wait_serving(master, 2)
        before = master.workers()
        for sig in (signal.SIGALRM, signal.SIGPWR):  # both would kill an unprepared process
            master.signal(sig)
            wait_log(master, f"Ignoring {sig.name}: the master acts on HUP, INT, QUIT, TERM")
        assert master.proc.poll() is None
        assert master.workers() == before
        assert master.get().status_code == 200


@pytest.mark.skipif(
    shutil.which("systemd-socket-activate") is None,
    reason="needs systemd-socket-activate (Debian package systemd)",
)
def test_real_socket_activation_serves_the_request_that_started_it(tmp_path: Path) -> None:
    # systemd's own tool: it listens, and only execs tricorn (LISTEN_FDS=1) once a client
    # connects, so the first request is sent before any server process exists.
    path = str(tmp_path / "activated.sock")
    wrapper = ["systemd-socket-activate", "--listen", path, sys.executable, "-m", "tricorn"]
    with run_cli(tmp_path, "--workers", "2", wrapper=wrapper, wait_listening=False) as master:
        wait_for(lambda: os.path.exists(path), what="the activation socket")
        assert "Started master process" not in master.log()
        transport = httpx.HTTPTransport(uds=path)
        with httpx.Client(transport=transport, timeout=10 * TIME_UNIT) as client:
            response = client.get("http://activated/")
            assert response.status_code == 200
            wait_log(master, f"Master [{master.pid}] ready with 2 workers")
            assert int(response.text) in master.workers()
            assert int(client.get("http://activated/").text) in master.workers()
        master.signal(signal.SIGTERM)
        assert master.wait_exit() == 0
    # The socket belongs to the activator (a .socket unit): left in place for the next start.
    assert os.path.exists(path)


def _pid_namespaces_work() -> bool:
    try:
        probe = ["unshare", "--pid", "--fork", "--mount-proc", "true"]
        return subprocess.run(probe, capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.mark.skipif(
    not _pid_namespaces_work(), reason="needs `unshare --pid` (util-linux, as root)"
)
def test_master_as_pid_1_reaps_orphans_and_stops_cleanly(tmp_path: Path) -> None:
    # As a container's init: the master is PID 1 of a fresh pid namespace, so every orphan
    # in it (here: a worker's grandchild) is re-parented to the master, which must reap it.
    wrapper = ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child"]
    wrapper += [sys.executable, "-m", "tricorn"]
    args = ["--workers", "2", "--log-level", "debug"]
    with run_cli(tmp_path, *args, wrapper=wrapper) as master:
        (inner,) = psutil.Process(master.pid).children()  # unshare's child: the master
        master.pid = inner.pid
        wait_log(master, "Master [1] ready with 2 workers")  # logged pids are the namespace's
        assert "Running as PID 1: orphaned processes are reaped" in master.log()
        orphans = {int(master.get("/?orphan=1").text) for _ in range(3)}
        for orphan in orphans:  # pids inside the namespace, as the master logs them
            wait_log(master, f"Reaped process [{orphan}] (exit code 0)")
        assert not [child for child in inner.children() if zombie(child)]
        master.signal(signal.SIGTERM)
        assert master.wait_exit() == 0  # unshare exits with the master's status
        assert "Received SIGTERM, stopping gracefully" in master.log()
