"""The pre-fork master: binds the listeners once, forks workers and keeps them right.

Theory of operation: one thread, one loop. The loop waits (selector, bounded timeout) on
the signal queue's wake-up pipe and every worker's pipe, then, in this order: handles the
queued signals, reaps dead children, checks heartbeats and recycling limits, SIGKILLs
workers that overstayed their stop deadline, and finally ``manage_workers()`` brings the
set of workers back to the target. All decisions live in ``manage_workers()``:

* a worker is *current* when it runs the current generation (HUP bumps it) and is not
  marked for recycling; every other live worker is *old*;
* missing current workers are spawned (after the crash back-off, if any);
* an old worker is retired (SIGTERM: it drains) only once enough current workers are
  ready to keep ``num_workers`` serving; so HUP and recycling never dip capacity;
* extra current workers (after TTOU) are retired, booting ones first, then the oldest.

Nothing here blocks without a bound: every SIGTERM/SIGABRT comes with a deadline after
which the master sends SIGKILL, and every child is reaped (no zombies, also as PID 1, where
orphans of the whole container are re-parented to us and reaped by the same waitpid).

Around the loop: systemd is told READY/RELOADING/STOPPING/WATCHDOG (``systemd``), the
control socket answers ``tricorn status`` (``control``), and USR2 starts a new master that
takes the sockets over (``reexec``, where the hand-over is described).
"""

from __future__ import annotations

import logging
import os
import random
import selectors
import signal
import sys
import time
from typing import Any

from tricorn.master.control import ControlServer
from tricorn.master.pidfile import PidFile, PidFileError
from tricorn.master.process import WorkerProcess, WorkerState, describe_status, exit_code
from tricorn.master.reexec import spawn_master, take_parent
from tricorn.master.signals import SignalQueue, reopen_log_files, signal_name
from tricorn.master.sockets import BindError, Listeners
from tricorn.master.systemd import SYSTEMD_VARIABLES, Notifier
from tricorn.worker.channel import Channel
from tricorn.worker.child import STARTUP_FAILURE, run_worker, set_process_title
from tricorn.worker.server import log_running_on

logger = logging.getLogger("tricorn.error")

# A worker must say *ready* within this long after its fork (the app import included).
BOOT_TIMEOUT = 60.0
# SIGABRT lets a stuck worker log where it was stuck; SIGKILL follows after this long.
ABORT_GRACE = 1.0
# Master-side margin over --timeout-graceful-shutdown before SIGKILL (the worker also
# runs lifespan shutdown after the drain).
KILL_MARGIN = 1.0
# Drain bound when --timeout-graceful-shutdown is unset (never wait without a bound).
DEFAULT_GRACEFUL_TIMEOUT = 30.0
QUICK_STOP_TIMEOUT = 5.0
# Longest sleep of the loop: heartbeats, memory and lifetimes are checked this often.
TICK = 1.0
MIB = 1024 * 1024
OLDBIN = ".oldbin"


def backoff_delay(failures: int, base: float = 0.1, cap: float = 10.0) -> float:
    """Seconds to wait before respawning after ``failures`` crashes in a row.

    The first crash is replaced at once (a kill -9 must not cost capacity), then the wait
    doubles from ``base`` up to ``cap``; a worker reaching *ready* resets the count.
    """
    if failures <= 1:
        return 0.0
    return float(min(cap, base * 2 ** (failures - 2)))


def worker_count(config: Any) -> int:
    """--workers, else $WEB_CONCURRENCY, else 1."""
    value = getattr(config, "workers", None)
    if value is None:
        value = os.environ.get("WEB_CONCURRENCY", "1")
    try:
        count = int(value)
    except (TypeError, ValueError):
        raise ValueError(f"--workers {value!r}: expected a whole number") from None
    if count < 1:
        raise ValueError(f"--workers {count}: at least 1 worker is needed")
    return count


class Arbiter:
    """The master process. ``Arbiter(config).run()`` serves until stopped; the exit code.

    Call ``run()`` from the main thread of a process that may fork (it installs signal
    handlers and forks ``--workers`` workers). The exit code is 0 after a requested stop,
    3 when a worker could not start, 1 on a configuration error (logged in one line).
    """

    def __init__(self, config: Any, signals: SignalQueue | None = None) -> None:
        self.config = config
        self.signals = signals if signals is not None else SignalQueue()
        self.pid = os.getpid()
        self.workers: dict[int, WorkerProcess] = {}
        self.num_workers = 1
        self.generation = 0
        self.reloading = False
        self.stopping: str | None = None  # None, "graceful", "quick" or "now"
        self.exit_code = 0
        self.failures = 0  # unexpected deaths since a worker last became ready
        self.next_spawn_at = 0.0
        self.listeners = Listeners(reuse_port=bool(getattr(config, "reuse_port", False)))
        pid_path = getattr(config, "pid", None)
        self.pidfile = PidFile(pid_path) if pid_path else None
        self.selector = selectors.DefaultSelector()
        app = getattr(config, "app", None)
        self.name = getattr(config, "name", None) or (app if isinstance(app, str) else "app")
        self.healthcheck = float(getattr(config, "timeout_worker_healthcheck", None) or 5.0)
        graceful = getattr(config, "timeout_graceful_shutdown", None)
        self.graceful_timeout = DEFAULT_GRACEFUL_TIMEOUT if graceful is None else float(graceful)
        self.max_memory = getattr(config, "limit_max_memory", None)
        self._next_periodic = 0.0
        self.started_at = time.time()
        # PID 1 (a container's init): orphans of the whole container come to us to be
        # reaped, and our exit ends the container (so USR2 is refused).
        self.is_init = self.pid == 1
        self.notifier = Notifier()
        self._next_watchdog = 0.0
        self.announced = False  # the first generation was reported ready
        self.control: ControlServer | None = None
        # USR2: the new master we started, and whether it took over from us...
        self.reexec_pid: int | None = None
        self.handed_over = False
        # ...or, in a new master, the old one we take over from once our workers are ready.
        self.old_master: int | None = None

    # -- life cycle ------------------------------------------------------------------

    def run(self) -> int:
        try:
            self.start()
        except (BindError, PidFileError, ValueError) as exc:
            logger.error("%s", exc)
            self.halt()
            # ConfigError carries the exit code the command line uses for it.
            return STARTUP_FAILURE if isinstance(exc, BindError) else getattr(exc, "exit_code", 1)
        try:
            while not (self.stopping and not self.workers):
                if self.stopping is None:
                    self.manage_workers()
                self.wait_for_events(self.next_timeout())
                self.handle_signals()
                self.reap_workers()
                self.check_workers(time.monotonic())
                self.feed_watchdog(time.monotonic())
        finally:
            self.halt()
        return self.exit_code

    def start(self) -> None:
        """Everything before the first fork; raises a one-line error on bad input."""
        self.num_workers = worker_count(self.config)
        if self.max_memory is not None:
            try:
                import psutil  # noqa: F401
            except ImportError:
                raise ValueError("--limit-max-memory needs psutil (pip install psutil)") from None
        self.old_master = take_parent(os.environ)
        if self.pidfile is not None:
            self.pidfile.create(self.pid, allowed_owner=self.old_master)
        self.listeners.open(self.config)
        if getattr(self.config, "preload", False) and not self.config.loaded:
            try:
                self.config.load()
            except ValueError:
                raise
            except Exception as exc:
                logger.exception("Could not preload the app")
                raise ValueError(f"--preload: the app failed to load: {exc!r}") from None
        self.selector.register(self.signals.fileno(), selectors.EVENT_READ, None)
        self.signals.install()
        try:
            self.control = ControlServer(self.pid)
        except OSError as exc:
            logger.warning("No control socket, tricorn status will not answer: %s", exc)
        else:
            self.selector.register(self.control.fileno(), selectors.EVENT_READ, self.control)
        set_process_title(f"tricorn: master [{self.name}]")
        logger.info("Started master process [%d]", self.pid)
        if self.old_master is not None:
            logger.info("Taking over from master [%d] once the workers are ready", self.old_master)
        if self.is_init:
            logger.info("Running as PID 1: orphaned processes are reaped")
        for sock in self.listeners.sockets:
            log_running_on(self.config, sock)

    def halt(self) -> None:
        """Leave nothing behind: SIGKILL and reap every worker (bounded), close listeners,
        remove the pid file, restore signal handlers."""
        for worker in self.workers.values():
            worker.kill()
        deadline = time.monotonic() + 5.0
        while self.workers and time.monotonic() < deadline:
            self.wait_for_events(0.05)
            self.reap_workers()
        for worker in self.workers.values():
            logger.error("Worker [%d] could not be reaped", worker.pid)
            worker.close()
        if self.control is not None:
            self.control.close()
            self.control = None
        # After a hand-over the unix socket files are the new master's: leave them.
        self.listeners.close(unlink=not self.handed_over)
        if self.pidfile is not None:
            self.pidfile.remove()
        self.signals.close()
        self.selector.close()
        if self.workers or self.stopping:
            logger.info("Stopping master process [%d]", self.pid)

    def stop(self, quick: bool = False) -> None:
        """Stop every worker: drain (SIGTERM) or quick (SIGQUIT), SIGKILL after the bound."""
        mode = "quick" if quick else "graceful"
        if self.stopping in (mode, "quick", "now"):
            return
        self.stopping_started()
        self.stopping = mode
        now = time.monotonic()
        if quick:
            sig, bound = signal.SIGQUIT, QUICK_STOP_TIMEOUT
        else:
            sig, bound = signal.SIGTERM, self.graceful_timeout + KILL_MARGIN
        for worker in self.workers.values():
            worker.stop(sig, now + bound)

    def stop_now(self) -> None:
        self.stopping_started()
        self.stopping = "now"
        for worker in self.workers.values():
            worker.state = WorkerState.STOPPING
            worker.kill()

    def stopping_started(self) -> None:
        if self.stopping:
            return
        if self.reexec_pid is not None:
            # Stopped while a new master (USR2) runs: it takes over, we only go away.
            self.handed_over = True
            logger.info("Master [%d] hands over to new master [%d]", self.pid, self.reexec_pid)
        else:
            self.notifier.stopping()

    # -- the loop's steps ------------------------------------------------------------

    def next_timeout(self) -> float:
        now = time.monotonic()
        deadlines = [now + TICK]
        deadlines.extend(w.kill_at for w in self.workers.values() if w.kill_at and not w.killed)
        if self.stopping is None and self.next_spawn_at > now:
            deadlines.append(self.next_spawn_at)
        if self.notifier.watchdog_interval is not None:
            deadlines.append(self._next_watchdog)
        return max(0.0, min(deadlines) - now)

    def wait_for_events(self, timeout: float) -> None:
        """Wait for a signal or a worker message (at most ``timeout``) and read them."""
        try:
            events = self.selector.select(timeout)
        except InterruptedError:
            return
        now = time.monotonic()
        for key, _ in events:
            worker = key.data
            if worker is None:
                self.signals.drain()
                continue
            if isinstance(worker, ControlServer):
                worker.answer(self.status())
                continue
            assert isinstance(worker, WorkerProcess)
            lines = worker.read()
            if lines is None:  # the worker closed its end (exiting); reaping follows
                self.selector.unregister(worker.fd)
                worker.close()
                continue
            for line in lines:
                if worker.handle_message(line, now):
                    self.worker_ready(worker)

    def handle_signals(self) -> None:
        for sig in self.signals.pop_all():
            handler = getattr(self, "handle_" + signal_name(sig)[3:].lower(), None)
            if handler is not None:
                handler()

    def reap_workers(self) -> None:
        """Collect every exited child (``waitpid(-1, WNOHANG)``) and decide what follows."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid == self.reexec_pid:
                self.new_master_exited(status)
                continue
            worker = self.workers.pop(pid, None)
            if worker is None:
                # Not ours: an orphan re-parented to us (we may be PID 1). Reaped, done.
                logger.debug("Reaped process [%d] (%s)", pid, describe_status(status))
                continue
            if worker.fd >= 0:
                self.selector.unregister(worker.fd)
                worker.close()
            self.worker_exited(worker, status)

    def check_workers(self, now: float) -> None:
        """Heartbeats, boot deadline, recycling limits, and SIGKILL past a stop deadline."""
        for worker in list(self.workers.values()):
            if worker.state is WorkerState.STOPPING:
                if worker.kill_at is not None and now >= worker.kill_at and not worker.killed:
                    logger.warning("Worker [%d] did not stop in time, sending SIGKILL", worker.pid)
                    worker.kill()
            elif worker.state is WorkerState.READY:
                silent = now - worker.last_heartbeat
                if silent > self.healthcheck:
                    logger.error(
                        "Worker [%d] timed out: no heartbeat for %.1f s, sending SIGABRT",
                        worker.pid,
                        silent,
                    )
                    worker.stop(signal.SIGABRT, now + ABORT_GRACE)
            elif now - worker.born > BOOT_TIMEOUT:
                logger.error(
                    "Worker [%d] timed out: not ready %.0f s after start, sending SIGABRT",
                    worker.pid,
                    BOOT_TIMEOUT,
                )
                worker.stop(signal.SIGABRT, now + ABORT_GRACE)
        if self.stopping is None and now >= self._next_periodic:
            self._next_periodic = now + TICK
            self.check_recycling(now)

    def check_recycling(self, now: float) -> None:
        """Mark a worker for replacement once it reached a limit (requests, memory, age)."""
        for worker in self.workers.values():
            if worker.state is WorkerState.STOPPING:
                continue
            rss = worker.read_rss()
            if worker.state is not WorkerState.READY or worker.recycle_reason is not None:
                continue
            reason = None
            if worker.max_requests is not None and worker.requests >= worker.max_requests:
                reason = f"max requests: {worker.requests} >= {worker.max_requests}"
            elif self.max_memory is not None and rss is not None and rss > self.max_memory * MIB:
                reason = f"max memory: {rss / MIB:.0f} MiB > {self.max_memory} MiB"
            elif worker.lifetime is not None and worker.age(now) >= worker.lifetime:
                reason = f"lifetime: {worker.age(now):.0f} s >= {worker.lifetime:.0f} s"
            if reason is not None:
                worker.recycle_reason = reason
                logger.info("Worker [%d] recycled (%s)", worker.pid, reason)

    # -- keeping the right set of workers ---------------------------------------------

    def is_current(self, worker: WorkerProcess) -> bool:
        return (
            worker.state is not WorkerState.STOPPING
            and worker.generation == self.generation
            and worker.recycle_reason is None
        )

    def manage_workers(self) -> None:
        """Spawn what is missing, retire what is old or extra (see the module note)."""
        now = time.monotonic()
        live = [w for w in self.workers.values() if w.state is not WorkerState.STOPPING]
        current = [w for w in live if self.is_current(w)]
        old = sorted((w for w in live if not self.is_current(w)), key=lambda w: w.born)

        missing = self.num_workers - len(current)
        if missing > 0 and now >= self.next_spawn_at:
            for _ in range(missing):
                current.append(self.spawn_worker())

        ready = sum(1 for w in current if w.state is WorkerState.READY)
        # An old worker that is not serving yet goes at once; a serving one only when
        # enough new ones are ready to take its place (oldest first).
        serving_old = [w for w in old if w.state is WorkerState.READY]
        for worker in old:
            if worker.state is WorkerState.BOOTING:
                self.retire_worker(worker, now)
        while serving_old and ready + len(serving_old) > self.num_workers:
            self.retire_worker(serving_old.pop(0), now)
        old = serving_old

        extra = len(current) - self.num_workers
        if extra > 0:
            # Booting ones first (nothing to drain), then the oldest.
            by_preference = sorted(current, key=lambda w: (w.state is WorkerState.READY, w.born))
            for worker in by_preference[:extra]:
                self.retire_worker(worker, now)

        if not self.announced and not old and ready >= self.num_workers:
            self.announced = True
            self.first_generation_ready(ready)
        if self.reloading and not old and ready >= self.num_workers:
            self.reloading = False
            logger.info("Reloaded: %d workers of generation %d ready", ready, self.generation)
            self.notifier.ready(f"{ready} workers")

    def first_generation_ready(self, ready: int) -> None:
        """Tell systemd we serve; a master started by USR2 now takes over from the old one."""
        logger.info("Master [%d] ready with %d workers", self.pid, ready)
        old, self.old_master = self.old_master, None
        if old is None:
            self.notifier.ready(f"{ready} workers")
            return
        self.notifier.main_pid(self.pid, f"{ready} workers")
        # Only our parent: after a long boot the pid could have been reused by now.
        if os.getppid() != old:
            logger.warning("Old master [%d] is already gone", old)
            return
        logger.info("Telling old master [%d] to stop (SIGTERM)", old)
        try:
            os.kill(old, signal.SIGTERM)
        except ProcessLookupError:
            logger.warning("Old master [%d] is already gone", old)

    def spawn_worker(self) -> WorkerProcess:
        worker = self.start_process()
        worker.generation = self.generation
        limit = getattr(self.config, "limit_max_requests", None)
        if limit is not None:
            jitter = getattr(self.config, "limit_max_requests_jitter", 0) or 0
            worker.max_requests = limit + random.randint(0, jitter)
        lifetime = getattr(self.config, "worker_lifetime", None)
        if lifetime is not None:
            # Up to 10% later, so workers started together do not all go together.
            worker.lifetime = lifetime * random.uniform(1.0, 1.1)
        self.workers[worker.pid] = worker
        if worker.fd >= 0:
            self.selector.register(worker.fd, selectors.EVENT_READ, worker)
        logger.info("Worker [%d] spawned (generation %d)", worker.pid, self.generation)
        return worker

    def start_process(self) -> WorkerProcess:
        """Fork one worker; in the child this never returns."""
        read_fd, write_fd = os.pipe()
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        pid = os.fork()
        if pid == 0:  # pragma: no cover (runs in the child; real-process tests cover it)
            os.close(read_fd)
            self._child_main(write_fd)
        os.close(write_fd)
        os.set_blocking(read_fd, False)
        return WorkerProcess(pid, read_fd, self.generation)

    def _child_main(self, write_fd: int) -> None:  # pragma: no cover (child process)
        code = 1
        try:
            # Shed the master's state: its signal handling, its pipes, its pid file, its
            # control socket, and systemd's variables (only the master notifies).
            self.signals.reset_in_child()
            self.selector.close()
            for other in self.workers.values():
                other.close()
            self.pidfile = None
            if self.control is not None:
                self.control.sock.close()
                self.control = None
            for name in SYSTEMD_VARIABLES:
                os.environ.pop(name, None)
            channel = Channel(write_fd, self.pid, interval=min(1.0, self.healthcheck / 4))
            try:
                sockets = self.listeners.for_worker()
            except BindError as exc:
                logger.error("%s", exc)
                code = STARTUP_FAILURE
            else:
                code = run_worker(self.config, sockets, channel, self.name)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:
            logger.exception("Worker [%d] crashed", os.getpid())
        finally:
            for stream in (sys.stdout, sys.stderr):
                stream.flush()
            logging.shutdown()
            os._exit(code)

    def retire_worker(self, worker: WorkerProcess, now: float) -> None:
        """Drain ``worker`` gracefully (SIGTERM), SIGKILL after the shutdown bound."""
        if worker.recycle_reason is not None:
            why = "recycled"
        elif worker.generation != self.generation:
            why = "reload"
        else:
            why = "scaled down"
        logger.info("Worker [%d] draining (%s)", worker.pid, why)
        worker.stop(signal.SIGTERM, now + self.graceful_timeout + KILL_MARGIN)

    def new_master_exited(self, status: int) -> None:
        pid, self.reexec_pid = self.reexec_pid, None
        how = describe_status(status)
        if self.handed_over:
            logger.info("New master [%d] exited (%s)", pid, how)
            return
        logger.error(
            "New master [%d] exited (%s) before taking over; master [%d] keeps serving",
            pid,
            how,
            self.pid,
        )
        if self.pidfile is not None and self.pidfile.path.endswith(OLDBIN):
            try:
                self.pidfile.move(self.pidfile.path[: -len(OLDBIN)])
            except PidFileError as exc:
                logger.error("%s", exc)

    def feed_watchdog(self, now: float) -> None:
        interval = self.notifier.watchdog_interval
        if interval is not None and now >= self._next_watchdog:
            self._next_watchdog = now + interval
            self.notifier.watchdog()

    def status(self) -> dict[str, Any]:
        """What ``tricorn status`` shows: the master and each worker (JSON-ready)."""
        now = time.monotonic()
        if self.stopping:
            state = "stopping"
        elif self.reloading:
            state = "reloading"
        else:
            state = "running"
        workers = []
        for worker in sorted(self.workers.values(), key=lambda w: w.born):
            workers.append(
                {
                    "pid": worker.pid,
                    "state": worker.state.value,
                    "generation": worker.generation,
                    "age": round(worker.age(now), 3),
                    "requests": worker.requests,
                    "rss": worker.read_rss(),
                    "heartbeat": round(now - worker.last_heartbeat, 3),
                    "recycling": worker.recycle_reason,
                }
            )
        return {
            "master": {
                "pid": self.pid,
                "name": self.name,
                "state": state,
                "age": round(time.time() - self.started_at, 3),
                "target": self.num_workers,
                "generation": self.generation,
                "listening": self.listeners.describe(),
                "new_master": self.reexec_pid,
            },
            "workers": workers,
        }

    def worker_ready(self, worker: WorkerProcess) -> None:
        self.failures = 0
        logger.info("Worker [%d] ready", worker.pid)

    def worker_exited(self, worker: WorkerProcess, status: int) -> None:
        how = describe_status(status)
        if worker.state is WorkerState.STOPPING or self.stopping:
            logger.info("Worker [%d] exited (%s)", worker.pid, how)
            return
        if exit_code(status) == STARTUP_FAILURE:
            logger.error("Worker [%d] failed to start (%s); stopping", worker.pid, how)
            self.exit_code = STARTUP_FAILURE
            self.stop()
            return
        self.failures += 1
        delay = backoff_delay(self.failures)
        self.next_spawn_at = time.monotonic() + delay
        if delay:
            logger.error("Worker [%d] died (%s); respawning in %.1f s", worker.pid, how, delay)
        else:
            logger.error("Worker [%d] died (%s)", worker.pid, how)

    # -- signal handlers (called from the loop, never from the signal handler) ---------

    def handle_int(self) -> None:
        if self.stopping:
            logger.info("Received SIGINT again, stopping now")
            self.stop_now()
        else:
            logger.info("Received SIGINT, stopping gracefully")
            self.stop()

    def handle_term(self) -> None:
        if self.stopping:
            logger.info("Received SIGTERM again, stopping now")
            self.stop_now()
        else:
            logger.info("Received SIGTERM, stopping gracefully")
            self.stop()

    def handle_quit(self) -> None:
        logger.info("Received SIGQUIT, stopping quickly")
        self.stop(quick=True)

    def handle_hup(self) -> None:
        if self.stopping:
            return
        self.generation += 1
        self.reloading = True
        logger.info("Received SIGHUP, reloading %d workers", self.num_workers)
        self.notifier.reloading()

    def handle_ttin(self) -> None:
        if self.stopping:
            return
        self.num_workers += 1
        logger.info("Received SIGTTIN, scaled to %d workers", self.num_workers)

    def handle_ttou(self) -> None:
        if self.stopping:
            return
        if self.num_workers <= 1:
            logger.warning("Received SIGTTOU, already at 1 worker: not scaling down")
            return
        self.num_workers -= 1
        logger.info("Received SIGTTOU, scaled to %d workers", self.num_workers)

    def handle_usr1(self) -> None:
        logger.info("Received SIGUSR1, reopening log files")
        reopen_log_files()
        for worker in self.workers.values():
            worker.signal(signal.SIGUSR1)

    def handle_usr2(self) -> None:
        if self.stopping:
            return
        if self.reexec_pid is not None:
            logger.warning(
                "Received SIGUSR2, but new master [%d] is still starting: ignored",
                self.reexec_pid,
            )
            return
        if self.is_init:
            logger.warning(
                "Received SIGUSR2 as PID 1: a new master cannot replace the container's "
                "init; use SIGHUP to reload the workers"
            )
            return
        if self.pidfile is not None:
            try:
                self.pidfile.move(self.pidfile.path + OLDBIN)
            except PidFileError as exc:
                logger.error("%s", exc)
        self.reexec_pid = self.start_master()
        logger.info("Received SIGUSR2, started new master [%d]", self.reexec_pid)

    def start_master(self) -> int:
        """Fork and exec the new master of USR2 (see ``tricorn.master.reexec``)."""
        return spawn_master(self.listeners.handover(), self.pid)
