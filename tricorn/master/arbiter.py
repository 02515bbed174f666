"""The pre-fork master: binds the listeners once, forks workers and keeps them right.

Theory of operation: one thread, one loop. The loop waits (selector, bounded timeout) on
the signal queue's wake-up pipe and every worker's pipe, then, in this order: handles the
queued signals, reaps dead children, checks heartbeats and recycling limits, SIGKILLs
workers that overstayed their stop deadline, and finally ``manage_workers()`` brings the
set of workers back to the target: which workers to start and which to retire is decided
by ``rollout.plan()`` (where the rules are), so HUP and recycling never dip capacity.

Nothing here blocks without a bound: every SIGTERM/SIGABRT comes with a deadline after
which the master sends SIGKILL, and every child is reaped (no zombies, also as PID 1, where
orphans of the whole container are re-parented to us and reaped by the same waitpid).

Around the loop, each in its own module: the per-worker checks (heartbeat, boot and stop
deadlines, recycling limits) are made by the worker's handle (``process``); systemd is
told READY/RELOADING/STOPPING/WATCHDOG (``systemd``); the control socket answers
``tricorn status`` (``control``); and USR2 starts a new master that takes the sockets over
(``reexec``, where the hand-over is described). What a forked worker runs is in
``tricorn.worker.child``; the master imports the worker's code, never the other way round.
"""

from __future__ import annotations

import logging
import os
import selectors
import signal
import time
from typing import Any

from tricorn.config import DEFAULT_GRACEFUL_TIMEOUT, STARTUP_FAILURE, Config
from tricorn.logs import reopen_log_files
from tricorn.master import rollout
from tricorn.master.control import ControlServer
from tricorn.master.pidfile import PidFile, PidFileError
from tricorn.master.process import (
    WorkerProcess,
    WorkerState,
    describe_status,
    exit_code,
    fork_worker,
)
from tricorn.master.reexec import HandOver, spawn_master
from tricorn.master.rollout import backoff_delay
from tricorn.master.signals import SignalQueue, signal_name
from tricorn.master.systemd import SYSTEMD_VARIABLES, Notifier
from tricorn.master.watcher import (
    ChangeFilter,
    FileWatcher,
    describe_changes,
    forget_user_modules,
    watched_dirs,
)
from tricorn.net.listeners import Listeners, warn_unless_migrating
from tricorn.net.sockets import BindError
from tricorn.worker.channel import Channel
from tricorn.worker.child import serve_forked, set_process_title
from tricorn.worker.server import log_running_on

logger = logging.getLogger("tricorn.error")

# Master-side margin over --timeout-graceful-shutdown before SIGKILL (the worker also
# runs lifespan shutdown after the drain).
KILL_MARGIN = 1.0
QUICK_STOP_TIMEOUT = 5.0
# Longest sleep of the loop: heartbeats, memory and lifetimes are checked this often.
TICK = 1.0
# For the log line about a signal the master ignores.
HANDLED_SIGNALS = "HUP, INT, QUIT, TERM, TTIN, TTOU, USR1 and USR2"


class Arbiter:
    """The master process. ``Arbiter(config).run()`` serves until stopped; the exit code.

    Call ``run()`` from the main thread of a process that may fork (it installs signal
    handlers and forks ``--workers`` workers). The exit code is 0 after a requested stop,
    3 when a worker could not start, 1 on a configuration error (logged in one line).
    """

    def __init__(self, config: Config, signals: SignalQueue | None = None) -> None:
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
        self.listeners = Listeners(reuse_port=config.reuse_port, backlog=config.backlog)
        self.pidfile = PidFile(config.pid) if config.pid else None
        self.selector = selectors.DefaultSelector()
        app = config.app
        self.name = config.name or (app if isinstance(app, str) else "app")
        self.healthcheck = float(config.timeout_worker_healthcheck or 5.0)
        graceful = config.timeout_graceful_shutdown
        self.graceful_timeout = DEFAULT_GRACEFUL_TIMEOUT if graceful is None else float(graceful)
        self.max_memory = config.limit_max_memory
        self._next_periodic = 0.0
        self.started_at = time.time()
        # PID 1 (a container's init): orphans of the whole container come to us to be
        # reaped, and our exit ends the container (so USR2 is refused).
        self.is_init = self.pid == 1
        self.notifier = Notifier()
        self.announced = False  # the first generation was reported ready
        self.control: ControlServer | None = None
        self.handover = HandOver(self.pid, self.pidfile)  # USR2, in either role
        # --reload: a watcher process reports changed files; the worker is replaced
        # stop-then-start (as uvicorn does), and a worker that cannot start waits for the
        # next change instead of stopping the master.
        self.watcher: FileWatcher | None = None
        self.waiting_for_change = False

    # The hand-over's state, as the loop and the tests see it.

    @property
    def reexec_pid(self) -> int | None:
        """The new master USR2 started, until it exits."""
        return self.handover.new_master

    @property
    def handed_over(self) -> bool:
        return self.handover.handed_over

    @property
    def old_master(self) -> int | None:
        """In a master started by USR2: the one we replace, until our workers are ready."""
        return self.handover.old_master

    @old_master.setter
    def old_master(self, pid: int | None) -> None:
        self.handover.old_master = pid

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
        self.num_workers = self.config.workers
        if self.config.reload:
            self.num_workers = 1  # Config warned that --workers is ignored
            if self.config.preload:
                raise ValueError(
                    "--preload cannot be used with --reload: the master would keep the old code"
                )
        if self.max_memory is not None:
            try:
                import psutil  # noqa: F401
            except ImportError:
                raise ValueError("--limit-max-memory needs psutil (pip install psutil)") from None
        self.handover.take_parent(os.environ)
        if self.pidfile is not None:
            self.pidfile.create(self.pid, allowed_owner=self.old_master)
        self.listeners.open(self.config.bind_specs())
        if self.listeners.reuse_port:
            warn_unless_migrating()
        if self.config.preload and not self.config.loaded:
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
        if self.config.reload:
            self.start_watcher()

    def start_watcher(self) -> None:
        """Fork the --reload file watcher (before any worker: see ``watcher``)."""
        config = self.config
        if self.watcher is None:
            dirs = watched_dirs(config.reload_dirs)
            change_filter = ChangeFilter(dirs, config.reload_includes, config.reload_excludes)
            self.watcher = FileWatcher(dirs, change_filter, float(config.reload_delay))
            logger.info("Will watch for changes in these directories: %s", [str(d) for d in dirs])
        self.watcher.start(self.shed_master_state)
        self.selector.register(self.watcher.fileno(), selectors.EVENT_READ, self.watcher)

    def files_changed(self, batches: list[list[str]]) -> None:
        """The watcher saw changes: replace the worker (stop, then start the new code)."""
        assert self.watcher is not None
        if [] in batches:  # armed: from now on no change goes unseen
            logger.info("Started reloader process [%d] using WatchFiles", self.watcher.pid)
        paths = sorted({path for batch in batches for path in batch})
        if not paths or self.stopping:
            return
        described = describe_changes(paths, self.watcher.dirs)
        logger.warning("WatchFiles detected changes in %s. Reloading...", described)
        self.waiting_for_change = False
        self.generation += 1
        now = time.monotonic()
        for worker in list(self.workers.values()):
            if worker.state is not WorkerState.STOPPING:
                self.retire_worker(worker, now)

    def halt(self) -> None:
        """Leave nothing behind: SIGKILL and reap every worker (bounded), close listeners,
        remove the pid file, restore signal handlers."""
        for worker in self.workers.values():
            worker.kill()
        if self.watcher is not None:
            self.watcher.stop()  # reaped with the workers below, or by init
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
        # Stopped while a new master (USR2) runs: it takes over, we only go away.
        if not self.stopping and not self.handover.hand_over():
            self.notifier.stopping()

    # -- the loop's steps ------------------------------------------------------------

    def next_timeout(self) -> float:
        now = time.monotonic()
        deadlines = [now + TICK]
        deadlines.extend(w.kill_at for w in self.workers.values() if w.kill_at and not w.killed)
        if self.stopping is None and self.next_spawn_at > now:
            deadlines.append(self.next_spawn_at)
        if self.notifier.watchdog_interval is not None:
            deadlines.append(self.notifier.next_watchdog)
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
            if isinstance(worker, FileWatcher):
                batches = worker.read()
                if batches is None:  # it exited; reaping restarts it
                    self.selector.unregister(worker.fd)
                    worker.close()
                else:
                    self.files_changed(batches)
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
            name = signal_name(sig)
            handler = getattr(self, "handle_" + name[3:].lower(), None)
            if handler is not None:
                handler()
            elif sig != signal.SIGCHLD:  # CHLD only wakes the loop, which then reaps
                logger.warning("Ignoring %s: the master acts on %s", name, HANDLED_SIGNALS)

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
                self.handover.new_master_exited(status)
                continue
            if self.watcher is not None and pid == self.watcher.pid:
                self.watcher_exited(status)
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

    def watcher_exited(self, status: int) -> None:
        assert self.watcher is not None
        if self.watcher.fd >= 0:
            self.selector.unregister(self.watcher.fd)
        self.watcher.close()
        self.watcher.pid = 0
        if not self.stopping:
            how = describe_status(status)
            logger.error("The --reload file watcher died (%s); restarting it", how)
            self.start_watcher()

    def check_workers(self, now: float) -> None:
        """Heartbeats, boot deadline, recycling limits, and SIGKILL past a stop deadline."""
        for worker in list(self.workers.values()):
            worker.check_health(now, self.healthcheck)
        if self.stopping is None and now >= self._next_periodic:
            self._next_periodic = now + TICK
            self.check_recycling(now)

    def check_recycling(self, now: float) -> None:
        """Mark a worker for replacement once it reached a limit (requests, memory, age)."""
        for worker in self.workers.values():
            worker.check_limits(now, self.max_memory)

    def feed_watchdog(self, now: float) -> None:
        self.notifier.feed_watchdog(now)

    def status(self) -> dict[str, Any]:
        """What ``tricorn status`` shows: the master and each worker (JSON-ready)."""
        now = time.monotonic()
        if self.stopping:
            state = "stopping"
        elif self.reloading:
            state = "reloading"
        else:
            state = "running"
        workers = sorted(self.workers.values(), key=lambda w: w.born)
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
            "workers": [worker.status(now) for worker in workers],
        }

    # -- keeping the right set of workers ---------------------------------------------

    def manage_workers(self) -> None:
        """Start what is missing, retire what is old or extra (``rollout.plan``)."""
        now = time.monotonic()
        may_spawn = now >= self.next_spawn_at and not self.waiting_for_change
        if self.watcher is not None and any(
            w.state is WorkerState.STOPPING for w in self.workers.values()
        ):
            may_spawn = False  # --reload: the old code stops before the new one starts
        plan = rollout.plan(self.workers.values(), self.generation, self.num_workers, may_spawn)
        for _ in range(plan.spawn):
            self.spawn_worker()
        for worker in plan.retire:
            self.retire_worker(worker, now)
        if plan.settled and not self.announced:
            self.announced = True
            self.first_generation_ready(plan.ready)
        if plan.settled and self.reloading:
            self.reloading = False
            logger.info("Reloaded: %d workers of generation %d ready", plan.ready, self.generation)
            self.notifier.ready(f"{plan.ready} workers")

    def first_generation_ready(self, ready: int) -> None:
        """Tell systemd we serve; a master started by USR2 now takes over from the old one."""
        logger.info(
            "Master [%d] ready with %d worker%s", self.pid, ready, "" if ready == 1 else "s"
        )
        if self.old_master is None:
            self.notifier.ready(f"{ready} workers")
        else:
            self.notifier.main_pid(self.pid, f"{ready} workers")
            self.handover.retire_old_master()

    def spawn_worker(self) -> WorkerProcess:
        worker = self.start_process()
        worker.generation = self.generation
        config = self.config
        worker.draw_limits(
            config.limit_max_requests, config.limit_max_requests_jitter, config.worker_lifetime
        )
        self.workers[worker.pid] = worker
        if worker.fd >= 0:
            self.selector.register(worker.fd, selectors.EVENT_READ, worker)
        logger.info("Worker [%d] spawned (generation %d)", worker.pid, self.generation)
        return worker

    def start_process(self) -> WorkerProcess:
        """Fork one worker running ``worker_main``; in the child this never returns."""
        return fork_worker(self.generation, self.worker_main)

    def worker_main(self, write_fd: int) -> int:
        """In a forked worker: shed the master's state, then serve; the exit code."""
        self.shed_master_state()
        if self.config.reload:
            # The modules of the watched directories the master (or the script that called
            # tricorn.run) imported are the old code: the worker imports them afresh.
            forget_user_modules(self.config.reload_dirs)
        channel = Channel(write_fd, self.pid, interval=min(1.0, self.healthcheck / 4))
        return serve_forked(self.config, self.listeners, channel, self.name)

    def shed_master_state(self) -> None:
        """In a child the master forked: drop its signal handling, pipes, pid file, control
        socket, watcher and systemd's variables (they are the master's alone: only the
        master speaks to systemd)."""
        for variable in SYSTEMD_VARIABLES:
            os.environ.pop(variable, None)
        self.signals.reset_in_child()
        self.selector.close()
        for other in self.workers.values():
            other.close()
        self.pidfile = None
        if self.control is not None:
            self.control.sock.close()
            self.control = None
        if self.watcher is not None:
            self.watcher.close()
            self.watcher = None

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

    def worker_ready(self, worker: WorkerProcess) -> None:
        self.failures = 0
        logger.info("Worker [%d] ready", worker.pid)

    def worker_exited(self, worker: WorkerProcess, status: int) -> None:
        how = describe_status(status)
        if worker.state is WorkerState.STOPPING or self.stopping:
            logger.info("Worker [%d] exited (%s)", worker.pid, how)
            return
        if exit_code(status) == STARTUP_FAILURE and self.watcher is not None:
            logger.error(
                "Worker [%d] failed to start (%s); waiting for file changes before "
                "starting it again",
                worker.pid,
                how,
            )
            self.waiting_for_change = True
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
    # Named handle_<signal>; a signal without one is logged and ignored (handle_signals).

    def handle_int(self) -> None:
        self.stop_on_request("SIGINT")

    def handle_term(self) -> None:
        self.stop_on_request("SIGTERM")

    def stop_on_request(self, name: str) -> None:
        """INT or TERM: drain; the same again while stopping: stop now."""
        if self.stopping:
            logger.info("Received %s again, stopping now", name)
            self.stop_now()
        else:
            logger.info("Received %s, stopping gracefully", name)
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
        if not self.stopping and self.handover.may_start_new_master(self.is_init):
            self.handover.started(self.start_master())

    def start_master(self) -> int:
        """Fork and exec the new master of USR2 (see ``tricorn.master.reexec``)."""
        return spawn_master(self.listeners.handover(), self.pid)
