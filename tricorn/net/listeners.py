"""The listening sockets of a server: bound once, before any fork, shared by every worker.

Where they come from, first match wins: the sockets of the master we replace (USR2: the
fd hand-over, ``TRICORN_REEXEC_FDS``, see ``tricorn.master.reexec``), systemd socket
activation (``LISTEN_FDS`` for our pid), else the addresses the caller asks for (every
``--bind``, plus ``--uds`` and ``--fd`` when given, else ``--host/--port``).
With ``reuse_port`` only each TCP address is reserved (bound with SO_REUSEPORT, not
listening) and every worker opens its own listener on it, so the kernel spreads
connections evenly instead of waking whichever worker is fastest to accept.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from collections.abc import Mapping, Sequence

from tricorn.net.sockets import (
    BindError,
    BindSpec,
    bind_tcp,
    bind_unix,
    describe_socket,
    listen,
    socket_from_fd,
    tcp_address,
)

logger = logging.getLogger("tricorn.error")

# The fd hand-over of USR2: the old master names its listening sockets here, "fd" or
# "fd:owned" for a unix socket file it created (its new owner removes it on exit).
REEXEC_FDS_ENV = "TRICORN_REEXEC_FDS"
SD_LISTEN_FDS_START = 3
# Linux 5.14+: when one SO_REUSEPORT listener closes, move its queued connections to the
# others. Without it a draining worker's accept queue is reset (see README, --reuse-port).
TCP_MIGRATE_REQ = "/proc/sys/net/ipv4/tcp_migrate_req"


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


def listen_fds(environ: Mapping[str, str], pid: int) -> list[int]:
    """The file descriptors systemd passed us (socket activation), or [] if none.

    ``LISTEN_PID`` must name this process: the variables may have been inherited by
    accident from a parent that was activated.
    """
    count = environ.get("LISTEN_FDS")
    if count is None:
        return []
    owner = environ.get("LISTEN_PID")
    if owner is not None and owner.strip() != str(pid):
        return []
    if not count.strip().isdigit():
        raise BindError(f"LISTEN_FDS={count!r}: expected a number of file descriptors")
    return list(range(SD_LISTEN_FDS_START, SD_LISTEN_FDS_START + int(count)))


def inherits_sockets(environ: Mapping[str, str], pid: int) -> bool:
    """Whether this process was handed listening sockets (USR2 or systemd activation)."""
    if REEXEC_FDS_ENV in environ:
        return True
    try:
        return bool(listen_fds(environ, pid))
    except BindError:
        return True  # malformed LISTEN_FDS: whoever opens the listeners reports it


def warn_unless_migrating() -> None:
    """One warning when --reuse-port would drop queued connections on worker restarts."""
    try:
        with open(TCP_MIGRATE_REQ) as file:
            enabled = file.read().strip() == "1"
    except OSError:
        enabled = False
    if not enabled:
        logger.warning(
            "--reuse-port: net.ipv4.tcp_migrate_req is not 1, so connections queued at a "
            "worker that stops (reload, recycling, TTOU) are reset; set it with sysctl "
            "(Linux 5.14+) or leave --reuse-port off."
        )


class Listeners:
    """Every listening socket of a server, with what is needed to remove them on exit."""

    def __init__(self, reuse_port: bool = False, backlog: int = 2048) -> None:
        self.sockets: list[socket.socket] = []
        self.reuse_port = reuse_port
        self.backlog = backlog
        self._owned_paths: list[str] = []

    def open(self, specs: Sequence[BindSpec], environ: Mapping[str, str] | None = None) -> None:
        """Take the inherited sockets, else bind ``specs``; BindError on the first failure
        (the sockets already bound are closed)."""
        environ = os.environ if environ is None else environ
        try:
            inherited = environ.get(REEXEC_FDS_ENV)
            if inherited is not None:
                self._inherit(inherited)
                if environ is os.environ:
                    os.environ.pop(REEXEC_FDS_ENV, None)
                return
            fds = listen_fds(environ, os.getpid())
            if fds:
                for fd in fds:
                    self.sockets.append(socket_from_fd(fd, "LISTEN_FDS"))
                # Consumed: neither workers nor a re-executed master may take them again.
                if environ is os.environ:
                    for name in ("LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES"):
                        os.environ.pop(name, None)
                return
            for spec in specs:
                self.sockets.append(self._bind(spec))
        except BaseException:
            self.close()
            raise

    def _inherit(self, value: str) -> None:
        try:
            fds = decode_fds(value)
        except ValueError as exc:
            raise BindError(str(exc)) from None
        for fd, owned in fds:
            sock = socket_from_fd(fd, REEXEC_FDS_ENV)
            self.sockets.append(sock)
            name = sock.getsockname()
            if owned and isinstance(name, str) and name:
                self._owned_paths.append(name)

    def handover(self) -> list[tuple[int, bool]]:
        """What a new master inherits (USR2): each socket's fd, and whether we created its
        unix socket file (then the new master removes it on its final exit)."""
        fds = []
        for sock in self.sockets:
            name = sock.getsockname()
            fds.append((sock.fileno(), isinstance(name, str) and name in self._owned_paths))
        return fds

    def _bind(self, spec: BindSpec) -> socket.socket:
        if spec.kind == "fd":
            return socket_from_fd(spec.fd, "--fd")
        if spec.kind == "unix":
            sock = listen(bind_unix(spec.path), self.backlog, str(spec))
            self._owned_paths.append(spec.path)
            return sock
        sock = bind_tcp(spec.host, spec.port, reuse_port=self.reuse_port)
        # With --reuse-port the master only reserves the address: a listener nobody accepts
        # on would still get its share of the connections.
        return sock if self.reuse_port else listen(sock, self.backlog, str(spec))

    def for_worker(self) -> list[socket.socket]:
        """The sockets one worker serves on: the shared ones, or with ``reuse_port`` a
        fresh SO_REUSEPORT listener per TCP address (call it in the forked worker)."""
        if not self.reuse_port:
            return list(self.sockets)
        own: list[socket.socket] = []
        for sock in self.sockets:
            if sock.family in (socket.AF_INET, socket.AF_INET6):
                host, port = sock.getsockname()[:2]
                sock = bind_tcp(host, port, reuse_port=True)
                own.append(listen(sock, self.backlog, tcp_address(host, port)))
            else:
                own.append(sock)
        return own

    def describe(self) -> list[str]:
        return [describe_socket(sock) for sock in self.sockets]

    def close(self, unlink: bool = True) -> None:
        """Close every socket; remove the unix socket files we created."""
        for sock in self.sockets:
            sock.close()
        self.sockets = []
        if unlink:
            for path in self._owned_paths:
                with contextlib.suppress(OSError):
                    os.unlink(path)
        self._owned_paths = []
