"""``--reload``: a watcher process that tells the master which files changed.

Why a process and not a thread: watchfiles blocks in native code, and the master forks
workers; forking a process that has another thread running risks a child stuck on a
lock that thread held. So the master forks the watcher once, before any worker; the
watcher runs ``watchfiles.watch()`` and writes one line per batch of changes to a pipe
the master's selector watches (paths separated by NUL, which no path contains); an empty
line first says it is armed (changes from then on are seen). It exits on its own when the
master is gone, and the master restarts it if it dies.

Which changes count (uvicorn's rules, in our words): a file counts when its name matches
one of the ``--reload-include`` globs (``*.py`` by default) and neither the file nor a
directory between it and the watched directory matches a ``--reload-exclude`` glob
(``.*``, ``.py[cod]``, ``.sw.*``, ``~*`` by default: dot files and directories, bytecode,
editor swap and backup files). An exclude that names an existing directory excludes
everything below it.
"""

from __future__ import annotations

import contextlib
import fnmatch
import logging
import os
import signal
import sys
import sysconfig
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

logger = logging.getLogger("tricorn.error")

DEFAULT_INCLUDES = ("*.py",)
DEFAULT_EXCLUDES = (".*", ".py[cod]", ".sw.*", "~*")


class ChangeFilter:
    """Decides whether a changed path under one of ``roots`` should reload the app."""

    def __init__(
        self, roots: Iterable[Path], includes: Iterable[str], excludes: Iterable[str]
    ) -> None:
        self.roots = [Path(root) for root in roots]  # from watched_dirs(): never nested
        self.includes = list(includes) or list(DEFAULT_INCLUDES)
        # An include given on purpose wins over a default exclude (`--reload-include .env`).
        excludes = [e for e in list(excludes) or DEFAULT_EXCLUDES if e not in self.includes]
        self.exclude_dirs = [Path(e).resolve() for e in excludes if Path(e).is_dir()]
        self.excludes = [e for e in excludes if not Path(e).is_dir()]

    def __call__(self, change: Any, path: str) -> bool:
        return self.matches(Path(path))

    def matches(self, path: Path) -> bool:
        if not any(fnmatch.fnmatch(path.name, glob) for glob in self.includes):
            return False
        if any(path.is_relative_to(directory) for directory in self.exclude_dirs):
            return False
        root = next((r for r in self.roots if path.is_relative_to(r)), None)
        parts = path.relative_to(root).parts if root is not None else (path.name,)
        return not any(fnmatch.fnmatch(part, glob) for part in parts for glob in self.excludes)


def watched_dirs(dirs: Iterable[str]) -> list[Path]:
    """The directories to watch: ``dirs`` (the working directory when empty), resolved,
    missing ones dropped with a warning, those inside another one dropped."""
    found: list[Path] = []
    for name in list(dirs) or [os.getcwd()]:
        path = Path(name).resolve()
        if not path.is_dir():
            logger.warning("--reload-dir %s is not a directory: not watched", name)
            continue
        found.append(path)
    found = sorted(set(found), key=lambda p: len(p.parts))
    return [p for i, p in enumerate(found) if not any(p.is_relative_to(q) for q in found[:i])]


class FileWatcher:
    """The master's handle on the watcher process: its pid and the pipe it writes to."""

    def __init__(self, dirs: list[Path], change_filter: ChangeFilter, delay: float) -> None:
        self.dirs = dirs
        self.filter = change_filter
        self.delay = delay
        self.pid = 0
        self.fd = -1
        self._partial = b""

    def fileno(self) -> int:
        return self.fd

    def start(self, in_child: Callable[[], None]) -> int:
        """Fork the watcher; ``in_child`` runs first in the child (shed the master's
        signal handlers and descriptors). The watcher's pid."""
        self.close()
        read_fd, write_fd = os.pipe()
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        master = os.getpid()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child; covered by the real-process tests
            code = 1
            try:
                os.close(read_fd)
                in_child()
                code = self._watch(write_fd, master)
            except BaseException:
                logger.exception("The --reload file watcher failed")
            finally:
                os._exit(code)
        os.close(write_fd)
        os.set_blocking(read_fd, False)
        self.pid, self.fd = pid, read_fd
        return pid

    def _watch(self, write_fd: int, master: int) -> int:  # pragma: no cover - the child
        import watchfiles

        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the master relays Ctrl+C
        step = max(1, round(self.delay * 1000))
        for changes in watchfiles.watch(
            *self.dirs,
            watch_filter=self.filter,
            step=step,
            debounce=max(1600, step),
            stop_event=_StopEvent(master, write_fd),
            raise_interrupt=False,
        ):
            paths = sorted({path for _, path in changes})
            try:
                os.write(write_fd, "\0".join(paths).encode(errors="surrogateescape") + b"\n")
            except BrokenPipeError:
                return 0
        return 0

    def read(self) -> list[list[str]] | None:
        """The batches of changed paths the watcher reported (an empty batch: it is armed);
        None once it closed the pipe."""
        chunks = []
        while True:
            try:
                data = os.read(self.fd, 65536)
            except (BlockingIOError, InterruptedError):
                break
            if not data:
                return None
            chunks.append(data)
        lines = (self._partial + b"".join(chunks)).split(b"\n")
        self._partial = lines.pop()
        return [line.decode(errors="surrogateescape").split("\0") if line else [] for line in lines]

    def stop(self) -> None:
        """SIGKILL the watcher (the master reaps it) and close the pipe."""
        if self.pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
        self.close()

    def close(self) -> None:
        if self.fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self.fd)
        self.fd = -1
        self._partial = b""


class _StopEvent:  # pragma: no cover - in the watcher process
    """watchfiles' stop event: set once the master is gone (we were re-parented).

    watchfiles asks it only once its watches are in place, so the first call also tells
    the master the watcher is armed.
    """

    def __init__(self, master: int, write_fd: int) -> None:
        self.master = master
        self.write_fd = write_fd
        self.armed = False

    def is_set(self) -> bool:
        if not self.armed:
            self.armed = True
            os.write(self.write_fd, b"\n")
        return os.getppid() != self.master


def describe_changes(paths: list[str], dirs: list[Path]) -> str:
    """``'app.py', 'lib/db.py'``: paths relative to the watched directory, for the log."""
    shown = []
    for path in paths:
        full = Path(path)
        root = next((d for d in dirs if full.is_relative_to(d)), None)
        shown.append(repr(str(full.relative_to(root)) if root is not None else path))
    return ", ".join(shown)


def forget_user_modules(dirs: Iterable[str]) -> list[str]:
    """In a --reload worker, before the app is imported: drop from ``sys.modules`` every
    module loaded from the watched directories, so the import reads the new code.

    The CLI's master never imports the app, but ``tricorn.run("app:app", reload=True)``
    from a script may have (the script imported its own modules first); a forked worker
    would then reuse the old module objects. Installed packages and tricorn itself stay.
    Returns the names dropped.
    """
    roots = watched_dirs(dirs)
    paths = sysconfig.get_paths()
    keep = {Path(__file__).parents[1]}  # tricorn
    keep.update(Path(paths[key]) for key in ("purelib", "platlib", "stdlib") if key in paths)
    keep_roots = [k.resolve() for k in keep]
    dropped = []
    for name, module in list(sys.modules.items()):
        filename = getattr(module, "__file__", None)
        if name == "__main__" or not filename:
            continue
        path = Path(filename).resolve()
        if any(path.is_relative_to(root) for root in roots) and not any(
            path.is_relative_to(k) for k in keep_roots
        ):
            del sys.modules[name]
            dropped.append(name)
    return dropped
