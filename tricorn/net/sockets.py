"""One listening socket: where (``--bind`` syntax), binding it, or taking it from an fd.

Every bind is written once, here, for the master and for the single-process server. A
failure is a ``BindError`` whose message is the one line to show; ``reason`` and ``error``
let a caller word its own line (``tricorn.config`` does, in uvicorn's words).
"""

from __future__ import annotations

import dataclasses
import os
import socket
import stat


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


def describe_socket(sock: socket.socket) -> str:
    name = sock.getsockname()
    if isinstance(name, (str, bytes)):
        return f"unix:{os.fsdecode(name)}"
    return tcp_address(*name[:2])


def tcp_address(host: str, port: int) -> str:
    """``host:port``, or ``[host]:port`` for IPv6."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


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
        raise BindError(f"cannot listen on {where}: {strerror(exc)}", error=exc) from None
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
        raise BindError(f"cannot listen on unix:{path}: {strerror(exc)}", error=exc) from None
    return sock


def _remove_stale_unix_socket(path: str) -> None:
    def refuse(reason: str, error: OSError | None = None) -> BindError:
        return BindError(f"cannot listen on unix:{path}: {reason}", reason, error)

    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return
    except OSError as exc:
        raise refuse(strerror(exc), exc) from None
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
        reason = f"is not a socket ({strerror(exc)})"
        raise BindError(f"{option} {fd} {reason}", reason, exc) from None
    if sock.type != socket.SOCK_STREAM:
        if dup:
            sock.close()
        else:
            sock.detach()
        raise BindError(f"{option} {fd} is not a stream socket", "not a stream socket")
    return sock


def listen(sock: socket.socket, backlog: int, where: str) -> socket.socket:
    """Start listening on a bound socket; BindError naming ``where`` when that fails."""
    try:
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        raise BindError(f"cannot listen on {where}: {strerror(exc)}", error=exc) from None
    return sock


def strerror(exc: BaseException) -> str:
    """The system's words for an error ("Address already in use"), else its text."""
    return getattr(exc, "strerror", None) or str(exc)
