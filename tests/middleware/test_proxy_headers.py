"""Proxy headers: right-to-left X-Forwarded-For walk, CIDRs, '*', literals, scheme."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tricorn.middleware.proxy_headers import ProxyHeadersMiddleware, TrustedHosts, split_host_port


def run(
    trusted: str | list[str],
    headers: list[tuple[bytes, bytes]],
    client: tuple[str, int] | None = ("127.0.0.1", 1234),
    kind: str = "http",
) -> dict[str, Any]:
    seen: dict[str, Any] = {}

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.update(scope)

    scope: dict[str, Any] = {"type": kind, "headers": headers, "client": client, "scheme": "http"}
    if kind == "websocket":
        scope["scheme"] = "ws"
    asyncio.run(ProxyHeadersMiddleware(app, trusted)(scope, None, None))  # type: ignore[arg-type]
    return seen


def xff(value: str) -> tuple[bytes, bytes]:
    return (b"x-forwarded-for", value.encode())


def test_trusted_peer_rewrites_client_and_scheme() -> None:
    scope = run("127.0.0.1", [xff("1.2.3.4"), (b"x-forwarded-proto", b"https")])
    assert scope["client"] == ("1.2.3.4", 0)
    assert scope["scheme"] == "https"


def test_untrusted_peer_is_ignored() -> None:
    scope = run("10.0.0.1", [xff("1.2.3.4"), (b"x-forwarded-proto", b"https")])
    assert scope["client"] == ("127.0.0.1", 1234)
    assert scope["scheme"] == "http"


def test_right_to_left_first_untrusted_hop_wins() -> None:
    # client 6.6.6.6 spoofs 1.1.1.1; proxies 10.0.0.1 and 127.0.0.1 are trusted.
    scope = run("127.0.0.1, 10.0.0.1", [xff("1.1.1.1, 6.6.6.6, 10.0.0.1")])
    assert scope["client"] == ("6.6.6.6", 0)


def test_several_headers_are_joined_in_order() -> None:
    scope = run("127.0.0.1,10.0.0.1", [xff("1.1.1.1, 6.6.6.6"), xff("10.0.0.1")])
    assert scope["client"] == ("6.6.6.6", 0)


def test_all_hops_trusted_gives_the_leftmost() -> None:
    scope = run("127.0.0.1,10.0.0.0/8", [xff("10.1.1.1, 10.2.2.2")])
    assert scope["client"] == ("10.1.1.1", 0)


def test_cidr() -> None:
    scope = run(
        "127.0.0.0/8, 192.168.0.0/16", [xff("8.8.8.8, 192.168.4.4")], client=("127.9.9.9", 1)
    )
    assert scope["client"] == ("8.8.8.8", 0)
    scope = run("192.168.0.0/16", [xff("8.8.8.8")], client=("127.0.0.1", 1))
    assert scope["client"] == ("127.0.0.1", 1)


def test_star_trusts_everyone_and_takes_the_leftmost() -> None:
    scope = run("*", [xff("1.1.1.1, 2.2.2.2")], client=("203.0.113.9", 5))
    assert scope["client"] == ("1.1.1.1", 0)
    assert run(["*"], [xff("3.3.3.3")], client=None)["client"] == ("3.3.3.3", 0)


def test_literal_such_as_a_unix_socket_peer() -> None:
    scope = run("/run/app.sock", [xff("5.5.5.5")], client=("/run/app.sock", 0))
    assert scope["client"] == ("5.5.5.5", 0)


def test_ports_and_ipv6() -> None:
    scope = run("127.0.0.1", [xff("[2001:db8::1]:8080")])
    assert scope["client"] == ("2001:db8::1", 8080)
    scope = run("127.0.0.1", [xff("1.2.3.4:5678")])
    assert scope["client"] == ("1.2.3.4", 5678)
    scope = run("::1", [xff("2001:db8::2")], client=("::1", 1))
    assert scope["client"] == ("2001:db8::2", 0)


def test_no_client_and_empty_header() -> None:
    assert run("127.0.0.1", [xff("1.2.3.4")], client=None)["client"] is None
    assert run("127.0.0.1", [xff("")])["client"] == ("127.0.0.1", 1234)


@pytest.mark.parametrize(
    ("kind", "proto", "scheme"),
    [
        ("http", b"https", "https"),
        ("http", b"HTTP", "http"),
        ("http", b"wss", "https"),
        ("websocket", b"https", "wss"),
        ("websocket", b"http", "ws"),
        ("websocket", b"wss", "wss"),
        ("http", b"gopher", "http"),
    ],
)
def test_scheme(kind: str, proto: bytes, scheme: str) -> None:
    scope = run("127.0.0.1", [(b"x-forwarded-proto", proto)], kind=kind)
    assert scope["scheme"] == scheme


def test_lifespan_untouched() -> None:
    seen = run("*", [], kind="lifespan")
    assert seen["client"] == ("127.0.0.1", 1234)


def test_trusted_hosts_membership() -> None:
    hosts = TrustedHosts("127.0.0.1, ::1, 10.0.0.0/8, not-an-ip, bad/net")
    assert "127.0.0.1" in hosts
    assert "0:0:0:0:0:0:0:1" in hosts  # another spelling of ::1
    assert "10.20.30.40" in hosts
    assert "not-an-ip" in hosts
    assert "bad/net" in hosts
    assert "11.0.0.1" not in hosts
    assert "" not in hosts
    assert None not in hosts
    assert "x" * 300 not in hosts


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1.2.3.4", ("1.2.3.4", 0)),
        ("1.2.3.4:80", ("1.2.3.4", 80)),
        ("1.2.3.4:http", ("1.2.3.4:http", 0)),
        ("[::1]", ("::1", 0)),
        ("[::1]:443", ("::1", 443)),
        ("[::1", ("[::1", 0)),
        ("[::1]x", ("[::1]x", 0)),
        ("::1", ("::1", 0)),
    ],
)
def test_split_host_port(value: str, expected: tuple[str, int]) -> None:
    assert split_host_port(value) == expected
