"""What goes wrong, and what the peer gets for it: written once for every wire protocol.

* A request that breaks HTTP raises ``HTTPProtocolError`` carrying the status it gets;
  each framing turns it into its own error response, whose body is ``MESSAGES[status]``
  (a fixed sentence: internal exception text never reaches the client).
* The server's own plain responses (500 when the app fails, 503 over
  ``--limit-concurrency``, the framings' error responses) take ``plain_text(status)``.
* The app's response headers are checked by ``check_header`` before anything is sent.
* WebSocket close codes: every code the server sends is named here; the WebSocket
  stream picks among them. Close reasons never carry internal detail.
"""

from __future__ import annotations

import re
from http import HTTPStatus
from typing import Any

Headers = list[tuple[bytes, bytes]]
PLAIN_TEXT = (b"content-type", b"text/plain; charset=utf-8")


class HTTPProtocolError(Exception):
    """The request broke HTTP: answer ``status`` and close the connection.

    ``reason`` is for the server's log only, after ``what``. The response is plain text,
    ``body`` (``MESSAGES[status]`` by default), with ``headers`` before the framing.
    """

    what = "Invalid HTTP request received"

    def __init__(
        self, status: int, reason: str, headers: Headers | None = None, body: bytes | None = None
    ) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.headers = [PLAIN_TEXT] if headers is None else headers
        self.body = body


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


def message(status: int) -> bytes:
    """The body of the server's own response with ``status``."""
    return MESSAGES.get(status) or HTTPStatus(status).phrase.encode("ascii")


def plain_text(status: int) -> tuple[Headers, bytes]:
    """The headers and body of a plain-text response the server makes itself."""
    body = message(status)
    return [PLAIN_TEXT, (b"content-length", b"%d" % len(body))], body


# RFC 9110 token characters for header names; values may not contain CR, LF or NUL.
# (The HTTP stream calls the two matchers itself, and check_header only for a bad pair.)
VALID_NAME = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+").fullmatch
INVALID_VALUE = re.compile(rb"[\x00\r\n]").search


def check_header(name: bytes, value: bytes) -> None:
    """Refuse an app's header whose name or value would break HTTP (the app's error)."""
    if VALID_NAME(name) is None:
        raise RuntimeError(f"Invalid HTTP header name {name!r}.")
    if INVALID_VALUE(value) is not None:
        raise RuntimeError(f"Invalid HTTP header value {value!r}.")


def check_headers(headers: Any) -> Headers:
    """The app's headers as a list of ``bytes`` pairs, each checked."""
    checked = []
    for name, value in headers:
        check_header(name, value)
        checked.append((bytes(name), bytes(value)))
    return checked


# RFC 6455 close codes we produce.
NORMAL_CLOSURE = 1000
ABNORMAL_CLOSURE = 1006
INVALID_DATA = 1007
MESSAGE_TOO_BIG = 1009
INTERNAL_ERROR = 1011
SERVICE_RESTART = 1012


def valid_close_code(code: object) -> bool:
    """Whether an app may send ``code`` in a close frame (RFC 6455 7.4)."""
    return isinstance(code, int) and (
        1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999
    )


def truncate_reason(reason: str) -> str:
    """A close reason cut to the 123 UTF-8 bytes a close frame can carry."""
    data = reason.encode("utf-8")
    if len(data) <= 123:
        return reason
    return data[:123].decode("utf-8", "ignore")
