"""Signal queue, pid file and listeners of the master, without forking."""

from __future__ import annotations

import os
import select
import signal
import socket
import threading
from pathlib import Path

import pytest

from tests.master.fakes import fake_config
from tests.utils import wait_for
from tricorn.master.pidfile import PidFile, PidFileError, read_pid
from tricorn.master.signals import SignalQueue, reopen_log_files, signal_name
from tricorn.master.sockets import BindError, BindSpec, Listeners, listen_fds, parse_bind

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
            listeners.open(config, environ={})
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
                listeners.open(config, environ={})
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
    listeners.open(fake_config(uds=path), environ={})
    try:
        with pytest.raises(BindError, match="another server is listening"):
            Listeners().open(fake_config(uds=path), environ={})
    finally:
        listeners.close()


def test_listen_fds_sockets(monkeypatch: pytest.MonkeyPatch) -> None:
    # systemd passes fds from 3 up; simulate with a socket duplicated onto a free fd >= 3.
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    listeners = Listeners()
    with monkeypatch.context() as patch:
        patch.setattr("tricorn.master.sockets.SD_LISTEN_FDS_START", sock.fileno())
        listeners.open(fake_config(), environ={"LISTEN_FDS": "1", "LISTEN_PID": str(os.getpid())})
    assert [s.getsockname() for s in listeners.sockets] == [sock.getsockname()]
    listeners.sockets[0].detach()  # same fd as ``sock``
    listeners.sockets = []
    sock.close()


def test_reuse_port_gives_each_worker_its_own_listener() -> None:
    listeners = Listeners(reuse_port=True)
    listeners.open(fake_config(), environ={})
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
