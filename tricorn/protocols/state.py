"""State shared by every connection of one worker's server.

Rules: this module owns what is per *server* rather than per connection or per request:
the set of live connections, the running request tasks, the request counter, and the
default response headers (each framing caches its own encoding of them in ``encoded``).
The Date header is rendered here once a second by ``tick()``, which the server's main
loop calls, so no request ever formats a date.
``tick()`` also sweeps connection timeouts, so no timer is armed per request.
"""

from __future__ import annotations

import asyncio
import time
from email.utils import formatdate
from typing import Protocol


class Connection(Protocol):
    """What the server needs from a live connection (HTTP or WebSocket)."""

    def shutdown(self) -> None:
        """Stop taking new requests; finish the one in flight, then close."""

    def on_tick(self, now: float) -> None:
        """Called about once a second: enforce timeouts against ``now`` (loop time)."""

    def close(self) -> None:
        """Close the transport now (the end of a shutdown that ran out of time)."""


class ServerState:
    """Per-server state shared between all protocol instances of one worker."""

    __slots__ = (
        "connections",
        "tasks",
        "total_requests",
        "server_header",
        "date_header",
        "extra_headers",
        "default_headers",
        "default_header_names",
        "encoded",
        "drain_idle_grace",
    )

    def __init__(
        self,
        *,
        server_header: bool = True,
        date_header: bool = True,
        extra_headers: list[tuple[bytes, bytes]] | None = None,
        drain_idle_grace: float | None = None,
    ) -> None:
        self.connections: set[Connection] = set()
        self.tasks: set[asyncio.Task[None]] = set()
        self.total_requests = 0
        self.server_header = server_header
        self.date_header = date_header
        # Lower-cased names; a ``--header server:x`` replaces the default server header.
        self.extra_headers = [(name.lower(), value) for name, value in extra_headers or []]
        # (name, value) pairs, re-rendered by tick(). A response whose app sets one of these
        # names gets the rest only (never twice).
        self.default_headers: list[tuple[bytes, bytes]] = []
        self.default_header_names: frozenset[bytes] = frozenset()
        # Each framing's encoding of default_headers (HTTP/1.1's header block), made by the
        # framing on first use and dropped whenever the headers are rendered again.
        self.encoded: dict[str, bytes] = {}
        self.render_default_headers()
        # While draining, an idle keep-alive connection is kept this long (None: until its
        # keep-alive timeout, the exact drain a worker of the master does).
        self.drain_idle_grace = drain_idle_grace

    def render_default_headers(self) -> None:
        extra_names = {name for name, _ in self.extra_headers}
        headers: list[tuple[bytes, bytes]] = []
        if self.server_header and b"server" not in extra_names:
            headers.append((b"server", b"tricorn"))
        if self.date_header and b"date" not in extra_names:
            headers.append((b"date", formatdate(time.time(), usegmt=True).encode()))
        headers.extend(self.extra_headers)
        self.default_headers = headers
        self.default_header_names = frozenset(name for name, _ in headers)
        self.encoded = {}

    def default_headers_without(self, names: set[bytes]) -> list[tuple[bytes, bytes]]:
        """The default headers minus the (lower-cased) names the app set itself."""
        return [(name, value) for name, value in self.default_headers if name not in names]

    def tick(self, now: float) -> None:
        """Once a second: refresh the Date header and sweep connection timeouts."""
        self.render_default_headers()
        for conn in list(self.connections):
            conn.on_tick(now)
