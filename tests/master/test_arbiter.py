"""The master's logic without processes: workers are handles, ``os.kill`` and
``os.waitpid`` are fakes (tests/master/fakes.py)."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.master.fakes import FakeArbiter, FakeOS, Logs, fake_config, status_exit
from tests.utils import wait_for
from tricorn.master.arbiter import Arbiter
from tricorn.master.process import (
    BOOT_TIMEOUT,
    WorkerProcess,
    WorkerState,
    describe_status,
    exit_code,
)
from tricorn.master.rollout import backoff_delay
from tricorn.master.signals import SignalQueue
from tricorn.master.systemd import Notifier, monotonic_usec


def started(fake_os: FakeOS, **settings: object) -> FakeArbiter:
    arbiter = FakeArbiter(fake_config(**settings), fake_os)
    arbiter.num_workers = arbiter.config.workers
    arbiter.manage_workers()
    return arbiter


def states(arbiter: Arbiter) -> list[tuple[int, str]]:
    return sorted((w.generation, w.state.value) for w in arbiter.workers.values())


# -- back-off and statuses ----------------------------------------------------------------


def test_backoff_schedule() -> None:
    delays = [backoff_delay(n) for n in range(1, 11)]
    assert delays[:5] == [0.0, 0.1, 0.2, 0.4, 0.8]
    assert delays[-1] == 10.0  # capped
    assert delays == sorted(delays)


def test_describe_status() -> None:
    assert describe_status(status_exit(3)) == "exit code 3"
    assert describe_status(signal.SIGKILL) == "signal 9 (SIGKILL)"
    assert exit_code(status_exit(3)) == 3
    assert exit_code(signal.SIGKILL) is None


@pytest.mark.parametrize(
    ("workers", "env", "expected"), [(3, None, 3), (None, "5", 5), (None, None, 1)]
)
def test_worker_count(
    monkeypatch: pytest.MonkeyPatch, workers: int | None, env: str | None, expected: int
) -> None:
    monkeypatch.delenv("WEB_CONCURRENCY", raising=False)
    if env is not None:
        monkeypatch.setenv("WEB_CONCURRENCY", env)
    assert fake_config(workers=workers).workers == expected


@pytest.mark.parametrize("bad", [0, -1, "many"])
def test_worker_count_rejects(bad: object) -> None:
    with pytest.raises(ValueError, match="--workers"):
        fake_config(workers=bad)


# -- reaping ------------------------------------------------------------------------------


def test_reap_respawns_with_backoff(fake_os: FakeOS, logs: Logs) -> None:
    arbiter = started(fake_os)
    arbiter.ready_all()
    first, second = sorted(arbiter.workers)
    fake_os.exit(first, signal.SIGKILL)
    arbiter.reap_workers()
    assert first not in arbiter.workers
    assert f"Worker [{first}] died (signal 9 (SIGKILL))" in logs.text
    arbiter.manage_workers()  # the first crash is replaced at once
    assert len(arbiter.workers) == 2

    fake_os.exit(second, status_exit(1))
    arbiter.reap_workers()
    assert arbiter.failures == 2
    assert "died (exit code 1); respawning in 0.1 s" in logs.text
    arbiter.manage_workers()
    assert len(arbiter.workers) == 1  # waits for the back-off
    arbiter.next_spawn_at = 0.0
    arbiter.manage_workers()
    assert len(arbiter.workers) == 2
    arbiter.ready_all()
    assert arbiter.failures == 0  # ready resets the count


def test_reap_startup_failure_stops_all(fake_os: FakeOS) -> None:
    arbiter = started(fake_os, workers=3)
    pids = sorted(arbiter.workers)
    fake_os.exit(pids[0], status_exit(3))
    arbiter.reap_workers()
    assert arbiter.exit_code == 3
    assert arbiter.stopping == "graceful"
    for pid in pids[1:]:
        assert fake_os.signals_to(pid) == [signal.SIGTERM]


def test_reap_expected_exit_and_orphans(fake_os: FakeOS, logs: Logs) -> None:
    arbiter = started(fake_os, workers=1)
    (pid,) = arbiter.workers
    arbiter.retire_worker(arbiter.workers[pid], time.monotonic())
    fake_os.exit(pid, status_exit(0))
    fake_os.exited.append((4242, 0))  # not ours: an orphan re-parented to PID 1
    arbiter.reap_workers()
    assert not arbiter.workers
    assert arbiter.failures == 0
    assert f"Worker [{pid}] exited (exit code 0)" in logs.text


# -- HUP, recycling, TTIN/TTOU --------------------------------------------------------------


def test_hup_waits_for_ready_before_retiring(fake_os: FakeOS, logs: Logs) -> None:
    arbiter = started(fake_os, workers=2)
    arbiter.ready_all()
    old = sorted(arbiter.workers)
    arbiter.handle_hup()
    arbiter.manage_workers()
    new = sorted(set(arbiter.workers) - set(old))
    assert len(new) == 2
    assert not fake_os.sent  # nothing retired before a replacement is ready

    worker = arbiter.workers[new[0]]
    worker.handle_message("ready", time.monotonic())
    arbiter.manage_workers()
    assert fake_os.sent == [(old[0], signal.SIGTERM)]  # the oldest goes first
    assert arbiter.reloading

    arbiter.workers[new[1]].handle_message("ready", time.monotonic())
    arbiter.manage_workers()
    assert fake_os.sent == [(old[0], signal.SIGTERM), (old[1], signal.SIGTERM)]
    assert not arbiter.reloading
    assert "Reloaded: 2 workers of generation 1 ready" in logs.text
    arbiter.manage_workers()
    assert len(fake_os.sent) == 2 and len(arbiter.workers) == 4  # old ones still draining


def test_hup_twice_retires_unready_workers_at_once(fake_os: FakeOS) -> None:
    arbiter = started(fake_os, workers=1)
    arbiter.ready_all()
    (old,) = arbiter.workers
    arbiter.handle_hup()
    arbiter.manage_workers()
    (booting,) = set(arbiter.workers) - {old}
    arbiter.handle_hup()
    arbiter.manage_workers()
    assert fake_os.signals_to(booting) == [signal.SIGTERM]  # never served: no need to wait
    assert fake_os.signals_to(old) == []  # still the only one serving
    assert states(arbiter) == [(0, "ready"), (1, "stopping"), (2, "booting")]


def test_recycling_starts_the_replacement_first(fake_os: FakeOS, logs: Logs) -> None:
    arbiter = started(fake_os, workers=1, limit_max_requests=100, limit_max_requests_jitter=10)
    arbiter.ready_all()
    (pid,) = arbiter.workers
    worker = arbiter.workers[pid]
    assert worker.max_requests is not None and 100 <= worker.max_requests <= 110
    worker.handle_message("beat 111", time.monotonic())
    arbiter.check_recycling(time.monotonic())
    assert f"Worker [{pid}] recycled (max requests: 111 >= {worker.max_requests})" in logs.text
    arbiter.manage_workers()
    assert len(arbiter.workers) == 2 and not fake_os.sent
    arbiter.ready_all()
    arbiter.manage_workers()
    assert fake_os.sent == [(pid, signal.SIGTERM)]


def test_lifetime_recycling(fake_os: FakeOS) -> None:
    arbiter = started(fake_os, workers=1, worker_lifetime=10)
    arbiter.ready_all()
    (worker,) = arbiter.workers.values()
    assert worker.lifetime is not None and 10 <= worker.lifetime <= 11
    arbiter.check_recycling(worker.born + 5)
    assert worker.recycle_reason is None
    arbiter.check_recycling(worker.born + 12)
    assert worker.recycle_reason is not None and worker.recycle_reason.startswith("lifetime")


def test_ttin_ttou_bounds(fake_os: FakeOS, logs: Logs) -> None:
    arbiter = started(fake_os, workers=2)
    arbiter.ready_all()
    arbiter.handle_ttin()
    arbiter.manage_workers()
    assert arbiter.num_workers == 3 and len(arbiter.workers) == 3
    arbiter.ready_all()
    for _ in range(4):
        arbiter.handle_ttou()
        arbiter.manage_workers()
    assert arbiter.num_workers == 1
    assert "already at 1 worker" in logs.text
    serving = [w for w in arbiter.workers.values() if w.state is not WorkerState.STOPPING]
    assert len(serving) == 1
    assert len(fake_os.sent) == 2


# -- health checks and deadlines -----------------------------------------------------------


def test_stuck_worker_gets_abort_then_kill(fake_os: FakeOS, logs: Logs) -> None:
    arbiter = started(fake_os, workers=1, timeout_worker_healthcheck=5)
    arbiter.ready_all()
    (worker,) = arbiter.workers.values()
    now = worker.last_heartbeat
    arbiter.check_workers(now + 4)
    assert not fake_os.sent
    arbiter.check_workers(now + 6)
    assert fake_os.signals_to(worker.pid) == [signal.SIGABRT]
    assert f"Worker [{worker.pid}] timed out: no heartbeat for 6.0 s" in logs.text
    arbiter.manage_workers()
    assert len(arbiter.workers) == 2  # the replacement does not wait for the stuck one
    arbiter.check_workers(now + 8)
    assert fake_os.signals_to(worker.pid) == [signal.SIGABRT, signal.SIGKILL]


def test_booting_worker_is_not_heartbeat_checked(fake_os: FakeOS) -> None:
    arbiter = started(fake_os, workers=1, timeout_worker_healthcheck=1)
    (worker,) = arbiter.workers.values()
    arbiter.check_workers(worker.born + 30)
    assert not fake_os.sent
    arbiter.check_workers(worker.born + BOOT_TIMEOUT + 1)
    assert fake_os.signals_to(worker.pid) == [signal.SIGABRT]


def test_graceful_stop_escalates_to_kill(fake_os: FakeOS) -> None:
    arbiter = started(fake_os, workers=2, timeout_graceful_shutdown=2)
    arbiter.ready_all()
    arbiter.handle_term()
    now = time.monotonic()
    for pid in arbiter.workers:
        assert fake_os.signals_to(pid) == [signal.SIGTERM]
    arbiter.check_workers(now + 1)
    assert all(sig == signal.SIGTERM for _, sig in fake_os.sent)
    arbiter.check_workers(now + 4)
    for pid in arbiter.workers:
        assert fake_os.signals_to(pid) == [signal.SIGTERM, signal.SIGKILL]


def test_second_int_kills_at_once(fake_os: FakeOS) -> None:
    arbiter = started(fake_os, workers=1)
    (pid,) = arbiter.workers
    arbiter.handle_int()
    arbiter.handle_int()
    assert fake_os.signals_to(pid) == [signal.SIGTERM, signal.SIGKILL]
    assert arbiter.stopping == "now"


def test_messages_update_the_handle() -> None:
    worker = WorkerProcess(1, -1, 0, now=0.0)
    assert worker.feed(b"beat 1\nbe") == ["beat 1"]
    assert worker.feed(b"at 7\nready\n") == ["beat 7", "ready"]
    assert not worker.handle_message("beat 7", 3.0)
    assert worker.requests == 7 and worker.last_heartbeat == 3.0
    assert worker.handle_message("ready", 4.0)
    assert worker.state is WorkerState.READY
    assert not worker.handle_message("ready", 5.0)  # only once
    assert worker.feed(b"x" * 1000) == []  # garbage without newline is dropped


# -- the loop, in a thread, with signals fed to its queue --------------------------------


def test_unhandled_signal_is_logged_and_ignored(fake_os: FakeOS, logs: Logs) -> None:
    arbiter = started(fake_os)
    for sig in (signal.SIGPWR, signal.SIGCHLD):
        arbiter.signals.put(sig)
    arbiter.handle_signals()
    assert "Ignoring SIGPWR: the master acts on HUP" in logs.text
    assert "SIGCHLD" not in logs.text  # CHLD only wakes the loop to reap
    assert not arbiter.stopping and arbiter.num_workers == 2


def test_loop_in_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    queue = SignalQueue()
    fake = FakeOS(queue)
    fake.auto_exit = True
    monkeypatch.setattr(os, "kill", fake.kill)
    monkeypatch.setattr(os, "waitpid", fake.waitpid)
    # The loop runs in pytest's own process: leave its title alone.
    monkeypatch.setattr("tricorn.master.arbiter.set_process_title", lambda title: None)
    arbiter = FakeArbiter(fake_config(workers=2), fake, signals=queue)
    result: list[int] = []
    thread = threading.Thread(target=lambda: result.append(arbiter.run()), daemon=True)
    thread.start()
    try:
        wait_for(lambda: len(arbiter.workers) == 2, what="2 workers")
        queue.put(signal.SIGTTIN)
        wait_for(lambda: len(arbiter.workers) == 3, what="3 workers")
        queue.put(signal.SIGTTOU)
        wait_for(lambda: len(fake.exited) == 0 and len(arbiter.workers) == 2, what="2 workers")
        queue.put(signal.SIGTERM)
        thread.join(timeout=5)
        assert result == [0]
        assert not fake.live
    finally:
        if thread.is_alive():
            queue.put(signal.SIGINT)
            queue.put(signal.SIGINT)
            thread.join(timeout=5)


# -- systemd notifications, watchdog, status ---------------------------------------------------


class Notified:
    """A fake NOTIFY_SOCKET: a datagram socket the test binds and reads."""

    def __init__(self, path: str) -> None:
        import socket

        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.setblocking(False)

    def messages(self) -> list[str]:
        found = []
        while True:
            try:
                found.append(self.sock.recv(4096).decode())
            except BlockingIOError:
                return found


@pytest.fixture
def notified(tmp_path: Path) -> Iterator[tuple[Notified, Notifier]]:
    path = str(tmp_path / "notify")
    fake = Notified(path)
    try:
        yield fake, Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "1000000"})
    finally:
        fake.sock.close()


def test_ready_reload_and_stop_are_notified(
    fake_os: FakeOS, notified: tuple[Notified, Notifier]
) -> None:
    fake, notifier = notified
    arbiter = started(fake_os, workers=2)
    arbiter.notifier = notifier
    arbiter.manage_workers()
    assert fake.messages() == []  # nothing before the workers are ready
    arbiter.ready_all()
    arbiter.manage_workers()
    assert fake.messages() == ["READY=1\nSTATUS=2 workers"]
    arbiter.handle_hup()
    (reloading,) = fake.messages()
    assert reloading.startswith("RELOADING=1\nMONOTONIC_USEC=")
    assert abs(int(reloading.rsplit("=", 1)[1]) - monotonic_usec()) < 5_000_000
    arbiter.manage_workers()
    arbiter.ready_all()
    arbiter.manage_workers()
    assert fake.messages() == ["READY=1\nSTATUS=2 workers"]
    arbiter.handle_term()
    arbiter.handle_term()
    assert fake.messages() == ["STOPPING=1"]  # once


def test_watchdog_pings_every_half_period(
    fake_os: FakeOS, notified: tuple[Notified, Notifier]
) -> None:
    fake, notifier = notified
    arbiter = started(fake_os, workers=1)
    arbiter.notifier = notifier
    assert notifier.watchdog_interval == 0.5
    arbiter.feed_watchdog(100.0)
    arbiter.feed_watchdog(100.4)
    arbiter.feed_watchdog(100.5)
    assert fake.messages() == ["WATCHDOG=1", "WATCHDOG=1"]
    assert arbiter.next_timeout() <= 0.5


def test_status_lists_workers(fake_os: FakeOS) -> None:
    arbiter = started(fake_os, workers=2)
    arbiter.ready_all()
    first = min(arbiter.workers)
    arbiter.workers[first].handle_message("beat 12", time.monotonic())
    status = arbiter.status()
    assert status["master"]["state"] == "running" and status["master"]["target"] == 2
    rows = {row["pid"]: row for row in status["workers"]}
    assert set(rows) == set(arbiter.workers)
    assert rows[first]["requests"] == 12 and rows[first]["state"] == "ready"
    assert set(rows[first]) == {
        "pid", "state", "generation", "age", "requests", "rss", "heartbeat", "recycling"
    }  # fmt: skip


# -- USR2 and PID 1 ---------------------------------------------------------------------------


class UpgradingArbiter(FakeArbiter):
    """Starting the new master of USR2 is recorded, not forked."""

    def start_master(self) -> int:
        self.fake_os.live.add(4000)
        return 4000


def test_usr2_moves_the_pid_file_and_hands_over(
    fake_os: FakeOS, tmp_path: Path, logs: Logs, notified: tuple[Notified, Notifier]
) -> None:
    fake, notifier = notified
    pid_path = tmp_path / "app.pid"
    arbiter = UpgradingArbiter(fake_config(workers=1, pid=str(pid_path)), fake_os)
    arbiter.notifier = notifier
    assert arbiter.pidfile is not None
    arbiter.pidfile.create(arbiter.pid)
    arbiter.handle_usr2()
    assert arbiter.reexec_pid == 4000
    assert not pid_path.exists()
    assert (tmp_path / "app.pid.oldbin").read_text() == f"{arbiter.pid}\n"
    arbiter.handle_usr2()
    assert "new master [4000] is still starting: ignored" in logs.text

    # The new master failed before taking over: the pid file comes back, we keep serving.
    fake_os.exit(4000, status_exit(3))
    arbiter.reap_workers()
    assert arbiter.reexec_pid is None and not arbiter.handed_over
    assert "New master [4000] exited (exit code 3) before taking over" in logs.text
    assert pid_path.read_text() == f"{arbiter.pid}\n"

    # Second try; the new master's SIGTERM makes us hand over: no STOPPING=1 for systemd,
    # unix socket files left to the new master, our .oldbin removed.
    arbiter.handle_usr2()
    arbiter.handle_term()
    assert arbiter.handed_over and arbiter.stopping == "graceful"
    assert f"Master [{arbiter.pid}] hands over to new master [4000]" in logs.text
    assert fake.messages() == []
    closed: list[bool] = []
    arbiter.listeners.close = lambda unlink=True: closed.append(unlink)  # type: ignore[method-assign]
    arbiter.halt()
    assert closed == [False]
    assert not (tmp_path / "app.pid.oldbin").exists()


def test_new_master_tells_the_old_one_to_go_when_ready(
    fake_os: FakeOS, monkeypatch: pytest.MonkeyPatch, notified: tuple[Notified, Notifier]
) -> None:
    fake, notifier = notified
    fake_os.live.add(3000)
    monkeypatch.setattr(os, "getppid", lambda: 3000)
    arbiter = started(fake_os, workers=2)
    arbiter.notifier = notifier
    arbiter.old_master = 3000
    arbiter.manage_workers()
    assert fake_os.signals_to(3000) == []
    arbiter.ready_all()
    arbiter.manage_workers()
    assert fake_os.signals_to(3000) == [signal.SIGTERM]
    assert fake.messages() == [f"MAINPID={arbiter.pid}\nREADY=1\nSTATUS=2 workers"]
    arbiter.handle_hup()
    arbiter.manage_workers()
    arbiter.ready_all()
    arbiter.manage_workers()
    assert fake_os.signals_to(3000) == [signal.SIGTERM]  # only once


def test_old_master_pid_not_signalled_unless_it_is_our_parent(
    fake_os: FakeOS, monkeypatch: pytest.MonkeyPatch, logs: Logs
) -> None:
    fake_os.live.add(3000)
    monkeypatch.setattr(os, "getppid", lambda: 1)  # the old master died, pid maybe reused
    arbiter = started(fake_os, workers=1)
    arbiter.old_master = 3000
    arbiter.ready_all()
    arbiter.manage_workers()
    assert fake_os.signals_to(3000) == []
    assert "Old master [3000] is already gone" in logs.text


def test_pid_1_reaps_orphans_and_refuses_usr2(
    fake_os: FakeOS, monkeypatch: pytest.MonkeyPatch, logs: Logs
) -> None:
    monkeypatch.setattr(os, "getpid", lambda: 1)
    arbiter = UpgradingArbiter(fake_config(workers=1), fake_os)
    assert arbiter.is_init
    arbiter.num_workers = 1
    arbiter.manage_workers()
    arbiter.ready_all()
    (worker,) = arbiter.workers
    # Orphans of the container (not our workers) are re-parented to PID 1: reaped, logged.
    for orphan in (7001, 7002):
        fake_os.live.add(orphan)
        fake_os.exit(orphan, status_exit(0))
    arbiter.reap_workers()
    assert not fake_os.exited and list(arbiter.workers) == [worker]
    assert "Reaped process [7001] (exit code 0)" in logs.text
    assert "Reaped process [7002] (exit code 0)" in logs.text
    arbiter.handle_usr2()
    assert arbiter.reexec_pid is None
    assert "Received SIGUSR2 as PID 1" in logs.text
