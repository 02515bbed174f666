"""Signal queue, pid file and listeners of the master, without forking."""

from __future__ import annotations

import logging
import os
import select
import signal
import socket
import sys
import threading
from pathlib import Path

import pytest

from tests.master.fakes import Logs, fake_config
from tests.utils import wait_for
from tricorn.cli.status import format_age, render
from tricorn.config import Config
from tricorn.logs import reopen_log_files
from tricorn.master.control import ControlError, ControlServer, query
from tricorn.master.pidfile import PidFile, PidFileError, read_pid
from tricorn.master.reexec import (
    REEXEC_PARENT_ENV,
    child_environment,
    command_line,
    take_parent,
)
from tricorn.master.signals import SignalQueue, signal_name
from tricorn.master.systemd import Notifier
from tricorn.net.listeners import REEXEC_FDS_ENV, Listeners, decode_fds, encode_fds, listen_fds
from tricorn.net.sockets import BindError, BindSpec, parse_bind

# -- signal queue -------------------------------------------------------------------------


def test_queue_keeps_order_and_wakes() -> None:
    queue = SignalQueue()
    try:
        assert select.select([queue], [], [], 0)[0] == []
        for sig in (signal.SIGHUP, signal.SIGTTIN, signal.SIGHUP, signal.SIGTERM):
            queue.put(sig)
        assert select.select([queue], [], [], 0)[0] == [queue]
        queue.drain()
        assert select.select([queue], [], [], 0)[0] == []
        assert queue.pop_all() == [signal.SIGHUP, signal.SIGTTIN, signal.SIGHUP, signal.SIGTERM]
        assert queue.pop_all() == []
    finally:
        queue.close()


def test_real_signals_land_in_the_queue() -> None:
    assert threading.current_thread() is threading.main_thread()
    before = signal.getsignal(signal.SIGUSR1)
    queue = SignalQueue([signal.SIGUSR1, signal.SIGUSR2])
    queue.install()
    try:
        os.kill(os.getpid(), signal.SIGUSR2)
        os.kill(os.getpid(), signal.SIGUSR1)
        wait_for(lambda: select.select([queue], [], [], 0)[0], what="wake-up byte")
        assert queue.pop_all() == [signal.SIGUSR2, signal.SIGUSR1]
    finally:
        queue.close()
    assert signal.getsignal(signal.SIGUSR1) is before


def test_install_outside_main_thread_is_a_no_op() -> None:
    queue = SignalQueue([signal.SIGUSR1])
    thread = threading.Thread(target=queue.install)
    thread.start()
    thread.join()
    assert signal.getsignal(signal.SIGUSR1) is not queue._handle  # noqa: SLF001
    queue.close()


def test_signal_name() -> None:
    assert signal_name(signal.SIGTTIN) == "SIGTTIN"
    assert signal_name(999) == "999"


def test_reopen_log_files(tmp_path: Path) -> None:
    import logging

    path = tmp_path / "app.log"
    handler = logging.FileHandler(path)
    logger = logging.getLogger("tricorn.test.reopen")
    logger.addHandler(handler)
    try:
        logger.warning("before")
        os.rename(path, tmp_path / "app.log.1")  # logrotate
        assert reopen_log_files() >= 1
        logger.warning("after")
        handler.flush()
        assert path.read_text() == "after\n"
    finally:
        logger.removeHandler(handler)
        handler.close()


# -- pid file -----------------------------------------------------------------------------


def test_pidfile_written_and_removed(tmp_path: Path) -> None:
    path = tmp_path / "app.pid"
    pidfile = PidFile(str(path))
    pidfile.create()
    assert path.read_text() == f"{os.getpid()}\n"
    assert [p.name for p in tmp_path.iterdir()] == ["app.pid"]  # no temporary left
    pidfile.remove()
    assert not path.exists()


def test_pidfile_refuses_live_owner(tmp_path: Path) -> None:
    path = tmp_path / "app.pid"
    path.write_text(f"{os.getppid()}\n")  # our parent: certainly alive, not us
    with pytest.raises(PidFileError, match=f"already owned by running process {os.getppid()}"):
        PidFile(str(path)).create()
    assert read_pid(str(path)) == os.getppid()


@pytest.mark.parametrize("content", ["999999999\n", "garbage", ""])
def test_pidfile_replaces_stale(tmp_path: Path, content: str) -> None:
    path = tmp_path / "app.pid"
    path.write_text(content)
    PidFile(str(path)).create()
    assert read_pid(str(path)) == os.getpid()


def test_pidfile_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(PidFileError, match="directory .*missing does not exist"):
        PidFile(str(tmp_path / "missing" / "app.pid")).create()


def test_pidfile_not_removed_when_taken_over(tmp_path: Path) -> None:
    path = tmp_path / "app.pid"
    pidfile = PidFile(str(path))
    pidfile.create()
    path.write_text("12345\n")  # a new master wrote its pid
    pidfile.remove()
    assert path.read_text() == "12345\n"


# -- --bind and LISTEN_FDS ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "spec"),
    [
        ("127.0.0.1:8000", BindSpec("tcp", host="127.0.0.1", port=8000)),
        ("localhost:0", BindSpec("tcp", host="localhost", port=0)),
        ("[::1]:8080", BindSpec("tcp", host="::1", port=8080)),
        ("unix:/run/app.sock", BindSpec("unix", path="/run/app.sock")),
        ("fd://3", BindSpec("fd", fd=3)),
    ],
)
def test_parse_bind(value: str, spec: BindSpec) -> None:
    assert parse_bind(value) == spec
    assert str(spec) == value


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ("127.0.0.1", "expected HOST:PORT"),
        ("::1:80", "expected HOST:PORT"),
        ("[::1]", "expected HOST:PORT"),
        ("[::1]80", "expected HOST:PORT"),
        (":80", "expected HOST:PORT"),
        ("host:http", "port must be an integer"),
        ("host:70000", "port must be an integer"),
        ("unix:", "empty unix socket path"),
        ("fd://x", "fd must be a non-negative integer"),
    ],
)
def test_parse_bind_errors(value: str, error: str) -> None:
    with pytest.raises(BindError, match=error) as info:
        parse_bind(value)
    assert str(info.value).startswith(f"--bind {value!r}")


def test_listen_fds() -> None:
    assert listen_fds({}, 10) == []
    assert listen_fds({"LISTEN_FDS": "2", "LISTEN_PID": "10"}, 10) == [3, 4]
    assert listen_fds({"LISTEN_FDS": "1"}, 10) == [3]
    assert listen_fds({"LISTEN_FDS": "2", "LISTEN_PID": "11"}, 10) == []  # not for us
    with pytest.raises(BindError, match="LISTEN_FDS"):
        listen_fds({"LISTEN_FDS": "two", "LISTEN_PID": "10"}, 10)


def test_listeners_bind_several(tmp_path: Path) -> None:
    uds = str(tmp_path / "app.sock")
    config = fake_config(bind=["127.0.0.1:0", "[::1]:0", f"unix:{uds}"])
    listeners = Listeners()
    try:
        try:
            listeners.open(config.bind_specs(), environ={})
        except BindError as exc:
            if "::1" not in str(exc):
                raise
            pytest.skip("no IPv6 loopback")
        described = listeners.describe()
        assert described[0].startswith("127.0.0.1:") and described[1].startswith("[::1]:")
        assert described[2] == f"unix:{uds}"
        assert oct(os.stat(uds).st_mode & 0o777) == "0o666"
        for sock in listeners.sockets:  # all listening already
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == 1
    finally:
        listeners.close()
    assert not os.path.exists(uds)


def test_listeners_errors(tmp_path: Path) -> None:
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    port = busy.getsockname()[1]
    read_fd, write_fd = os.pipe()
    not_a_socket = tmp_path / "file"
    not_a_socket.write_text("")
    try:
        for config, error in [
            (fake_config(port=port), f"cannot listen on 127.0.0.1:{port}: Address already in use"),
            (fake_config(fd=read_fd), f"--fd {read_fd} is not a socket"),
            (fake_config(uds=str(not_a_socket)), "exists and is not a socket"),
        ]:
            listeners = Listeners()
            with pytest.raises(BindError, match=error):
                listeners.open(config.bind_specs(), environ={})
            assert listeners.sockets == []
    finally:
        busy.close()
        os.close(read_fd)
        os.close(write_fd)


def test_stale_unix_socket_is_replaced_live_one_refused(tmp_path: Path) -> None:
    path = str(tmp_path / "app.sock")
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(path)
    stale.close()  # the file stays, nobody listens
    listeners = Listeners()
    listeners.open(fake_config(uds=path).bind_specs(), environ={})
    try:
        with pytest.raises(BindError, match="another server is listening"):
            Listeners().open(fake_config(uds=path).bind_specs(), environ={})
    finally:
        listeners.close()


def test_listen_fds_sockets(monkeypatch: pytest.MonkeyPatch) -> None:
    # systemd passes fds from 3 up; simulate with a socket duplicated onto a free fd >= 3.
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    listeners = Listeners()
    with monkeypatch.context() as patch:
        patch.setattr("tricorn.net.listeners.SD_LISTEN_FDS_START", sock.fileno())
        environ = {"LISTEN_FDS": "1", "LISTEN_PID": str(os.getpid())}
        listeners.open(fake_config().bind_specs(), environ=environ)
    assert [s.getsockname() for s in listeners.sockets] == [sock.getsockname()]
    listeners.sockets[0].detach()  # same fd as ``sock``
    listeners.sockets = []
    sock.close()


def test_reuse_port_gives_each_worker_its_own_listener() -> None:
    listeners = Listeners(reuse_port=True)
    listeners.open(fake_config().bind_specs(), environ={})
    try:
        (reserved,) = listeners.sockets
        assert reserved.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == 0
        first, second = listeners.for_worker(), listeners.for_worker()
        try:
            assert first[0].getsockname() == second[0].getsockname() == reserved.getsockname()
            assert first[0].getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == 1
        finally:
            for sock in first + second:
                sock.close()
    finally:
        listeners.close()


# -- pid file moves (USR2) ----------------------------------------------------------------------


def test_pidfile_move_and_allowed_owner(tmp_path: Path) -> None:
    path = tmp_path / "app.pid"
    pidfile = PidFile(str(path))
    pidfile.create()
    pidfile.move(str(path) + ".oldbin")
    assert not path.exists() and read_pid(str(path) + ".oldbin") == os.getpid()
    # The new master may take a file still naming the old one (our parent, alive).
    path.write_text(f"{os.getppid()}\n")
    PidFile(str(path)).create(os.getpid(), allowed_owner=os.getppid())
    assert read_pid(str(path)) == os.getpid()
    pidfile.remove()
    assert not os.path.exists(str(path) + ".oldbin")


# -- USR2: what crosses the exec ----------------------------------------------------------------


def test_reexec_environment_round_trip(monkeypatch: pytest.MonkeyPatch) -> None:
    assert decode_fds(encode_fds([(5, False), (6, True)])) == [(5, False), (6, True)]
    with pytest.raises(ValueError, match=REEXEC_FDS_ENV):
        decode_fds("5,x")
    env = child_environment({"A": "1", "WATCHDOG_PID": "10"}, [(3, True)], parent=10, pid=11)
    assert env == {
        "A": "1",
        "WATCHDOG_PID": "11",
        REEXEC_FDS_ENV: "3:owned",
        REEXEC_PARENT_ENV: "10",
    }
    assert take_parent(env) == 10 and REEXEC_PARENT_ENV not in env
    assert take_parent(env) is None
    monkeypatch.setattr(sys, "orig_argv", ["python3", "-m", "tricorn", "main:app"])
    assert command_line() == [sys.executable, "-m", "tricorn", "main:app"]


def test_listeners_are_inherited_by_a_new_master(tmp_path: Path) -> None:
    uds = str(tmp_path / "app.sock")
    old = Listeners()
    old.open(fake_config(bind=["127.0.0.1:0", f"unix:{uds}"]).bind_specs(), environ={})
    new = Listeners()
    try:
        handover = old.handover()
        assert [owned for _, owned in handover] == [False, True]
        # In the new master the same fds arrive through exec; here, duplicates of them.
        dups = [(os.dup(fd), owned) for fd, owned in handover]
        new.open(fake_config(port=1).bind_specs(), environ={REEXEC_FDS_ENV: encode_fds(dups)})
        assert new.describe() == old.describe()
        old.close(unlink=False)  # the old master leaves after a hand-over
        assert os.path.exists(uds)
        with socket.create_connection(new.sockets[0].getsockname()[:2], timeout=5):
            pass  # still listening
    finally:
        old.close()
        new.close()
    assert not os.path.exists(uds)  # owned by the new master, removed on its exit


# -- systemd notifications and the control socket -----------------------------------------------


def test_notifier_environment() -> None:
    assert not Notifier({}).enabled and not Notifier({}).notify("READY=1")
    assert Notifier({"NOTIFY_SOCKET": "@sd"}).address == "\0sd"
    assert Notifier({"WATCHDOG_USEC": "3000000"}, pid=5).watchdog_interval == 1.5
    assert (
        Notifier({"WATCHDOG_USEC": "3000000", "WATCHDOG_PID": "6"}, pid=5).watchdog_interval is None
    )
    assert Notifier({"WATCHDOG_USEC": "x"}).watchdog_interval is None
    # A socket nobody listens on: logged at debug level, never an error.
    assert not Notifier({"NOTIFY_SOCKET": "/nonexistent/notify"}).notify("READY=1")


def test_notifier_abstract_socket() -> None:
    name = f"tricorn-test-notify-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        assert Notifier({"NOTIFY_SOCKET": "@" + name}).main_pid(42)
        assert sock.recv(100) == b"MAINPID=42\nREADY=1"


def test_control_socket_answers_status() -> None:
    pid = os.getpid()  # the master's control socket is named after its pid
    server = ControlServer(pid)
    answers: list[dict[str, object]] = []
    try:
        client = threading.Thread(target=lambda: answers.append(query(pid)))
        client.start()
        wait_for(lambda: select.select([server], [], [], 0)[0], what="a client")
        server.answer({"master": {"pid": pid}, "workers": []})
        client.join(timeout=5)
        assert answers == [{"master": {"pid": pid}, "workers": []}]
    finally:
        server.close()
    with pytest.raises(ControlError, match=f"process {pid} does not answer"):
        query(pid)


def test_control_socket_of_another_pid_namespace_is_refused() -> None:
    # Same name, other process (as from a container sharing our network namespace).
    other = 2_000_000_000 + os.getpid() % 100_000_000
    server = ControlServer(other)
    try:
        with pytest.raises(ControlError, match="held by another process"):
            query(other)
    finally:
        server.close()


def test_status_table() -> None:
    status = {
        "master": {
            "pid": 10,
            "name": "main:app",
            "state": "running",
            "age": 3725,
            "target": 2,
            "generation": 1,
            "listening": ["127.0.0.1:8000"],
            "new_master": None,
        },
        "workers": [
            {"pid": 11, "age": 42.5, "state": "ready", "generation": 1, "requests": 1234,
             "rss": 30 * 1024 * 1024, "heartbeat": 0.25, "recycling": None},
            {"pid": 123, "age": 0.2, "state": "ready", "generation": 1, "requests": 0,
             "rss": None, "heartbeat": 0.0, "recycling": "max requests: 9 >= 8"},
        ],
    }  # fmt: skip
    assert render(status).splitlines() == [
        "master 10 [main:app] running, up 1h02m, 2 workers wanted, generation 1",
        "listening on 127.0.0.1:8000",
        "PID  AGE  STATE      GEN  REQUESTS       RSS  HEARTBEAT",
        " 11  42s  ready        1      1234  30.0 MiB   0.2s ago",
        "123   0s  recycling    1         0         -   0.0s ago",
    ]
    assert [format_age(s) for s in (5, 65, 3600, 90000)] == ["5s", "1m05s", "1h00m", "1d01h"]


# -- which configurations run the master -------------------------------------------------------


@pytest.mark.parametrize(
    "settings",
    [
        {"workers": 2},
        {"pid": "/tmp/x.pid"},
        {"preload": True},
        {"reuse_port": True},
        {"limit_max_memory": 100},
        {"worker_lifetime": 60},
        {"bind": ["127.0.0.1:0", "unix:/tmp/a.sock"]},
    ],
)
def test_master_triggers(settings: dict[str, object], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LISTEN_FDS", raising=False)
    monkeypatch.delenv("WEB_CONCURRENCY", raising=False)
    assert Config("main:app", log_config=None, **settings).needs_master  # type: ignore[arg-type]


def test_single_process_unless_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LISTEN_FDS", raising=False)
    monkeypatch.delenv("WEB_CONCURRENCY", raising=False)
    for settings in ({}, {"workers": 1, "bind": "127.0.0.1:0"}, {"name": "x"}):
        assert not Config("main:app", log_config=None, **settings).needs_master  # type: ignore[arg-type]
    monkeypatch.setenv("LISTEN_FDS", "1")
    monkeypatch.setenv("LISTEN_PID", str(os.getpid()))
    assert Config("main:app", log_config=None).needs_master
    monkeypatch.setenv("LISTEN_PID", str(os.getpid() + 1))  # not for us
    assert not Config("main:app", log_config=None).needs_master
    monkeypatch.setenv(REEXEC_FDS_ENV, "3")
    assert Config("main:app", log_config=None).needs_master


def test_server_hooks(logs: Logs) -> None:
    from tricorn import Config as TricornConfig
    from tricorn.worker.server import Server

    events: list[str] = []

    class Quiet(Server):
        announce = False

        def on_started(self) -> None:
            events.append("started" if self.started else "too early")

    config = TricornConfig("tests.apps:hello", lifespan="off", log_config=None)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = Quiet(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]})
    thread.start()
    try:
        wait_for(lambda: events, what="on_started")
    finally:
        server.should_exit = True
        thread.join(timeout=5)
        sock.close()
    assert events == ["started"]
    assert not any("running on" in message for message in logs.messages)


@pytest.mark.parametrize(("content", "warned"), [("1\n", False), ("0\n", True), (None, True)])
def test_reuse_port_warns_unless_the_kernel_migrates_queued_connections(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    content: str | None,
    warned: bool,
) -> None:
    from tricorn.net import listeners

    proc_file = tmp_path / "tcp_migrate_req"
    if content is not None:  # None: an older kernel without the setting
        proc_file.write_text(content)
    monkeypatch.setattr(listeners, "TCP_MIGRATE_REQ", str(proc_file))
    with caplog.at_level(logging.WARNING, logger="tricorn.error"):
        listeners.warn_unless_migrating()
    assert ("net.ipv4.tcp_migrate_req is not 1" in caplog.text) is warned


def test_a_worker_drains_within_the_masters_bound() -> None:
    # Without --timeout-graceful-shutdown the master still kills after its default bound;
    # the worker must know that bound to close idle connections and finish lifespan first.
    from tricorn.config import DEFAULT_GRACEFUL_TIMEOUT
    from tricorn.worker.channel import Channel
    from tricorn.worker.child import WorkerServer

    read_fd, write_fd = os.pipe()
    try:
        channel = Channel(write_fd, os.getpid())
        config = Config("tests.apps:hello", limit_max_requests=100, log_config=None)
        server = WorkerServer(config, channel)
        assert server.timeout_graceful_shutdown == DEFAULT_GRACEFUL_TIMEOUT
        assert server.limit_max_requests is None  # the master recycles, not the worker
        assert config.limit_max_requests == 100  # the worker's limits are its own
        config = Config("tests.apps:hello", timeout_graceful_shutdown=7, log_config=None)
        assert WorkerServer(config, channel).timeout_graceful_shutdown == 7
    finally:
        os.close(read_fd)
        os.close(write_fd)
