"""USR2: replace the master by a fresh one (new Python, new code), sockets kept open.

Design note, the hand-over step by step:

1. The old master moves its pid file to ``PATH.oldbin`` and forks. The child marks the
   listening sockets inheritable, names them in ``TRICORN_REEXEC_FDS`` (``fd`` or
   ``fd:owned`` for a unix socket file the master created and must remove on its final
   exit), names its parent in ``TRICORN_REEXEC_PARENT`` and execs the same command line
   (``sys.orig_argv``, with ``sys.executable``: a re-installed Python is picked up).
2. The new master takes the sockets from these variables (and drops the variables, so its
   workers and a later USR2 start clean), writes the pid file at ``PATH`` and forks its
   workers, which accept on the very same sockets as the old workers: nothing is refused.
3. Once all its workers are ready it tells systemd ``MAINPID=<new pid>`` and ``READY=1``,
   then sends SIGTERM to the old master, which drains its workers and exits, removing
   ``PATH.oldbin`` but leaving the unix socket files (they belong to the new master).

If the new master exits before step 3 (it cannot import the new code, say), the old master
moves its pid file back and keeps serving. A master running as PID 1 refuses USR2: its
exit would end the container; use HUP there.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping, MutableMapping, Sequence

logger = logging.getLogger("tricorn.error")

REEXEC_FDS_ENV = "TRICORN_REEXEC_FDS"
REEXEC_PARENT_ENV = "TRICORN_REEXEC_PARENT"


def command_line() -> list[str]:
    """How this process was started, to start it again."""
    argv = list(getattr(sys, "orig_argv", None) or [sys.executable, *sys.argv])
    return [sys.executable, *argv[1:]]


def encode_fds(fds: Sequence[tuple[int, bool]]) -> str:
    return ",".join(f"{fd}:owned" if owned else str(fd) for fd, owned in fds)


def decode_fds(value: str) -> list[tuple[int, bool]]:
    """``"5,6:owned"`` -> ``[(5, False), (6, True)]``; ValueError when malformed."""
    fds: list[tuple[int, bool]] = []
    for item in value.split(","):
        fd, _, flag = item.strip().partition(":")
        if not fd.isdigit() or flag not in ("", "owned"):
            raise ValueError(f"{REEXEC_FDS_ENV}={value!r}: expected fd[:owned],...")
        fds.append((int(fd), flag == "owned"))
    return fds


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
