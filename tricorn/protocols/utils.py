"""Small helpers shared by the wire protocols: addresses, TLS detection, log-safe text."""

from __future__ import annotations

import asyncio
import re
import socket
from typing import Any


def get_remote_addr(transport: asyncio.BaseTransport) -> tuple[str, int] | None:
    """The client's (host, port), or None when unknown (a Unix socket peer)."""
    sock: socket.socket | None = transport.get_extra_info("socket")
    info = None
    if sock is not None:
        try:
            info = sock.getpeername()
        except OSError:
            return None
    else:
        info = transport.get_extra_info("peername")
    if isinstance(info, (list, tuple)) and len(info) >= 2:
        return (str(info[0]), int(info[1]))
    return None


def get_local_addr(transport: asyncio.BaseTransport) -> tuple[str, int | None] | None:
    """The listening (host, port), or (path, None) for a Unix socket."""
    sock: socket.socket | None = transport.get_extra_info("socket")
    info = None
    if sock is not None:
        try:
            info = sock.getsockname()
        except OSError:
            return None
    else:
        info = transport.get_extra_info("sockname")
    if isinstance(info, (list, tuple)) and len(info) >= 2:
        return (str(info[0]), int(info[1]))
    if isinstance(info, str) and info:
        return (info, None)
    return None


def is_ssl(transport: asyncio.BaseTransport) -> bool:
    return transport.get_extra_info("sslcontext") is not None


def format_addr(addr: tuple[str, int | None] | None) -> str:
    """``host:port`` for logs, IPv6 hosts in brackets; "" when unknown."""
    if not addr:
        return ""
    host, port = addr
    if port is None:
        return host
    if ":" in host:
        return f"[{host}]:{port}"
    return f"{host}:{port}"


def scope_client_addr(scope: dict[str, Any], peer: Any, peer_addr: str) -> str:
    """The client for the access log: the scope's, which ``--proxy-headers`` may have
    rewritten to the forwarded client (``peer_addr`` is the socket peer, pre-formatted)."""
    client = scope.get("client")
    return peer_addr if client is peer else format_addr(client)


def connection_tokens(value: bytes) -> set[bytes]:
    """The lower-cased tokens of a comma-separated header (``Connection``, ``Upgrade``)."""
    return {token.strip() for token in value.lower().split(b",")}


# Anything that could end a log line, start a terminal escape or break the quoting.
_UNSAFE = re.compile(rb'[\x00-\x1f\x7f-\xff"\\]')


def log_safe(data: bytes) -> str:
    """``data`` as printable ASCII for a log line: unsafe bytes become ``\\xNN``."""
    if _UNSAFE.search(data) is None:
        return data.decode("ascii")
    return _UNSAFE.sub(lambda m: b"\\x%02x" % m.group()[0], data).decode("ascii")


class Wakeup:
    """One coroutine waits until another part of the protocol says "something changed".

    The protocols' pattern for receive() and drain(): ``wait()`` parks the caller on a
    future, ``wake()`` releases it (a no-op when nobody waits). A wait that was cancelled
    (``wait_for``, a cancel scope) leaves a done future behind; the next ``wait()`` replaces
    it rather than returning at once.
    """

    __slots__ = ("_future",)

    def __init__(self) -> None:
        self._future: asyncio.Future[None] | None = None

    def wake(self) -> None:
        future = self._future
        if future is not None:
            self._future = None
            if not future.done():
                future.set_result(None)

    async def wait(self) -> None:
        future = self._future
        if future is None or future.done():
            future = self._future = asyncio.get_running_loop().create_future()
        await future
