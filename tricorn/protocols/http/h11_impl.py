"""``--http h11``: h11 feeding the shared HTTP connection.

h11 is used as a request parser only: responses are framed by the shared cycle so both
backends answer byte for byte alike. A fresh ``h11.Connection`` parses each request; the
bytes after one request (pipelining) are handed to the next.
"""

from __future__ import annotations

import h11

from tricorn.protocols.http.connection import HTTPConnection
from tricorn.protocols.http.errors import HTTPProtocolError


class H11Protocol(HTTPConnection):
    """HTTP/1.1 over h11. Only translates parser events; see ``connection``."""

    __slots__ = ("conn",)

    def new_parser(self) -> None:
        # A little above our own head limit, so the shared check (414 vs 431) answers first.
        self.conn = h11.Connection(h11.SERVER, max_incomplete_event_size=self.max_head + 4096)

    def parse(self, data: bytes) -> None:
        conn = self.conn
        conn.receive_data(data)
        while True:
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError as exc:
                if exc.error_status_hint == 431 and self.in_head:
                    raise self.head_too_large() from None  # same 414/431 rule as httptools
                raise HTTPProtocolError(exc.error_status_hint, str(exc)) from None
            event_type = type(event)
            if event_type is h11.Data:
                self.request_body(bytes(event.data))  # type: ignore[union-attr]
            elif event_type is h11.Request:
                self.request_head(
                    event.method,  # type: ignore[union-attr]
                    event.target,  # type: ignore[union-attr]
                    event.http_version.decode("ascii"),  # type: ignore[union-attr]
                    list(event.headers),  # type: ignore[union-attr]
                )
            elif event_type is h11.EndOfMessage:
                trailing, closed = conn.trailing_data
                if self.upgrade_to is not None:
                    self.forward_upgrade(trailing)
                    return
                self.request_complete()
                self.new_parser()
                conn = self.conn
                if trailing:
                    conn.receive_data(trailing)
                if closed:
                    conn.receive_data(b"")
            else:  # NEED_DATA, PAUSED or ConnectionClosed: wait for more bytes
                return
