"""``--pid FILE``: the master's pid, written atomically, never stolen from a live master."""

from __future__ import annotations

import contextlib
import os
import tempfile


class PidFileError(ValueError):
    """The pid file cannot be used; the message is the one line to show the user."""


def read_pid(path: str) -> int | None:
    """The pid stored in ``path``, or None when the file is missing or holds no pid."""
    try:
        with open(path, encoding="ascii", errors="replace") as file:
            text = file.read(64).strip()
    except FileNotFoundError:
        return None
    return int(text) if text.isdigit() and int(text) > 0 else None


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists (signal 0 checks without sending anything)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


class PidFile:
    """The pid file of one master. ``create()`` on start, ``remove()`` on exit."""

    def __init__(self, path: str) -> None:
        self.path = os.path.abspath(path)
        self.pid: int | None = None

    def create(self, pid: int | None = None, allowed_owner: int | None = None) -> None:
        """Write ``pid`` (default: ours). Refuse when a live other process owns the file,
        unless it is ``allowed_owner`` (the master we replace on USR2); a stale file (dead
        pid, garbage) is replaced."""
        pid = os.getpid() if pid is None else pid
        directory = os.path.dirname(self.path)
        if not os.path.isdir(directory):
            raise PidFileError(f"--pid {self.path}: directory {directory} does not exist")
        owner = read_pid(self.path)
        if owner is not None and owner not in (pid, allowed_owner) and pid_alive(owner):
            raise PidFileError(
                f"--pid {self.path}: already owned by running process {owner}; "
                "is another server running?"
            )
        self._write(pid)
        self.pid = pid

    def _write(self, pid: int) -> None:
        # Write a temporary file next to the target, then rename over it: a reader sees the
        # old content or the new, never a half-written pid.
        try:
            fd, tmp = tempfile.mkstemp(prefix=".", suffix=".tmp", dir=os.path.dirname(self.path))
        except OSError as exc:
            raise PidFileError(f"--pid {self.path}: {exc.strerror or exc}") from None
        try:
            with os.fdopen(fd, "w", encoding="ascii") as file:
                file.write(f"{pid}\n")
            os.chmod(tmp, 0o644)
            os.replace(tmp, self.path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise PidFileError(f"--pid {self.path}: {exc.strerror or exc}") from None

    def move(self, path: str) -> None:
        """Rename our file to ``path`` (USR2: ``PATH.oldbin`` and back) and follow it."""
        path = os.path.abspath(path)
        if self.pid is not None and read_pid(self.path) == self.pid:
            try:
                os.replace(self.path, path)
            except OSError as exc:
                raise PidFileError(f"--pid {self.path}: {exc.strerror or exc}") from None
        self.path = path

    def remove(self) -> None:
        """Delete the file if it still names us (a newer master may have taken it over)."""
        if self.pid is None:
            return
        with contextlib.suppress(OSError):
            if read_pid(self.path) == self.pid:
                os.unlink(self.path)
        self.pid = None
