"""Fuzz both HTTP/1.1 backends in memory with random and mutated requests.

    .venv/bin/python fuzz/fuzz_http.py                     # 10,000 examples per run
    .venv/bin/python fuzz/fuzz_http.py --examples 100000 --http h11 --seed 1

Each example is a byte string (well-formed requests, the same mutated, or plain noise) fed
to a protocol instance over a fake transport, either whole or cut into random pieces down
to single bytes. The one invariant: whatever arrives, the server's only outcomes are

* well-formed responses (status line, valid headers, body framed as announced), one per
  request the app saw, in order;
* optionally, as the very last response, a protocol error (4xx, 501 or 505) after which
  the connection is closed;
* or waiting for more bytes.

No exception may escape the protocol (not from ``data_received``, not from the event loop,
not from the app's ``receive``/``send``), nothing may be logged at ERROR, and half a
response is a failure. Both backends must also give the same verdict on any input, valid
or not, cut the same way: the same responses byte for byte (Date aside; so the same
statuses in the same order) and the same closed flag. ``tests/test_fuzz_http.py`` runs a
short bounded version.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import re
import sys
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

BACKENDS = ("httptools", "h11")
# Statuses the server itself answers to a request that breaks HTTP (it then closes).
PROTOCOL_ERRORS = frozenset({400, 413, 414, 431, 501, 505})


# ---------------------------------------------------------------------------------------
# The server side: an app, a fake transport and one exchange


class FakeTransport(asyncio.Transport):
    """Collects what the protocol writes; reading can be paused, writing never blocks."""

    def __init__(self) -> None:
        super().__init__()
        self.output = bytearray()
        self.closed = False
        self.reading_paused = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        assert not self.closed, "write after close"
        self.output += data

    def writelines(self, list_of_data: Any) -> None:
        for data in list_of_data:
            self.write(data)

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        self.reading_paused = True

    def resume_reading(self) -> None:
        self.reading_paused = False

    def is_reading(self) -> bool:
        return not self.reading_paused

    def get_write_buffer_size(self) -> int:
        return 0

    def can_write_eof(self) -> bool:
        return False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {
            "peername": ("127.0.0.1", 50000),
            "sockname": ("127.0.0.1", 8000),
        }.get(name, default)


@dataclass
class AppLog:
    methods: list[str] = field(default_factory=list)
    completed: int = 0


def make_app(log: AppLog) -> Any:
    """An app that reads the whole body, then answers with Content-Length or chunked."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        log.methods.append(scope["method"])
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            size += len(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"%d" % size
        if len(scope["path"]) % 2:  # chunked: no Content-Length, body in two messages
            headers = [(b"content-type", b"text/plain")]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": body, "more_body": True})
            await send({"type": "http.response.body", "body": b"!"})
        else:
            headers = [(b"content-length", b"%d" % len(body))]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": body})
        log.completed += 1

    return app


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


_CONFIGS: dict[str, Any] = {}


def _config(backend: str, log: AppLog) -> Any:
    from tricorn.config import Config

    config = _CONFIGS.get(backend)
    if config is None:
        config = Config(
            make_app(AppLog()), http=backend, lifespan="off", log_config=None, access_log=False
        )
        config.load()
        _CONFIGS[backend] = config
    # One config per backend (loading is slow); each exchange gets a fresh app.
    config.loaded_app = make_app(log)
    return config


def _protocol_class(backend: str) -> Any:
    if backend == "httptools":
        from tricorn.protocols.http1.httptools_impl import HTTPToolsProtocol

        return HTTPToolsProtocol
    from tricorn.protocols.http1.h11_impl import H11Protocol

    return H11Protocol


async def _settle(state: Any, *, require_done: bool = False) -> None:
    """Run the loop until the app tasks finish or stop making progress (bounded).

    Between pieces of input an app may rightly wait for more body; once the connection is
    lost (``require_done``) every app task must end.
    """
    for _ in range(50):
        if not state.tasks:
            await asyncio.sleep(0)  # callbacks scheduled by the last task
            return
        await asyncio.sleep(0)
    if require_done:
        raise AssertionError("app tasks still running after the connection was lost")


def run_exchange(backend: str, data: bytes, cuts: list[int]) -> tuple[bytes, bool, AppLog]:
    """Feed ``data`` (split at ``cuts``) to a fresh connection; return output, closed, log."""
    from tricorn.protocols.state import ServerState

    log = AppLog()
    config = _config(backend, log)
    loop = asyncio.new_event_loop()
    loop_errors: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: loop_errors.append(context))
    collect = _Collect()
    tricorn_logger = logging.getLogger("tricorn")
    tricorn_logger.addHandler(collect)
    try:
        state = ServerState()
        proto = _protocol_class(backend)(
            config=config, server_state=state, app_state={}, _loop=loop
        )
        transport = FakeTransport()

        async def exchange() -> tuple[bytes, bool]:
            proto.connection_made(transport)
            start = 0
            for end in [*sorted(set(cuts)), len(data)]:
                if transport.closed:
                    break
                # A real transport delivers nothing while reading is paused; our app
                # always drains its body, so a pause that outlives it is a stall.
                assert not transport.reading_paused, "reading left paused with input pending"
                if end > start:
                    proto.data_received(data[start:end])
                    start = end
                # Let the app run between pieces, as a real loop would.
                await _settle(state)
            closed = transport.closed
            output = bytes(transport.output)
            proto.connection_lost(None)
            await _settle(state, require_done=True)
            return output, closed

        output, closed = loop.run_until_complete(exchange())
    finally:
        tricorn_logger.removeHandler(collect)
        loop.close()
    assert not loop_errors, f"exception escaped to the event loop: {loop_errors[0]}"
    assert not collect.records, f"logged at ERROR: {collect.records[0].getMessage()}"
    return output, closed, log


# ---------------------------------------------------------------------------------------
# Checking what the server wrote

_STATUS_LINE = re.compile(rb"HTTP/1\.1 ([1-5]\d\d) [^\r\n]*")
_HEADER_LINE = re.compile(rb"([!#$%&'*+\-.^_`|~0-9A-Za-z]+): ?([^\x00\r\n]*)")


@dataclass
class Response:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes
    until_close: bool = False


def _take_line(buf: bytes, pos: int) -> tuple[bytes, int]:
    end = buf.find(b"\r\n", pos)
    assert end >= 0, f"incomplete line in output: {buf[pos:]!r}"
    return buf[pos:end], end + 2


def parse_responses(output: bytes, methods: list[str]) -> list[Response]:
    """Parse every response in ``output``; fail on anything malformed or cut short."""
    responses = []
    pos = 0
    app_responses = 0
    while pos < len(output):
        line, pos = _take_line(output, pos)
        match = _STATUS_LINE.fullmatch(line)
        assert match, f"bad status line {line!r}"
        status = int(match.group(1))
        headers = []
        while True:
            line, pos = _take_line(output, pos)
            if not line:
                break
            header = _HEADER_LINE.fullmatch(line)
            assert header, f"bad header line {line!r}"
            headers.append((header.group(1).lower(), header.group(2)))
        names = [name for name, _ in headers]
        if 100 <= status < 200:
            assert status == 100 and not headers, f"unexpected interim response {status}"
            responses.append(Response(status, headers, b""))
            continue
        is_head = False
        if status not in PROTOCOL_ERRORS:
            assert app_responses < len(methods), "more responses than requests the app saw"
            is_head = methods[app_responses] == "HEAD"
            app_responses += 1
        assert names.count(b"content-length") <= 1, "duplicate content-length"
        assert names.count(b"date") <= 1 and names.count(b"server") <= 1, "duplicate default"
        lengths = [value for name, value in headers if name == b"content-length"]
        chunked = (b"transfer-encoding", b"chunked") in headers
        assert not (lengths and chunked), "both content-length and chunked"
        body = b""
        if is_head or status in (204, 304):
            pass
        elif lengths:
            size = int(lengths[0])
            body = output[pos : pos + size]
            assert len(body) == size, f"body cut short: {len(body)} of {size} bytes"
            pos += size
        elif chunked:
            parts = []
            while True:
                line, pos = _take_line(output, pos)
                assert re.fullmatch(rb"[0-9a-fA-F]+", line), f"bad chunk size {line!r}"
                size = int(line, 16)
                if size == 0:
                    line, pos = _take_line(output, pos)
                    assert line == b"", "trailers or junk after the last chunk"
                    break
                parts.append(output[pos : pos + size])
                assert len(parts[-1]) == size, "chunk cut short"
                pos += size
                line, pos = _take_line(output, pos)
                assert line == b"", "chunk not followed by CRLF"
            body = b"".join(parts)
        else:
            # Framed by closing the connection (an HTTP/1.0 client gets no chunked body):
            # the rest is the body, and check() makes sure the connection did close.
            assert status not in PROTOCOL_ERRORS, "error response without Content-Length"
            body = output[pos:]
            pos = len(output)
            responses.append(Response(status, headers, body, until_close=True))
            break
        responses.append(Response(status, headers, body))
    return responses


def check(backend: str, data: bytes, cuts: list[int]) -> None:
    """Run one exchange and assert the invariant from the module docstring."""
    check_outcome(*run_exchange(backend, data, cuts))


def check_outcome(output: bytes, closed: bool, log: AppLog) -> None:
    """Assert the invariant on what one exchange produced."""
    responses = parse_responses(output, log.methods)
    final = [r for r in responses if r.status != 100]
    for index, response in enumerate(final):
        if response.status in PROTOCOL_ERRORS:
            assert index == len(final) - 1, f"response after a {response.status}"
            assert closed, f"connection left open after a {response.status}"
            assert (b"connection", b"close") in response.headers
        else:
            assert response.status == 200, f"unexpected status {response.status}"
        if response.until_close:
            assert closed, "body framed by close, but the connection stayed open"
    app_answers = sum(1 for r in final if r.status == 200)
    assert app_answers == log.completed, (
        f"the app completed {log.completed} responses, {app_answers} reached the client"
    )


_DATE = re.compile(rb"\r\ndate: [^\r\n]*")


def check_same_answers(data: bytes, cuts: list[int]) -> None:
    """Any input gets the same verdict from both backends.

    The same responses byte for byte (Date aside), hence the same statuses in the same
    order, and the same closed flag; each backend also keeps the invariant.
    """
    outcomes = []
    for backend in BACKENDS:
        output, closed, log = run_exchange(backend, data, cuts)
        check_outcome(output, closed, log)
        statuses = [r.status for r in parse_responses(output, log.methods)]
        outcomes.append((statuses, closed, _DATE.sub(b"\r\ndate: -", output)))
    assert outcomes[0] == outcomes[1], "backends differ:\n" + "\n".join(
        f"  {backend}: statuses {statuses} closed={closed} output={output[:300]!r}"
        for backend, (statuses, closed, output) in zip(BACKENDS, outcomes, strict=True)
    )


# ---------------------------------------------------------------------------------------
# Inputs

_METHODS = st.sampled_from(["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"])
_TOKEN = st.text(alphabet="!#$%&'*+-.^_`|~abcdefXYZ0123456789", min_size=1, max_size=12)
_TARGETS = st.one_of(
    st.sampled_from(["/", "/a", "/ab", "/path?x=1&y=2", "/%2F%00%ff", "*", "http://h/x", "//"]),
    st.text(alphabet=st.characters(codec="latin-1"), max_size=40),
)
_VERSIONS = st.sampled_from(["HTTP/1.1", "HTTP/1.1", "HTTP/1.0", "HTTP/2.0", "HTTP/1.", "http/1.1"])
_HEADER_VALUES = st.one_of(
    st.sampled_from(
        ["", "0", "5", "-1", "1 , 1", "chunked", "gzip", "close", "keep-alive", "100-continue"]
    ),
    # values where lenient and strict parsers part ways
    st.sampled_from(
        [
            "3, 3",
            " 3 ",
            "+3",
            "03",
            "18446744073709551616",
            "chunked, chunked",
            "gzip, chunked",
            "chunked, gzip",
            "chunked\t",
            "Chunked ",
            ",chunked",
            "a\x01b",
            "a\x7fb",
            "a\r\n b",
            "100-continue ",
        ]
    ),
    st.text(alphabet=st.characters(codec="latin-1"), max_size=30),
)
_HEADER_NAMES = st.one_of(
    st.sampled_from(
        ["host", "content-length", "transfer-encoding", "connection", "expect", "x-y", ""]
    ),
    _TOKEN,
)


# How a chunk size line may look: mostly right, sometimes in ways only lenient parsers take.
_CHUNK_SIZE_LINES = st.sampled_from(
    [b"%x\r\n"] * 6
    + [b"%X\r\n", b"00%x\r\n", b"%x;a\r\n", b"%x;a=b;c\r\n", b'%x;a="b \\" c"\r\n']
    + [b"%x \r\n", b"%x\t\r\n", b"%x\n", b"%x;\r\n", b"%x; a\r\n", b"0x%x\r\n", b"%x\r\r\n"]
)


@st.composite
def _chunked_body(draw: st.DrawFn) -> bytes:
    parts = draw(st.lists(st.binary(min_size=1, max_size=20), max_size=4))
    out = b"".join(draw(_CHUNK_SIZE_LINES) % len(p) + p + b"\r\n" for p in parts)
    end = [b"0\r\n\r\n", b"0\r\nx-t: 1\r\n\r\n", b"", b"zz\r\n", b"0\n\n", b"0\r\n\n"]
    return out + draw(st.sampled_from(end))


_SAFE_PATH = st.text(alphabet="abcxyz0123456789-._~%/", max_size=20).map(lambda p: "/" + p)
_SAFE_VALUE = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=20)


@st.composite
def _valid_request(draw: st.DrawFn) -> bytes:
    """A request both backends should accept (bar the odd percent-escape)."""
    method = draw(_METHODS)
    target = draw(_SAFE_PATH) + draw(st.sampled_from(["", "?", "?a=1&b=%20"]))
    version = draw(st.sampled_from(["HTTP/1.1", "HTTP/1.1", "HTTP/1.0"]))
    headers = [("Host", "example.com")]
    headers += draw(st.lists(st.tuples(_TOKEN, _SAFE_VALUE.map(str.strip)), max_size=4))
    if draw(st.booleans()):
        headers.append(("Connection", draw(st.sampled_from(["close", "keep-alive"]))))
    if version == "HTTP/1.1" and draw(st.integers(0, 5)) == 0:
        headers.append(("Expect", "100-continue"))
    framing = draw(st.sampled_from(["none", "length", "chunked"]))
    body = b""
    if framing == "length":
        body = draw(st.binary(max_size=100))
        headers.append(("Content-Length", str(len(body))))
    elif framing == "chunked" and version == "HTTP/1.1":
        parts = draw(st.lists(st.binary(min_size=1, max_size=30), max_size=4))
        body = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"
        headers.append(("Transfer-Encoding", "chunked"))
    head = f"{method} {target} {version}\r\n"
    head += "".join(f"{name}: {value}\r\n" for name, value in headers)
    return head.encode("latin-1") + b"\r\n" + body


@st.composite
def _wild_request(draw: st.DrawFn) -> bytes:
    """A request built from odd parts: methods, targets, versions, headers and framing."""
    method = draw(st.one_of(_METHODS, _TOKEN))
    target = draw(_TARGETS)
    version = draw(_VERSIONS)
    headers = [("host", "example.com")] if draw(st.booleans()) else []
    headers += draw(st.lists(st.tuples(_HEADER_NAMES, _HEADER_VALUES), max_size=5))
    framing = draw(st.sampled_from(["none", "length", "chunked"]))
    body = b""
    if framing == "length":
        body = draw(st.binary(max_size=40))
        headers.append(("content-length", str(len(body))))
    elif framing == "chunked":
        body = draw(_chunked_body())
        headers.append(("transfer-encoding", "chunked"))
    head = f"{method} {target} {version}\r\n"
    head += "".join(f"{name}: {value}\r\n" for name, value in headers)
    return head.encode("latin-1") + b"\r\n" + body


# Bytes that are structure somewhere in a request (line ends, separators, framing).
_INSERTS = [
    b"\r\n",
    b"\n",
    b"\r",
    b"\x00",
    b" ",
    b":",
    b"\t",
    b"\x01",
    b"\x7f",
    b",",
    b";",
    b"\r\n ",
    b"\r\n\r\n",
    b"Content-Length: 1\r\n",
    b"Transfer-Encoding: chunked\r\n",
]


@st.composite
def _mutated(draw: st.DrawFn) -> bytes:
    """A valid request with a few bytes flipped, removed, inserted or repeated."""
    data = bytearray(draw(_valid_request()))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "delete", "insert", "repeat", "truncate", "case"]))
        at = draw(st.integers(0, len(data)))
        if kind == "flip" and at < len(data):
            data[at] = draw(st.integers(0, 255))
        elif kind == "delete":
            del data[at : at + draw(st.integers(1, 8))]
        elif kind == "insert":
            data[at:at] = draw(st.sampled_from(_INSERTS))
        elif kind == "case":
            end = at + draw(st.integers(1, 8))
            data[at:end] = data[at:end].swapcase()
        elif kind == "repeat":
            data[at:at] = data[at : at + draw(st.integers(1, 16))] * draw(st.integers(1, 50))
        else:
            del data[at:]
    return bytes(data)


# An input is 1-3 requests back to back (pipelined): mostly valid ones, so that the
# interesting states (pipelining, bodies, keep-alive) are reached, then odd or broken ones.
_ONE_REQUEST = st.one_of(
    _valid_request(), _valid_request(), _wild_request(), _mutated(), st.binary(max_size=60)
)
http_input = st.lists(_ONE_REQUEST, min_size=1, max_size=3).map(b"".join)
valid_input = st.lists(_valid_request(), min_size=1, max_size=3).map(b"".join)


@st.composite
def http_case(
    draw: st.DrawFn, inputs: st.SearchStrategy[bytes] = http_input
) -> tuple[bytes, list[int]]:
    """An input and where to cut it: whole, byte by byte, or at random points."""
    data = draw(inputs)
    mode = draw(st.sampled_from(["whole", "bytes", "random"]))
    if mode == "whole" or not data:
        cuts: list[int] = []
    elif mode == "bytes":
        cuts = list(range(1, len(data)))
    else:
        cuts = draw(st.lists(st.integers(1, len(data)), max_size=6))
    return data, cuts


def _run(name: str, test: Any, cases: Any, args: argparse.Namespace) -> None:
    print(f"{name}: {args.examples} examples", file=sys.stderr)
    fuzz = settings(
        max_examples=args.examples,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        database=None,
    )(given(case=cases)(lambda case: test(*case)))
    if args.seed is not None:
        from hypothesis import seed

        fuzz = seed(args.seed)(fuzz)
    fuzz()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=10_000, help="examples per run")
    parser.add_argument("--http", choices=BACKENDS, action="append", help="default: both")
    parser.add_argument("--seed", type=int, help="make the run reproducible")
    args = parser.parse_args()
    for backend in args.http or BACKENDS:
        _run(f"--http {backend}", partial(check, backend), http_case(), args)
    _run("both backends alike, valid requests", check_same_answers, http_case(valid_input), args)
    _run("both backends alike, any input", check_same_answers, http_case(), args)
    print("no failure found", file=sys.stderr)


if __name__ == "__main__":
    main()
