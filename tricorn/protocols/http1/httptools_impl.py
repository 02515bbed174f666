"""``--http httptools``: llhttp (through httptools) feeding the shared HTTP/1.1 connection."""

from __future__ import annotations

import logging

import httptools

from tricorn.protocols.asgi.errors import HTTPProtocolError
from tricorn.protocols.http1.connection import HTTP1Connection
from tricorn.protocols.http1.request import MAX_HEADERS, MAX_TARGET

logger = logging.getLogger("tricorn.error")


class HTTPToolsProtocol(HTTP1Connection):
    """HTTP/1.1 over httptools. Only translates parser callbacks; see ``connection``."""

    __slots__ = ("parser", "url", "headers", "priming")

    def new_parser(self) -> None:
        self.parser = httptools.HttpRequestParser(self)
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.priming = False

    def parse(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            error = exc.__context__
            if isinstance(error, HTTPProtocolError):
                raise error from None
            logger.error("Error while handling a request", exc_info=error)
            raise HTTPProtocolError(500, f"internal error: {error!r}") from None
        except httptools.HttpParserUpgrade as exc:
            # llhttp stops after a request asking to switch protocols.
            offset = exc.args[0]
            if self.websocket is not None:
                self.forward_upgrade(data[offset:])
                return
            # We answer it as plain HTTP. llhttp took the body, if any, for the new protocol:
            # a fresh parser primed with the same framing (its head hidden from us) reads it.
            framing = b"".join(
                b"%s: %s\r\n" % (name, value)
                for name, value in self.headers
                if name == b"content-length" or name == b"transfer-encoding"
            )
            self.new_parser()
            if framing:
                self.priming = True
                try:
                    self.parser.feed_data(b"PUT / HTTP/1.1\r\n" + framing + b"\r\n")
                finally:
                    self.priming = False
            else:
                self.request_complete()
            if offset < len(data):
                self.parse(data[offset:])
        except httptools.HttpParserError as exc:
            reason = str(exc)
            # llhttp refuses versions other than 0.9/1.x itself; h11 leaves that to us (505).
            status = 505 if reason == "Invalid HTTP version" else 400
            raise HTTPProtocolError(status, reason) from None

    # httptools callbacks

    def on_message_begin(self) -> None:
        if self.priming:
            return
        self.url = b""
        self.headers = []

    def on_url(self, url: bytes) -> None:
        if self.priming:
            return
        self.url += url
        if len(self.url) > MAX_TARGET:
            raise HTTPProtocolError(414, "request target too long")

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.priming or not self.in_head:
            return  # trailer fields after a chunked body are not request headers (h11 agrees)
        headers = self.headers
        name = name.lower()
        if value.endswith((b" ", b"\t")) and name != b"transfer-encoding":
            # RFC 9110 5.5: trailing whitespace is not part of the value (h11 drops it too).
            # Transfer-Encoding stays raw: "chunked\t" is not chunked to llhttp, and the
            # shared framing check must see what llhttp saw.
            value = value.rstrip(b" \t")
        headers.append((name, value))
        if len(headers) > MAX_HEADERS:
            raise HTTPProtocolError(431, "too many header fields")

    def on_headers_complete(self) -> None:
        if self.priming:
            return
        parser = self.parser
        self.request_head(parser.get_method(), self.url, parser.get_http_version(), self.headers)

    def on_body(self, body: bytes) -> None:
        self.request_body(body)

    def on_message_complete(self) -> None:
        if self.parser.should_upgrade() and self.websocket is None:
            return  # an upgrade we serve as plain HTTP: its body is read after the pause
        self.request_complete()
