"""tricorn.protocols.utils: addresses from transports, TLS detection, log-safe text."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest

from tricorn.protocols.utils import (
    format_addr,
    get_local_addr,
    get_remote_addr,
    is_ssl,
    log_safe,
)


class InfoTransport(asyncio.BaseTransport):
    def __init__(self, **extra: Any) -> None:
        super().__init__()
        self.extra = extra

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.extra.get(name, default)


class FakeSocket:
    def __init__(self, peer: Any = None, local: Any = None, error: bool = False) -> None:
        self.peer = peer
        self.local = local
        self.error = error

    def getpeername(self) -> Any:
        if self.error:
            raise OSError(107, "Transport endpoint is not connected")
        return self.peer

    def getsockname(self) -> Any:
        if self.error:
            raise OSError(9, "Bad file descriptor")
        return self.local


@pytest.mark.parametrize(
    ("extra", "remote", "local"),
    [
        (
            {"peername": ("10.0.0.1", 1234), "sockname": ("0.0.0.0", 80)},
            ("10.0.0.1", 1234),
            ("0.0.0.0", 80),
        ),
        (
            {"peername": ["10.0.0.1", 1234], "sockname": ["1.2.3.4", 80]},
            ("10.0.0.1", 1234),
            ("1.2.3.4", 80),
        ),
        ({"peername": ("::1", 5, 0, 0), "sockname": ("::", 8000, 0, 0)}, ("::1", 5), ("::", 8000)),
        ({"peername": "", "sockname": "/run/app.sock"}, None, ("/run/app.sock", None)),
        ({"peername": None, "sockname": None}, None, None),
        ({}, None, None),
        ({"socket": FakeSocket(("1.1.1.1", 1), ("2.2.2.2", 2))}, ("1.1.1.1", 1), ("2.2.2.2", 2)),
        ({"socket": FakeSocket("", "/tmp/s.sock")}, None, ("/tmp/s.sock", None)),
        # the socket wins over the (possibly stale) cached names
        (
            {"socket": FakeSocket(("1.1.1.1", 1), ("2.2.2.2", 2)), "peername": ("9.9.9.9", 9)},
            ("1.1.1.1", 1),
            ("2.2.2.2", 2),
        ),
        ({"socket": FakeSocket(error=True), "peername": ("9.9.9.9", 9)}, None, None),
    ],
)
def test_addresses(extra: dict[str, Any], remote: Any, local: Any) -> None:
    transport = InfoTransport(**extra)
    assert get_remote_addr(transport) == remote
    assert get_local_addr(transport) == local


def test_addresses_of_real_sockets() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        with socket.create_connection(server.getsockname()) as client:
            accepted, _ = server.accept()
            with accepted:
                transport = InfoTransport(socket=accepted)
                assert get_remote_addr(transport) == client.getsockname()
                assert get_local_addr(transport) == server.getsockname()


def test_addresses_of_unix_sockets(tmp_path: Any) -> None:
    path = str(tmp_path / "s.sock")
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(path)
        server.listen()
        with socket.socket(socket.AF_UNIX) as client:
            client.connect(path)
            accepted, _ = server.accept()
            with accepted:
                transport = InfoTransport(socket=accepted)
                assert get_remote_addr(transport) is None
                assert get_local_addr(transport) == (path, None)


def test_is_ssl() -> None:
    assert is_ssl(InfoTransport(sslcontext=object()))
    assert not is_ssl(InfoTransport(sslcontext=None))
    assert not is_ssl(InfoTransport())


@pytest.mark.parametrize(
    ("addr", "text"),
    [
        (("127.0.0.1", 8000), "127.0.0.1:8000"),
        (("::1", 8000), "[::1]:8000"),
        (("/tmp/app.sock", None), "/tmp/app.sock"),
        (None, ""),
    ],
)
def test_format_addr(addr: Any, text: str) -> None:
    assert format_addr(addr) == text


@pytest.mark.parametrize(
    ("data", "text"),
    [
        (b"/plain/path?x=1&y=%20", "/plain/path?x=1&y=%20"),
        (b'/a"b', "/a\\x22b"),
        (b"/a\\b", "/a\\x5cb"),
        (b"/\x1b[31mred", "/\\x1b[31mred"),
        (b"/line\r\nfake 200", "/line\\x0d\\x0afake 200"),
        (b"/caf\xc3\xa9", "/caf\\xc3\\xa9"),
        (b"/\x00\x7f\xff", "/\\x00\\x7f\\xff"),
        (b"", ""),
    ],
)
def test_log_safe(data: bytes, text: str) -> None:
    assert log_safe(data) == text


def test_log_safe_output_is_printable_ascii() -> None:
    every_byte = bytes(range(256))
    text = log_safe(every_byte)
    assert text.isascii()
    assert text.isprintable()
    assert '"' not in text
    # escaping is unambiguous: a backslash only ever starts an escape
    assert text.count("\\") == text.count("\\x")
