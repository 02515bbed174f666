"""Which framing serves a new connection: the one place that chooses.

The worker's listeners create every connection through a ``ProtocolSelector``. Today the
choice is made once, from the configuration: HTTP/1.1 over ``--http``'s backend (WebSocket
upgrades included). This is where HTTP/2 will plug in: by ALPN (``h2``) on TLS listeners,
which is known when the connection is made, and by the client's connection preface
(``PRI * HTTP/2.0``) in its first bytes on cleartext ones; a connection that cannot be
told at once will start in a small protocol that reads those bytes, then hands the
transport to the framing it picked. A connection of the common case pays nothing for the
choice: the selector returns the framing itself.
"""

from __future__ import annotations

import asyncio
from typing import Any

from tricorn.config import Config
from tricorn.protocols.base import BaseConnection
from tricorn.protocols.state import ServerState


class ProtocolSelector:
    """The protocol factory of ``loop.create_server``: one framing per new connection."""

    __slots__ = ("config", "server_state", "app_state", "http1")

    def __init__(
        self, config: Config, server_state: ServerState, app_state: dict[str, Any]
    ) -> None:
        self.config = config
        self.server_state = server_state
        self.app_state = app_state
        # --http: the HTTP/1.1 backend (a BaseConnection subclass), resolved by Config.load.
        self.http1: type[BaseConnection] = config.http_protocol_class

    def __call__(self) -> asyncio.Protocol:
        return self.http1(
            config=self.config, server_state=self.server_state, app_state=self.app_state
        )
