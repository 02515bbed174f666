"""Listening sockets of the master: bound once, before any fork, shared by every worker.

Where they come from, first match wins: the sockets of the master we replace (USR2,
``TRICORN_REEXEC_FDS``, see ``tricorn.master.reexec``), systemd socket activation
(``LISTEN_FDS`` for our pid), else every ``--bind`` plus ``--uds`` and ``--fd`` when given,
else ``--host/--port``.
With ``--reuse-port`` the master only reserves each TCP address (bound with SO_REUSEPORT,
not listening) and every worker opens its own listener on it, so the kernel spreads
connections evenly instead of waking whichever worker is fastest to accept.

The binding itself (``bind_tcp``, ``bind_unix``, ``socket_from_fd``) is written once, here,
for the master and for the single-process server (``bind_server_socket``, which is
``Config.bind_socket()``); each words its own one-line errors from the ``BindError``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import socket
import stat
from collections.abc import Mapping
from typing import Any

from tricorn.config import STARTUP_FAILURE
from tricorn.master.reexec import REEXEC_FDS_ENV, decode_fds
from tricorn.settings import ConfigError

logger = logging.getLogger("tricorn.error")

# Linux 5.14+: when one SO_REUSEPORT listener closes, move its queued connections to the
# others. Without it a draining worker's accept queue is reset (see README, --reuse-port).
TCP_MIGRATE_REQ = "/proc/sys/net/ipv4/tcp_migrate_req"


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


SD_LISTEN_FDS_START = 3


class BindError(ValueError):
    """A listener cannot be had; the message is the one line to show the user.

    ``reason`` is the message without the option and value it is about; ``error`` the
    system error behind it, if any.
    """

    def __init__(
        self, message: str, reason: str | None = None, error: BaseException | None = None
    ) -> None:
        super().__init__(message)
        self.reason = message if reason is None else reason
        self.error = error


@dataclasses.dataclass(frozen=True)
class BindSpec:
    """One place to listen: ``kind`` is "tcp" (host, port), "unix" (path) or "fd" (fd)."""

    kind: str
    host: str = ""
    port: int = 0
    path: str = ""
    fd: int = -1

    def __str__(self) -> str:
        if self.kind == "unix":
            return f"unix:{self.path}"
        if self.kind == "fd":
            return f"fd://{self.fd}"
        return tcp_address(self.host, self.port)


def parse_bind(value: str) -> BindSpec:
    """Parse one ``--bind``: ``HOST:PORT``, ``[IPv6]:PORT``, ``unix:PATH`` or ``fd://N``."""

    def error(reason: str) -> BindError:
        return BindError(f"--bind {value!r}: {reason}", reason)

    usage = "expected HOST:PORT, [IPv6]:PORT, unix:PATH or fd://N"
    if value.startswith("unix:"):
        path = value[len("unix:") :]
        if not path:
            raise error("empty unix socket path")
        return BindSpec("unix", path=path)
    if value.startswith("fd://"):
        digits = value[len("fd://") :]
        if not digits.isdigit():
            raise error("the fd must be a non-negative integer")
        return BindSpec("fd", fd=int(digits))
    if value.startswith("["):
        host, sep, rest = value[1:].partition("]")
        if not sep or not rest.startswith(":") or not host:
            raise error(usage)
        port_text = rest[1:]
    else:
        host, sep, port_text = value.rpartition(":")
        if not sep or not host or ":" in host:
            raise error(usage)
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise error("the port must be an integer from 0 to 65535")
    return BindSpec("tcp", host=host, port=int(port_text))


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


def bind_specs(config: Any) -> list[BindSpec]:
    """Where the configuration asks to listen (without systemd's sockets)."""
    specs = [parse_bind(value) for value in getattr(config, "bind", None) or []]
    if getattr(config, "uds", None):
        specs.append(BindSpec("unix", path=config.uds))
    if getattr(config, "fd", None) is not None:
        specs.append(BindSpec("fd", fd=config.fd))
    if not specs:
        specs.append(BindSpec("tcp", host=config.host, port=config.port))
    return specs


class Listeners:
    """Every listening socket of the master, with what is needed to remove them on exit."""

    def __init__(self, reuse_port: bool = False) -> None:
        self.sockets: list[socket.socket] = []
        self.reuse_port = reuse_port
        self.backlog = 2048
        self._owned_paths: list[str] = []

    def open(self, config: Any, environ: Mapping[str, str] | None = None) -> None:
        """Bind everything the config (or systemd) asks for; BindError on the first failure
        (the sockets already bound are closed)."""
        environ = os.environ if environ is None else environ
        backlog = self.backlog = getattr(config, "backlog", 2048)
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
            for spec in bind_specs(config):
                self.sockets.append(self._bind(spec, backlog))
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

    def _bind(self, spec: BindSpec, backlog: int) -> socket.socket:
        if spec.kind == "fd":
            return socket_from_fd(spec.fd, "--fd")
        if spec.kind == "unix":
            sock = _listen(bind_unix(spec.path), backlog, str(spec))
            self._owned_paths.append(spec.path)
            return sock
        sock = bind_tcp(spec.host, spec.port, reuse_port=self.reuse_port)
        # With --reuse-port the master only reserves the address: a listener nobody accepts
        # on would still get its share of the connections.
        return sock if self.reuse_port else _listen(sock, backlog, str(spec))

    def for_worker(self) -> list[socket.socket]:
        """The sockets one worker serves on: the shared ones, or with ``--reuse-port`` a
        fresh SO_REUSEPORT listener per TCP address (call it in the forked worker)."""
        if not self.reuse_port:
            return list(self.sockets)
        own: list[socket.socket] = []
        for sock in self.sockets:
            if sock.family in (socket.AF_INET, socket.AF_INET6):
                host, port = sock.getsockname()[:2]
                sock = bind_tcp(host, port, reuse_port=True)
                own.append(_listen(sock, self.backlog, tcp_address(host, port)))
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


def describe_socket(sock: socket.socket) -> str:
    name = sock.getsockname()
    if isinstance(name, (str, bytes)):
        return f"unix:{os.fsdecode(name)}"
    return tcp_address(*name[:2])


def tcp_address(host: str, port: int) -> str:
    """``host:port``, or ``[host]:port`` for IPv6."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


# -- binding, for the master and the single-process server -------------------------------


def bind_tcp(host: str, port: int, *, reuse_port: bool = False) -> socket.socket:
    """A TCP socket bound to ``host:port`` with SO_REUSEADDR (and SO_REUSEPORT when asked),
    not listening yet."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            if not hasattr(socket, "SO_REUSEPORT"):
                raise BindError("--reuse-port is not supported on this platform")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except (OSError, OverflowError) as exc:
        sock.close()
        where = tcp_address(host, port)
        raise BindError(f"cannot listen on {where}: {_strerror(exc)}", error=exc) from None
    except BaseException:
        sock.close()
        raise
    return sock


def bind_unix(path: str) -> socket.socket:
    """A unix socket bound to ``path`` (mode 0666), not listening yet. A stale socket file
    (nobody answers on it) is replaced; any other existing file is refused."""
    _remove_stale_unix_socket(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
        os.chmod(path, 0o666)
    except OSError as exc:
        sock.close()
        raise BindError(f"cannot listen on unix:{path}: {_strerror(exc)}", error=exc) from None
    return sock


def _remove_stale_unix_socket(path: str) -> None:
    def refuse(reason: str, error: OSError | None = None) -> BindError:
        return BindError(f"cannot listen on unix:{path}: {reason}", reason, error)

    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return
    except OSError as exc:
        raise refuse(_strerror(exc), exc) from None
    if not stat.S_ISSOCK(mode):
        raise refuse("the file exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except OSError:
        os.unlink(path)  # nobody answers: left over from a server that died
    else:
        raise refuse("another server is listening there")
    finally:
        probe.close()


def socket_from_fd(fd: int, option: str, *, dup: bool = False) -> socket.socket:
    """The stream socket open on ``fd`` (its family read from it), named by ``option`` in
    errors. With ``dup`` the socket works on a duplicate and ``fd`` stays open when it is
    closed; without, it owns ``fd``."""
    try:
        sock = socket.socket(fileno=os.dup(fd) if dup else fd)
    except OSError as exc:
        reason = f"is not a socket ({_strerror(exc)})"
        raise BindError(f"{option} {fd} {reason}", reason, exc) from None
    if sock.type != socket.SOCK_STREAM:
        if dup:
            sock.close()
        else:
            sock.detach()
        raise BindError(f"{option} {fd} is not a stream socket", "not a stream socket")
    return sock


def _listen(sock: socket.socket, backlog: int, where: str) -> socket.socket:
    try:
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        raise BindError(f"cannot listen on {where}: {_strerror(exc)}", error=exc) from None
    return sock


def bind_server_socket(config: Any) -> socket.socket:
    """The single-process server's socket (``Config.bind_socket()``): --uds, --fd or
    --host/--port, bound, not listening yet, inheritable. ``ConfigError`` (exit code 3)
    with one line naming the option when it cannot be had."""
    try:
        if config.uds is not None:
            sock = bind_unix(config.uds)
        elif config.fd is not None:
            sock = socket_from_fd(config.fd, "--fd", dup=True)
        else:
            sock = bind_tcp(config.host, config.port)
    except BindError as exc:
        raise ConfigError(_server_message(config, exc), STARTUP_FAILURE) from None
    sock.set_inheritable(True)
    return sock


def _server_message(config: Any, exc: BindError) -> str:
    # uvicorn's wording: "[Errno 98] could not bind on 127.0.0.1:8000 (--host/--port): ..."
    error = exc.error
    if config.uds is not None:
        if error is None:
            return f"--uds {config.uds}: {exc.reason}."
        where = f"unix socket {config.uds} (--uds)"
    elif config.fd is not None:
        if error is None:
            return f"--fd {config.fd}: {exc.reason}."
        return f"{_errno(error)}--fd {config.fd}: not an open socket: {_reason(error)}"
    else:
        where = f"{tcp_address(config.host, config.port)} (--host/--port)"
    if error is None:
        return str(exc)
    return f"{_errno(error)}could not bind on {where}: {_reason(error)}"


def _strerror(exc: BaseException) -> str:
    return getattr(exc, "strerror", None) or str(exc)


def _errno(exc: BaseException) -> str:
    number = getattr(exc, "errno", None)
    return f"[Errno {number}] " if number else ""


def _reason(exc: BaseException) -> str:
    text = _strerror(exc)
    return text[:1].lower() + text[1:]
