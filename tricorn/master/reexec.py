"""USR2: replace the master by a fresh one (new Python, new code), sockets kept open.

Design note, the hand-over step by step:

1. The old master moves its pid file to ``PATH.oldbin`` and forks. The child marks the
   listening sockets inheritable, names them in ``TRICORN_REEXEC_FDS`` (``fd`` or
   ``fd:owned`` for a unix socket file the master created and must remove on its final
   exit), names its parent in ``TRICORN_REEXEC_PARENT`` and execs the same command line
   (``sys.orig_argv``, with ``sys.executable``: a re-installed Python is picked up).
2. The new master takes the sockets from these variables (``tricorn.net.listeners``, which
   drops the variables, so its workers and a later USR2 start clean), writes the pid file
   at ``PATH`` and forks its workers, which accept on the very same sockets as the old
   workers: nothing is refused.
3. Once all its workers are ready it tells systemd ``MAINPID=<new pid>`` and ``READY=1``,
   then sends SIGTERM to the old master, which drains its workers and exits, removing
   ``PATH.oldbin`` but leaving the unix socket files (they belong to the new master).

If the new master exits before step 3 (it cannot import the new code, say), the old master
moves its pid file back and keeps serving. A master running as PID 1 refuses USR2: its
exit would end the container; use HUP there.

``HandOver`` keeps the master's side of these steps (which master it started, or which
one it replaces); the functions below it start the new master and pass it the sockets.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from collections.abc import Mapping, MutableMapping, Sequence

from tricorn.master.pidfile import PidFile, PidFileError
from tricorn.master.process import describe_status
from tricorn.net.listeners import REEXEC_FDS_ENV, encode_fds

logger = logging.getLogger("tricorn.error")

REEXEC_PARENT_ENV = "TRICORN_REEXEC_PARENT"
OLDBIN = ".oldbin"


class HandOver:
    """The master's part in a USR2 hand-over, in either role.

    In the old master: ``new_master`` is the master we started (until it exits), and
    ``handed_over`` is set when we stop while it runs (it takes over, we only go away).
    In the new master: ``old_master`` is the master we replace, until our first workers
    are ready and ``retire_old_master()`` tells it to go.
    """

    def __init__(self, pid: int, pidfile: PidFile | None) -> None:
        self.pid = pid
        self.pidfile = pidfile
        self.new_master: int | None = None
        self.handed_over = False
        self.old_master: int | None = None

    def take_parent(self, environ: MutableMapping[str, str]) -> None:
        """Remember the old master that started us with USR2, if one did."""
        self.old_master = take_parent(environ)

    def may_start_new_master(self, is_init: bool) -> bool:
        """Whether USR2 may start a new master now; if so, the pid file is moved aside."""
        if self.new_master is not None:
            logger.warning(
                "Received SIGUSR2, but new master [%d] is still starting: ignored",
                self.new_master,
            )
            return False
        if is_init:
            logger.warning(
                "Received SIGUSR2 as PID 1: a new master cannot replace the container's "
                "init; use SIGHUP to reload the workers"
            )
            return False
        if self.pidfile is not None:
            try:
                self.pidfile.move(self.pidfile.path + OLDBIN)
            except PidFileError as exc:
                logger.error("%s", exc)
        return True

    def started(self, pid: int) -> None:
        self.new_master = pid
        logger.info("Received SIGUSR2, started new master [%d]", pid)

    def hand_over(self) -> bool:
        """We stop: True when a new master runs and takes over (systemd must not hear
        STOPPING from us, and the unix socket files are now its own)."""
        if self.new_master is None:
            return False
        self.handed_over = True
        logger.info("Master [%d] hands over to new master [%d]", self.pid, self.new_master)
        return True

    def new_master_exited(self, status: int) -> None:
        """Reaped the new master: done if it took over, else we keep serving."""
        pid, self.new_master = self.new_master, None
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

    def retire_old_master(self) -> None:
        """Our workers are ready: SIGTERM the old master (once), if it is still our parent."""
        old, self.old_master = self.old_master, None
        if old is None:
            return
        # Only our parent: after a long boot the pid could have been reused by now.
        if os.getppid() != old:
            logger.warning("Old master [%d] is already gone", old)
            return
        logger.info("Telling old master [%d] to stop (SIGTERM)", old)
        try:
            os.kill(old, signal.SIGTERM)
        except ProcessLookupError:
            logger.warning("Old master [%d] is already gone", old)


def command_line() -> list[str]:
    """How this process was started, to start it again."""
    argv = list(getattr(sys, "orig_argv", None) or [sys.executable, *sys.argv])
    return [sys.executable, *argv[1:]]


def take_parent(environ: MutableMapping[str, str]) -> int | None:
    """The old master that started us with USR2 (the variable is consumed), or None."""
    value = environ.pop(REEXEC_PARENT_ENV, "")
    return int(value) if value.isdigit() else None


def child_environment(
    environ: Mapping[str, str], fds: Sequence[tuple[int, bool]], parent: int, pid: int
) -> dict[str, str]:
    """The environment of the new master (``pid``), started by the master ``parent``."""
    env = dict(environ)
    env[REEXEC_FDS_ENV] = encode_fds(fds)
    env[REEXEC_PARENT_ENV] = str(parent)
    if "WATCHDOG_PID" in env:
        env["WATCHDOG_PID"] = str(pid)  # the watchdog follows the new master
    return env


def spawn_master(fds: Sequence[tuple[int, bool]], parent: int) -> int:
    """Fork and exec a new master inheriting ``fds``; its pid (the child never returns)."""
    argv = command_line()
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    pid = os.fork()
    if pid:
        return pid
    code = 127  # pragma: no cover (the child execs; real-process tests cover it)
    try:  # pragma: no cover
        for fd, _ in fds:
            os.set_inheritable(fd, True)
        os.execve(argv[0], argv, child_environment(os.environ, fds, parent, os.getpid()))
    except BaseException as exc:  # pragma: no cover
        logger.error("USR2: cannot start a new master (%s): %s", argv[0], exc)
    finally:  # pragma: no cover
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        os._exit(code)
