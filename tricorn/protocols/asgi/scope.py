"""The ASGI connection scope, built in one place for every framing and both scope types.

A framing parses the request target into ``raw_path`` and ``query`` (the path without
its query, percent-encoded as it arrived) and hands over the header fields, names
lower-cased, in wire order; this module adds what comes from the connection (addresses,
scheme, ``root_path``, the lifespan state) and decodes the path.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote_to_bytes

from tricorn.protocols.base import BaseConnection

# (plain, over TLS) per scope type
_SCHEMES = {"http": ("http", "https"), "websocket": ("ws", "wss")}


def new_scope(
    conn: BaseConnection,
    scope_type: str,
    http_version: str,
    raw_path: bytes,
    query: bytes,
    headers: list[tuple[bytes, bytes]],
) -> dict[str, Any]:
    """The scope keys every HTTP and WebSocket scope has; the caller adds its own
    (``method`` for HTTP; ``subprotocols`` and ``extensions`` for WebSocket).

    ``path`` is ``raw_path`` percent-decoded as UTF-8 (invalid bytes replaced).
    """
    if b"%" in raw_path or not raw_path.isascii():
        path = unquote_to_bytes(raw_path).decode("utf-8", "replace")
    else:
        path = raw_path.decode("ascii")
    root_path = conn.root_path
    return {
        "type": scope_type,
        "asgi": conn.asgi,
        "http_version": http_version,
        "server": conn.server,
        "client": conn.client,
        "scheme": _SCHEMES[scope_type][conn.tls],
        "root_path": root_path,
        "path": root_path + path,
        "raw_path": conn.raw_root_path + raw_path if root_path else raw_path,
        "query_string": query,
        "headers": headers,
        "state": conn.app_state.copy(),
    }
