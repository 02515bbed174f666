"""``--http h11``: h11 feeding the shared HTTP/1.1 connection, held to llhttp's rules.

Both backends must refuse the same input, at the same byte, with the same status (issue 2).
llhttp (``--http httptools``) is the stricter parser: h11 takes bare LF line ends, obs-fold,
control characters in field values, any token as a method and whitespace after a chunk
size, and waits forever on a chunked body with bare LF line ends. llhttp is lenient where
the RFC allows it: empty lines before a request (RFC 9112 2.2) and several spaces between
the parts of the request line (RFC 9112 3); and it reads RTSP request lines (``_PROTOCOLS``).
So this module

* holds each request head back until it is complete and checks it as llhttp does
  (``HeadScanner``): line by line, the last, partial line as a beginning, so broken input is
  refused as soon as llhttp refuses it, however the bytes are cut. A head that arrives whole
  in one read, in the common shape, takes one regular-expression pass (``_SIMPLE_HEAD``);
* gives the checked head to a fresh ``h11.Connection`` to parse, without its
  Transfer-Encoding fields (h11 answers 501 to anything but a lone ``chunked``, where the
  shared ``request_head`` decides for both backends); they are put back in place after;
* frames the body itself: Content-Length by counting, chunked with llhttp's strict rules
  (sizes up to 2**64-1, no whitespace, extensions ``;name[=token|quoted-string]``, CRLF only).

Statuses are those ``httptools_impl`` gives: 400 for what llhttp refuses, 505 for a version
it refuses, 414 and 431 where our httptools callbacks raise them.

Why not h11 alone, as the parser of record
------------------------------------------
h11 still parses every request head (the method, target, version and fields the app
sees come from its ``Request`` event); what it cannot do is refuse what llhttp refuses,
so on its own the two backends would disagree on the inputs listed above (19 of 56
borderline cases did, before this module), and a chunked body with bare LF line ends
would hang. The checks are the price of giving both backends one verdict. Measured in
memory per request (``bench/parse.py``, one run on a shared 2-core machine; repeated runs
moved each figure by up to a fifth):

====================================  =========  ============  ==============
request                               h11 alone  this backend  ``httptools``
====================================  =========  ============  ==============
GET, 1 header, one read               24.0 us    20.3 us       2.0 us
GET, 10 headers, one read             35.4 us    36.6 us       5.8 us
GET, 10 headers, two reads            41.1 us    52.1 us       6.5 us
POST, 1 KiB chunked body              37.2 us    35.5 us       2.0 us
====================================  =========  ============  ==============

A whole head in the common shape costs no more than h11 alone (one regular expression
replaces work h11 would do itself, and the body is framed here without h11's events); a
head that arrives in pieces costs about a quarter more (``HeadScanner`` checks each line
as it completes). Whoever needs the speed uses ``--http httptools``, ten times faster
either way.
"""

from __future__ import annotations

import re

import h11

from tricorn.protocols.asgi.errors import HTTPProtocolError
from tricorn.protocols.http1.connection import HTTP1Connection
from tricorn.protocols.http1.request import (
    CHUNKED_FINAL,
    HTTP_METHODS,
    MAX_HEADERS,
    MAX_TARGET,
    version_error,
)

_UINT64_MAX = 2**64 - 1
# A partial line is checked again on each read until it grows past this, then once it ends:
# a client trickling one long line byte by byte costs linear, not quadratic, work (and the
# head size limit still applies). Only such a line can be refused later than llhttp does.
_TAIL_CHECK_LIMIT = 16 * 1024

_TOKEN = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]"
_VALUE_CHAR = rb"[\t\x20-\x7e\x80-\xff]"  # HTAB, SP, VCHAR, obs-text: no CTL, no DEL
_TARGET_CHAR = rb"[\x21-\x7e]"
# llhttp's characters in the host part of absolute-form and CONNECT targets, never "@@".
_SERVER_CHAR = rb"(?:[\x21\x24-\x2e\x30-\x3b\x3d\x41-\x5b\x5d\x5f\x61-\x7a\x7e]|@(?!@))"

# llhttp also parses RTSP and Icecast request lines, each protocol with its methods; the
# shared request_head then refuses the methods that are not HTTP's, and serves GET, POST and
# OPTIONS over "RTSP/1.0" as HTTP/1.0 (as httptools does: it does not tell us the protocol).
_RTSP_METHODS = frozenset(
    b"ANNOUNCE DESCRIBE FLUSH GET GET_PARAMETER OPTIONS PAUSE PLAY POST RECORD REDIRECT "
    b"SETUP SET_PARAMETER TEARDOWN".split()
)
_PROTOCOLS = (
    (b"HTTP", HTTP_METHODS | {b"PRI"}),
    (b"RTSP", _RTSP_METHODS),
    (b"ICE", frozenset((b"SOURCE",))),
)
# The method is matched before the protocol name is read, against all of them.
_ALL_METHODS = HTTP_METHODS | _RTSP_METHODS | {b"PRI"}
_METHOD_PREFIXES = frozenset(m[:i] for m in _ALL_METHODS for i in range(1, len(m) + 1))
_VERSIONS = {b"0.9": "0.9", b"1.0": "1.0", b"1.1": "1.1", b"2.0": "2.0"}  # llhttp's
_PRI_REST = b"\r\nSM\r\n\r\n"  # the HTTP/2 preface after "PRI * HTTP/2.0\r\n"

_METHOD = re.compile(rb"[A-Z_\-]*")
_SPACES = re.compile(rb" *")
_TARGET = re.compile(
    rb"(?:[/*]" + _TARGET_CHAR + rb"*"  # origin-form, asterisk-form, or absolute-form:
    rb"|[A-Za-z]+(?::(?:(//)" + _SERVER_CHAR + rb"*(?:[/?]" + _TARGET_CHAR + rb"*)?|/)?)?)?"
)
_CONNECT_TARGET = re.compile(_SERVER_CHAR + rb"*(?:[/?]" + _TARGET_CHAR + rb"*)?")
_FIELD = re.compile(rb"(" + _TOKEN + rb"+)(?::[ \t]*(" + _VALUE_CHAR + rb"*)(\r\n?)?)?")
_CONTENT_LENGTH = re.compile(rb"0*([0-9]*)[ \t]*")
_CHUNKED_NOT_LAST = re.compile(rb"(?:^|,[ \t]*)chunked *,", re.IGNORECASE)

# A whole head in one read, in its common shape; anything else takes HeadScanner.
_SIMPLE_HEAD = re.compile(
    rb"([A-Z][A-Z\-]*) (/" + _TARGET_CHAR + rb"*) HTTP/1\.([01])\r\n"
    rb"(?:" + _TOKEN + rb"+:" + _VALUE_CHAR + rb"*\r\n)*\r\n"
)
_FRAMING_FIELD = re.compile(rb"\n(content-length|transfer-encoding):[ \t]*([^\r]*)", re.I)

_QUOTED = rb'"(?:[\t\x20\x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t\x20-\x7e\x80-\xff])*'
_EXTENSION = rb";(?!\r)" + _TOKEN + rb"*(?:=" + _TOKEN + rb"*(?:" + _QUOTED + rb'")?)?'
_CHUNK_LINE = re.compile(rb"([0-9A-Fa-f]+)(?:" + _EXTENSION + rb")*\r\n")
_CHUNK_LINE_START = re.compile(
    rb"([0-9A-Fa-f]+)(?:" + _EXTENSION + rb")*"
    rb"(?:\r|;" + _TOKEN + rb"*(?:=" + _TOKEN + rb"*(?:" + _QUOTED + rb"\\?)?)?)?"
)

# What the parser is reading.
_HEAD, _LENGTH, _CHUNK_SIZE, _CHUNK_DATA, _CHUNK_END, _TRAILER = range(6)


def _bad(reason: str) -> HTTPProtocolError:
    return HTTPProtocolError(400, reason)


def _request_line(line: bytes) -> tuple[bytes, bytes, str] | None:
    """Check a request line, or its beginning, as llhttp does.

    Returns method, target and version ("0.9" for a line without one) once the line ends;
    None while it is a valid beginning. Raises at the first byte llhttp refuses.
    """
    size = len(line)
    method = _METHOD.match(line).group()  # type: ignore[union-attr]  # "*" always matches
    pos = len(method)
    if pos == size:
        if method in _METHOD_PREFIXES:
            return None
        raise _bad("invalid method")
    if line[pos] != 0x20 or method not in _ALL_METHODS:
        raise _bad("invalid method")
    pos = _SPACES.match(line, pos).end()  # type: ignore[union-attr]
    if pos == size:
        return None
    connect = method == b"CONNECT"
    match = (_CONNECT_TARGET if connect else _TARGET).match(line, pos)
    target = match.group()  # type: ignore[union-attr]
    pos = match.end()  # type: ignore[union-attr]
    if pos == size:
        # llhttp reports the target so far at the end of each read: our on_url limit
        if len(target) > MAX_TARGET:
            raise HTTPProtocolError(414, "request target too long")
        return None
    char = line[pos]
    complete = connect or target[:1] == b"/" or target[:1] == b"*"
    if not complete and target:
        complete = match.group(1) is not None  # type: ignore[union-attr]  # "scheme://" seen
    if not complete or char not in (0x20, 0x0D, 0x0A):
        raise _bad("invalid request target")
    if len(target) > MAX_TARGET:
        raise HTTPProtocolError(414, "request target too long")
    if char != 0x20:  # no version: llhttp's HTTP/0.9, refused once the head is complete
        if char == 0x0D and pos + 1 < size and line[pos + 1] != 0x0A:
            raise _bad("expected CRLF")
        return (method, target, "0.9") if line[-1] == 0x0A else None
    rest = line[_SPACES.match(line, pos).end() :]  # type: ignore[union-attr]
    size = len(rest)
    found = next((p for p in _PROTOCOLS if rest[: len(p[0])] == p[0][:size]), None)
    if found is None:
        raise _bad("expected HTTP/")
    protocol, methods = found
    pos = len(protocol)
    if size < pos:
        return None
    if method not in methods:
        raise _bad("invalid method for the protocol")
    for index, expected in ((0, b"/"), (1, b"0123456789"), (2, b"."), (3, b"0123456789")):
        if size <= pos + index:
            return None
        if rest[pos + index] not in expected:
            raise _bad("invalid HTTP version")
    version = _VERSIONS.get(rest[pos + 1 : pos + 4])
    if version is None:
        raise HTTPProtocolError(505, f"unsupported HTTP version {rest[pos + 1 : pos + 4]!r}")
    end = rest[pos + 4 :]
    if end != b"\r\n"[: len(end)]:
        raise _bad("expected CRLF after the version")
    return (method, target, version) if len(end) == 2 else None


class HeadScanner:
    """A request head, or a trailer section, arriving in pieces, checked as llhttp does.

    Complete lines are checked once; the partial last line is checked again on each read.
    The framing fields are tracked as llhttp's flags: one Content-Length, digits only, not
    with Transfer-Encoding; nothing after "chunked"; an empty value refused at the next byte.
    """

    __slots__ = (
        "buf",
        "done",
        "request",
        "fields",
        "content_length",
        "te_fields",
        "te_seen",
        "te_chunked",
        "empty_framing",
        "trailer",
    )

    def __init__(self, trailer: bool = False) -> None:
        self.buf = bytearray()
        self.done = 0  # bytes of buf in complete, checked lines
        self.request: tuple[bytes, bytes, str] | None = None
        self.fields = 0
        self.content_length: int | None = None
        self.te_fields: list[tuple[int, bytes]] = []  # (field index, value)
        # Trailers follow a chunked head: llhttp then refuses both framing fields in them.
        self.te_seen = trailer
        self.te_chunked = trailer
        self.empty_framing = False
        self.trailer = trailer

    def feed(self, data: bytes) -> int:
        """Add bytes; return where the head ends in ``buf`` once it is complete, else -1."""
        buf = self.buf
        buf += data
        while True:
            start = self.done
            if self.empty_framing and len(buf) > start:
                raise _bad("empty Content-Length or Transfer-Encoding")
            end = buf.find(b"\n", start)
            if end == -1:
                tail = len(buf) - start
                if tail and tail - len(data) <= _TAIL_CHECK_LIMIT:
                    self.check(bytes(buf[start:]), False)
                if self.trailer:  # nothing to keep: bounded by the partial line
                    del buf[:start]
                    self.done = 0
                return -1
            end += 1
            line = bytes(buf[start:end])
            if self.request is None and not self.trailer:
                request = _request_line(line)
                if request is not None and request[0] == b"PRI" and request[2] != "0.9":
                    # llhttp wants the rest of the HTTP/2 preface, then refuses it anyway.
                    more = bytes(buf[end : end + len(_PRI_REST)])
                    if more != _PRI_REST[: len(more)] or len(more) == len(_PRI_REST):
                        raise _bad("HTTP/2 connection preface")
                    return -1
                self.request = request
            elif line == b"\r\n":
                if self.fields > MAX_HEADERS and not self.trailer:
                    raise HTTPProtocolError(431, "too many header fields")
                return end
            else:
                self.check(line, True)
            self.done = end

    def check(self, line: bytes, complete: bool) -> None:
        """Check one line (complete, or the partial last one) after the request line."""
        if self.request is None and not self.trailer:
            _request_line(line)
            return
        if line == b"\r" and not complete:
            return  # the blank line that ends the head, on its way
        match = _FIELD.match(line)
        if self.fields > MAX_HEADERS and match is not None and not self.trailer:
            name_end = match.end(1)
            if name_end == len(line) or line[name_end] == 0x3A:
                # httptools hands over the previous field as this name starts: our
                # on_header then refuses the 101st
                raise HTTPProtocolError(431, "too many header fields")
        if match is None or match.end() != len(line):
            raise _bad("invalid header field")
        value = match.group(2)
        if value is None:
            return  # only a name so far
        name = match.group(1)
        if len(name) == 14 and name.lower() == b"content-length":
            self.check_content_length(value, complete)
        elif len(name) == 17 and name.lower() == b"transfer-encoding":
            self.check_transfer_encoding(value, complete)
        if complete:
            self.fields += 1

    def check_content_length(self, value: bytes, complete: bool) -> None:
        if self.te_seen:
            raise _bad("both Content-Length and Transfer-Encoding")
        if value and self.content_length is not None:
            raise _bad("repeated Content-Length header")
        match = _CONTENT_LENGTH.fullmatch(value)
        if match is None:
            raise _bad("invalid Content-Length")
        digits = match.group(1)
        if len(digits) > 20 or int(digits or b"0") > _UINT64_MAX:
            raise _bad("Content-Length too large")
        if complete:
            if value:
                self.content_length = int(digits or b"0")
            else:
                self.empty_framing = True

    def check_transfer_encoding(self, value: bytes, complete: bool) -> None:
        if self.content_length is not None:
            raise _bad("both Content-Length and Transfer-Encoding")
        if value and self.te_chunked:
            raise _bad("a transfer coding after chunked")
        if _CHUNKED_NOT_LAST.search(value) is not None:
            raise _bad("a transfer coding after chunked")
        if complete:
            if value:
                self.te_fields.append((self.fields, value))
                self.te_seen = True
                self.te_chunked = CHUNKED_FINAL.search(value) is not None
            else:
                self.empty_framing = True


class H11Protocol(HTTP1Connection):
    """HTTP/1.1 over h11, as strict as llhttp. Only translates parser events; see ``connection``."""

    __slots__ = ("state", "scanner", "remaining", "line")

    def new_parser(self) -> None:
        self.state = _HEAD
        self.scanner: HeadScanner | None = None
        self.remaining = 0  # body bytes of the Content-Length or current chunk still to come
        self.line = b""  # the beginning of a chunk size line, or of the CRLF after a chunk

    def parse(self, data: bytes) -> None:
        while data:
            state = self.state
            if state == _HEAD:
                data = self.read_head(data)
            elif state == _LENGTH:
                data = self.read_length(data)
            elif state == _TRAILER:
                data = self.read_trailer(data)
            else:
                data = self.read_chunked(data)

    # -- the head -----------------------------------------------------------------------

    def read_head(self, data: bytes) -> bytes:
        scanner = self.scanner
        if scanner is None:
            if data[0] == 0x0D or data[0] == 0x0A:
                data = data.lstrip(b"\r\n")  # llhttp skips empty lines before a request
                if not data:
                    return b""
            end = data.find(b"\r\n\r\n")
            if end != -1:
                rest = self.read_simple_head(data, end + 4)
                if rest is not None:
                    return rest
            scanner = self.scanner = HeadScanner()
        end = scanner.feed(data)
        if end < 0:
            return b""
        self.scanner = None
        method, target, version = scanner.request  # type: ignore[misc]  # set: head complete
        if version != "1.1" and version != "1.0":
            raise version_error(version)  # as request_head would, before h11 sees it
        buf = scanner.buf
        te_fields = scanner.te_fields
        line_end = len(method) + len(target) + 10
        if not te_fields and buf.find(b"\r\n") == line_end and buf[line_end - 8] == 0x48:
            head = bytes(buf[:end])  # already "METHOD TARGET HTTP/x.y": h11 takes it as is
        else:
            # Rebuilt with single spaces in the request line (all h11 accepts) and without
            # the Transfer-Encoding fields.
            fields = bytes(buf[: end - 2]).split(b"\r\n")[1:-1]
            head = b"%s %s HTTP/%s\r\n%s\r\n" % (
                method,
                target,
                version.encode(),
                b"".join(f + b"\r\n" for f in fields if f[:18].lower() != b"transfer-encoding:"),
            )
        length = scanner.content_length or 0
        return self.start_request(head, version, te_fields, length, bool(te_fields), buf[end:])

    def read_simple_head(self, data: bytes, end: int) -> bytes | None:
        """Take a whole head in the common shape in one pass; None if it is not one."""
        match = _SIMPLE_HEAD.fullmatch(data, 0, end)
        if match is None:
            return None
        method, target, minor = match.groups()
        if (
            method not in HTTP_METHODS
            or len(target) > MAX_TARGET
            or data.count(b"\n", 0, end) - 2 > MAX_HEADERS
        ):
            return None
        length = 0
        framing = _FRAMING_FIELD.findall(data, 0, end)
        if framing:
            # One Content-Length that is plainly fine; anything else takes HeadScanner.
            if len(framing) > 1 or len(framing[0][0]) != 14 or not framing[0][1]:
                return None
            digits = _CONTENT_LENGTH.fullmatch(framing[0][1])
            if digits is None or len(digits.group(1)) > 19:
                return None
            length = int(digits.group(1) or b"0")
        version = "1.1" if minor == b"1" else "1.0"
        return self.start_request(data[:end], version, (), length, False, data[end:])

    def start_request(
        self,
        head: bytes,
        version: str,
        te_fields: list[tuple[int, bytes]] | tuple[()],
        length: int,
        chunked: bool,
        rest: bytes | bytearray,
    ) -> bytes:
        conn = h11.Connection(h11.SERVER)
        conn.receive_data(head)
        try:
            event = conn.next_event()
        except h11.RemoteProtocolError as exc:
            raise HTTPProtocolError(exc.error_status_hint, str(exc)) from None
        if not isinstance(event, h11.Request):  # cannot happen: the head is complete
            raise _bad("incomplete request head")
        headers = list(event.headers)
        for index, value in te_fields:
            headers.insert(index, (b"transfer-encoding", value))
        self.request_head(event.method, event.target, version, headers)
        rest = bytes(rest)
        if chunked:
            self.state = _CHUNK_SIZE
        elif length:
            self.state = _LENGTH
            self.remaining = length
        else:
            return self.finish(rest)
        return rest

    # -- the body -----------------------------------------------------------------------

    def take_body(self, data: bytes) -> bytes | None:
        """Hand over body bytes up to ``remaining``: what follows them, or None if the
        Content-Length or chunk is not complete yet."""
        remaining = self.remaining
        if len(data) < remaining:
            self.remaining = remaining - len(data)
            self.request_body(data)
            return None
        self.request_body(data[:remaining])
        return data[remaining:]

    def read_length(self, data: bytes) -> bytes:
        rest = self.take_body(data)
        return b"" if rest is None else self.finish(rest)

    def read_chunked(self, data: bytes) -> bytes:
        state = self.state
        if state == _CHUNK_DATA:
            rest = self.take_body(data)
            if rest is None:
                return b""
            self.state = _CHUNK_END
            return rest
        if state == _CHUNK_END:
            line = self.line + data[: 2 - len(self.line)]
            if line != b"\r\n"[: len(line)]:
                raise _bad("chunk data not followed by CRLF")
            taken = len(line) - len(self.line)
            if len(line) < 2:
                self.line = line
            else:
                self.line = b""
                self.state = _CHUNK_SIZE
            return data[taken:]
        end = data.find(b"\n")
        if end == -1:
            line = self.line + data
            if len(line) > self.max_head:
                raise HTTPProtocolError(431, "chunk size line too long")
            if len(self.line) <= _TAIL_CHECK_LIMIT:
                match = _CHUNK_LINE_START.fullmatch(line)
                if match is None:
                    raise _bad("invalid chunk size line")
                if len(match.group(1).lstrip(b"0")) > 16:
                    raise _bad("chunk size too large")
            self.line = line
            return b""
        line = self.line + data[: end + 1]
        self.line = b""
        match = _CHUNK_LINE.fullmatch(line)
        if match is None:
            raise _bad("invalid chunk size line")
        digits = match.group(1).lstrip(b"0")
        if len(digits) > 16:  # above 2**64-1, as llhttp
            raise _bad("chunk size too large")
        size = int(digits or b"0", 16)
        if size:
            self.state = _CHUNK_DATA
            self.remaining = size
        else:
            self.state = _TRAILER
            self.scanner = HeadScanner(trailer=True)
        return data[end + 1 :]

    def read_trailer(self, data: bytes) -> bytes:
        scanner = self.scanner
        assert scanner is not None
        end = scanner.feed(data)
        if end < 0:
            if len(scanner.buf) > self.max_head:
                raise HTTPProtocolError(431, "trailer section too large")
            return b""
        self.scanner = None
        return self.finish(bytes(scanner.buf[end:]))

    def finish(self, rest: bytes) -> bytes:
        """The request is complete; ``rest`` is what followed it."""
        self.request_complete()
        self.state = _HEAD
        if self.websocket is not None:
            # Upgraded: the connection hands every later byte to the WebSocket itself.
            self.forward_upgrade(rest)
            return b""
        return rest
