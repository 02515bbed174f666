"""HTTP failures and the bytes they put on the wire.

A client that breaks HTTP raises ``HTTPProtocolError`` carrying the status it gets; this
module is the one place that turns a status into a response. Internal exception text never
reaches the client: the body is a fixed sentence per status.
"""

from __future__ import annotations

from http import HTTPStatus


class HTTPProtocolError(Exception):
    """The request broke HTTP: answer ``status`` and close the connection.

    ``reason`` is for the server's log only.
    """

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class ClientDisconnected(OSError):
    """Raised by ``send()`` once the client has gone away (ASGI HTTP spec 2.4)."""


# What the client reads for each status we produce ourselves.
MESSAGES: dict[int, bytes] = {
    400: b"Invalid HTTP request received.",
    414: b"Request target too long.",
    431: b"Request header fields too large.",
    500: b"Internal Server Error",
    501: b"Unsupported transfer coding.",
    503: b"Service Unavailable",
    505: b"HTTP version not supported.",
}

_STATUS_LINES: dict[int, bytes] = {}


def status_line(status: int) -> bytes:
    """``HTTP/1.1 <status> <phrase>\\r\\n``, cached per status code."""
    line = _STATUS_LINES.get(status)
    if line is None:
        try:
            phrase = HTTPStatus(status).phrase.encode("ascii")
        except ValueError:
            phrase = b""
        line = b"HTTP/1.1 %d %s\r\n" % (status, phrase)
        if len(_STATUS_LINES) < 1000:  # bounded: apps may use odd codes
            _STATUS_LINES[status] = line
    return line


def error_response(status: int, default_headers: bytes) -> bytes:
    """A complete response for a request we refuse ourselves; the connection then closes."""
    body = MESSAGES.get(status) or HTTPStatus(status).phrase.encode("ascii")
    return b"".join(
        (
            status_line(status),
            default_headers,
            b"content-type: text/plain; charset=utf-8\r\n",
            b"content-length: %d\r\n" % len(body),
            b"connection: close\r\n\r\n",
            body,
        )
    )
