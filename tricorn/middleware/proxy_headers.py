"""Trust ``X-Forwarded-For`` / ``X-Forwarded-Proto`` from known proxies (``--proxy-headers``).

Theory of operation: every proxy appends the address it received the request from to
``X-Forwarded-For``. Reading the list right to left, each hop is the peer of the next;
as long as a hop is a trusted proxy we can believe what it wrote, and the first hop that
is *not* trusted is the real client. If every hop is trusted, the left-most one is the
client. The header is only believed when the direct peer (``scope["client"]``) is trusted.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache

from tricorn.middleware import ASGIApp, Receive, Scope, Send

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_SCHEMES = {"http", "https", "ws", "wss"}


class TrustedHosts:
    """The set of peers whose proxy headers are believed.

    Entries are IP addresses, networks in CIDR notation, ``*`` (everything) or literals
    compared as strings (for example a unix socket path, or a name a proxy writes).
    """

    def __init__(self, trusted: list[str] | str) -> None:
        items = (
            [item.strip() for item in trusted.split(",")]
            if isinstance(trusted, str)
            else list(trusted)
        )
        items = [item for item in items if item]
        self.always_trust = "*" in items
        self.addresses: set[IPAddress] = set()
        self.networks: list[IPNetwork] = []
        self.literals: set[str] = set()
        for item in items:
            try:
                if "/" in item:
                    self.networks.append(ipaddress.ip_network(item, strict=False))
                else:
                    self.addresses.add(ipaddress.ip_address(item))
            except ValueError:
                self.literals.add(item)
        # Peers repeat a lot (a few proxies, many requests): cache the verdicts.
        self._trusts = lru_cache(maxsize=4096)(self._compute)

    def __contains__(self, host: object) -> bool:
        if self.always_trust:
            return True
        if not isinstance(host, str) or not host:
            return False
        if len(host) > 253:  # no real address is this long; keep junk out of the cache
            return self._compute(host)
        return self._trusts(host)

    def _compute(self, host: str) -> bool:
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return host in self.literals
        return address in self.addresses or any(address in net for net in self.networks)

    def client_from_forwarded_for(self, forwarded_for: str) -> tuple[str, int]:
        """The client address from an ``X-Forwarded-For`` value (hosts joined by commas)."""
        hops = [hop.strip() for hop in forwarded_for.split(",")]
        if not self.always_trust:
            for hop in reversed(hops):
                host, port = split_host_port(hop)
                if host not in self:
                    return host, port
        return split_host_port(hops[0])


def split_host_port(value: str) -> tuple[str, int]:
    """Split ``1.2.3.4``, ``1.2.3.4:80``, ``::1`` or ``[::1]:80`` into (host, port or 0).

    Anything else is returned whole as the host, so it can never match a trusted entry
    by accident.
    """
    if value.startswith("["):
        end = value.find("]")
        if end == -1:
            return value, 0
        host, rest = value[1:end], value[end + 1 :]
        if not rest:
            return host, 0
        if rest.startswith(":") and rest[1:].isdigit():
            return host, int(rest[1:])
        return value, 0
    if value.count(":") == 1:
        host, _, port = value.partition(":")
        if port.isdigit():
            return host, int(port)
        return value, 0
    return value, 0


class ProxyHeadersMiddleware:
    """Rewrite ``scope["client"]`` and ``scope["scheme"]`` from trusted proxy headers."""

    def __init__(self, app: ASGIApp, trusted_hosts: list[str] | str = "127.0.0.1") -> None:
        self.app = app
        self.trusted_hosts = TrustedHosts(trusted_hosts)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            client = scope.get("client")
            if (client[0] if client else None) in self.trusted_hosts:
                self._apply(scope)
        await self.app(scope, receive, send)

    def _apply(self, scope: Scope) -> None:
        proto: bytes | None = None
        forwarded_for: list[bytes] = []
        for name, value in scope["headers"]:
            if name == b"x-forwarded-proto":
                proto = value
            elif name == b"x-forwarded-for":
                forwarded_for.append(value)

        if proto is not None:
            scheme = proto.decode("latin-1").strip().lower()
            if scheme in _SCHEMES:
                if scope["type"] == "websocket":
                    scheme = scheme.replace("http", "ws")
                else:
                    scheme = scheme.replace("ws", "http")
                scope["scheme"] = scheme

        if forwarded_for:
            joined = ", ".join(value.decode("latin-1") for value in forwarded_for)
            host, port = self.trusted_hosts.client_from_forwarded_for(joined)
            if host:  # an empty header names nobody: keep the peer
                scope["client"] = (host, port)
