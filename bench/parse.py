"""What parsing a request head costs, per backend, in memory (no sockets, no app).

    .venv/bin/python bench/parse.py

Rows, each in microseconds per request (best of 5 repeats of ``--number`` requests):

* ``h11 alone`` -- ``h11.Connection`` as the parser of record: what ``--http h11`` would
  cost if h11 parsed every request by itself (it is then more lenient than llhttp, see
  ``tricorn/protocols/http1/h11_impl.py``);
* ``--http h11`` -- Tricorn's h11 backend: llhttp's rules checked first (one regular
  expression for a head in the common shape, ``HeadScanner`` for the rest), then h11
  parses the checked head, and the body is framed by the backend;
* ``--http httptools`` -- llhttp through httptools.

The connection's own work after parsing (limits, scope, the app) is left out: both
backends share it (``HTTP1Connection.request_head`` is replaced by a no-op here).
"""

from __future__ import annotations

import argparse
import functools
import sys
import timeit
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import h11  # noqa: E402

from tricorn.config import Config  # noqa: E402
from tricorn.protocols.http1.h11_impl import H11Protocol  # noqa: E402
from tricorn.protocols.http1.httptools_impl import HTTPToolsProtocol  # noqa: E402
from tricorn.protocols.state import ServerState  # noqa: E402

BROWSER_HEADERS = (
    b"Host: example.com\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64) Firefox/130.0\r\n"
    b"Accept: text/html,application/xhtml+xml\r\nAccept-Language: en-GB,en;q=0.5\r\n"
    b"Accept-Encoding: gzip, deflate, br\r\nConnection: keep-alive\r\n"
    b"Cookie: session=0123456789abcdef\r\nUpgrade-Insecure-Requests: 1\r\n"
    b"Sec-Fetch-Dest: document\r\nSec-Fetch-Mode: navigate\r\n"
)
CASES: dict[str, list[bytes]] = {
    "GET, 1 header": [b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n"],
    "GET, 10 headers": [b"GET /index.html?q=1 HTTP/1.1\r\n" + BROWSER_HEADERS + b"\r\n"],
    "GET, 10 headers, 2 reads": [
        b"GET /index.html?q=1 HTTP/1.1\r\n" + BROWSER_HEADERS[:200],
        BROWSER_HEADERS[200:] + b"\r\n",
    ],
    "POST, 1 KiB chunked": [
        b"POST /upload HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\n\r\n"
        + b"400\r\n"
        + b"x" * 1024
        + b"\r\n0\r\n\r\n"
    ],
}


def probe(backend: type[Any]) -> Any:
    """A backend instance whose connection-level work after parsing does nothing."""

    class Probe(backend):  # type: ignore[misc, valid-type]
        def request_head(self, *args: Any) -> None:
            self.in_head = False

        def request_body(self, data: bytes) -> None:
            pass

        def request_complete(self) -> None:
            self.in_head = True

    config = Config("bench.app:app", lifespan="off", log_config=None)
    config.load()
    return Probe(config=config, server_state=ServerState(), app_state={})


def feed(backend: Any, chunks: list[bytes]) -> None:
    for chunk in chunks:
        backend.parse(chunk)


def h11_alone(chunks: list[bytes]) -> None:
    conn = h11.Connection(h11.SERVER)
    for chunk in chunks:
        conn.receive_data(chunk)
    while conn.next_event() not in (h11.NEED_DATA, h11.PAUSED):
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--number", type=int, default=20000, help="requests per repeat")
    args = parser.parse_args()
    h11_backend, httptools_backend = probe(H11Protocol), probe(HTTPToolsProtocol)
    print("| request | h11 alone | --http h11 | --http httptools |")
    print("|---|---:|---:|---:|")
    for name, chunks in CASES.items():
        runs = (
            functools.partial(h11_alone, chunks),
            functools.partial(feed, h11_backend, chunks),
            functools.partial(feed, httptools_backend, chunks),
        )
        times = []
        for run in runs:
            best = min(timeit.repeat(run, number=args.number, repeat=5))
            times.append(best / args.number * 1e6)
        print(f"| {name} | " + " | ".join(f"{t:.1f} µs" for t in times) + " |")


if __name__ == "__main__":
    main()
