"""WebSocket echo: Tricorn against uvicorn, same app, same core, same load, in one run.

    .venv/bin/python bench/ws.py                                 # every --ws backend
    .venv/bin/python bench/ws.py --clients 100 --messages 2000 --ws websockets --rounds 5
    .venv/bin/python bench/ws.py --baseline /tmp/before          # also an older checkout

The app (``bench.ws:app``, below) accepts every WebSocket and echoes each message. ``N``
clients each send ``M`` small text messages one at a time (send, wait for the echo, send
the next), all clients at once, over 127.0.0.1; the result is echoed messages per second
(N x M over the time from the first send to the last echo) and the ratio Tricorn/uvicorn
(above 1 means Tricorn echoes more messages per second). ``--ws websockets-sansio`` is
the same backend as ``websockets`` in Tricorn (ours is sans-I/O already); in uvicorn 0.54
``websockets`` is the legacy asyncio implementation and ``websockets-sansio`` the new one.

As ``run.py``: each server is one process pinned to core 0 (``taskset``), the load comes
from core 1, uvicorn comes from its own venv (``run.py``'s helpers; ``wsproto`` is added to
that venv when missing). The client is this script in a child process: a bare asyncio
protocol sending one prebuilt masked frame per message and counting echoed bytes, so it
costs little next to the servers. Every run is bounded: M messages per client, and a
client that has not finished within ``--timeout`` seconds fails the run. ``--baseline
DIR`` adds Tricorn from another checkout, as in ``run.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, cast

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: bench/ is on the path, the repo is not
    sys.path.insert(0, str(ROOT))

from bench import run  # noqa: E402  (stdlib only: cheap in the servers that import the app)

APP = "bench.ws:app"
HELLO = b"Hello, world!"
PAYLOAD = b"bench message 16"  # 16 bytes, a small chat-like message
MASK = b"\x37\xfa\x21\x3d"  # fixed: the mask protects proxies, not a benchmark
HANDSHAKE = (
    b"GET /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


# -- the app (imported by both servers) --------------------------------------------------------


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Echo every WebSocket message; HTTP gets ``Hello, world!`` (the readiness probe)."""
    if scope["type"] == "websocket":
        await receive()
        await send({"type": "websocket.accept"})
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            if message.get("text") is not None:
                await send({"type": "websocket.send", "text": message["text"]})
            else:
                await send({"type": "websocket.send", "bytes": message["bytes"]})
    elif scope["type"] == "http":
        headers = [(b"content-type", b"text/plain"), (b"content-length", b"13")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": HELLO})


# -- the client (``--client PORT``, run pinned to its own core) ---------------------------------


def client_frame(opcode: int, payload: bytes) -> bytes:
    """A masked client frame with a payload under 126 bytes."""
    masked = bytes(b ^ MASK[i % 4] for i, b in enumerate(payload))
    return bytes([0x80 | opcode, 0x80 | len(payload)]) + MASK + masked


class EchoClient(asyncio.Protocol):
    """One WebSocket: handshake, then ``messages`` round trips of ``PAYLOAD``."""

    def __init__(self, messages: int) -> None:
        self.messages = messages
        self.frame = client_frame(0x1, PAYLOAD)
        self.echo = bytes([0x81, len(PAYLOAD)]) + PAYLOAD  # what the server must send back
        self.transport: asyncio.Transport | None = None
        self.head = b""
        self.opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.sent = 0
        self.received = 0  # bytes of echoed frames
        self.checked = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses: a cast, not a check.
        self.transport = cast(asyncio.Transport, transport)
        self.transport.write(HANDSHAKE)

    def data_received(self, data: bytes) -> None:
        if not self.opened.done():
            self.head += data
            if b"\r\n\r\n" not in self.head:
                return
            head, _, rest = self.head.partition(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 101"):
                self.opened.set_exception(RuntimeError(f"handshake refused: {head[:80]!r}"))
                return
            self.opened.set_result(None)
            data = rest
            if not data:
                return
        if not self.checked:  # the first echo is checked byte for byte, then only counted
            if data[: len(self.echo)] != self.echo[: len(data)]:
                self.done.set_exception(RuntimeError(f"bad echo {data[:40]!r}"))
                return
            self.checked = True
        self.received += len(data)
        if self.received >= self.sent * len(self.echo):
            self.next()

    def next(self) -> None:
        assert self.transport is not None
        if self.sent < self.messages:
            self.sent += 1
            self.transport.write(self.frame)
        elif not self.done.done():
            self.done.set_result(None)

    def close(self) -> None:
        assert self.transport is not None
        self.transport.write(client_frame(0x8, (1000).to_bytes(2, "big")))

    def connection_lost(self, exc: Exception | None) -> None:
        for future in (self.opened, self.done):
            if not future.done():
                future.set_exception(ConnectionError(f"connection lost: {exc}"))
        if not self.lost.done():
            self.lost.set_result(None)


async def run_clients(port: int, clients: int, messages: int, timeout: float) -> float:
    """Open every connection, then time all round trips; the elapsed seconds."""
    loop = asyncio.get_running_loop()
    protocols = []
    for _ in range(clients):
        _, protocol = await loop.create_connection(lambda: EchoClient(messages), "127.0.0.1", port)
        protocols.append(protocol)
    await asyncio.wait_for(asyncio.gather(*(p.opened for p in protocols)), timeout)
    start = time.perf_counter()
    for protocol in protocols:
        protocol.next()
    await asyncio.wait_for(asyncio.gather(*(p.done for p in protocols)), timeout)
    elapsed = time.perf_counter() - start
    for protocol in protocols:
        protocol.close()
    await asyncio.wait_for(asyncio.gather(*(p.lost for p in protocols)), timeout)
    return elapsed


def client_main(args: argparse.Namespace) -> None:
    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:
        runner = asyncio.run
    elapsed = runner(run_clients(args.client, args.clients, args.messages, args.timeout))
    print(json.dumps({"elapsed": elapsed}))


# -- the driver -------------------------------------------------------------------------------


def ensure_wsproto(python: Path) -> None:
    """Add wsproto to the uvicorn venv (uvicorn[standard] brings websockets only)."""
    probe = [str(python), "-c", "import wsproto"]
    if subprocess.run(probe, capture_output=True).returncode == 0:
        return
    print("bench: installing wsproto into the uvicorn venv", file=sys.stderr)
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, "wsproto"], check=True)


def run_load(port: int, clients: int, messages: int, args: argparse.Namespace) -> float:
    """Messages echoed per second, from a client process pinned to its own core."""
    command = [
        "taskset",
        "-c",
        run.CLIENT_CORE,
        sys.executable,
        str(Path(__file__).resolve()),
        "--client",
        str(port),
        "--clients",
        str(clients),
        "--messages",
        str(messages),
        "--timeout",
        str(args.timeout),
    ]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=3 * args.timeout + 30, check=False
    )
    if done.returncode != 0:
        run.fail(f"client failed:\n{done.stderr.strip()[-2000:]}")
    elapsed = float(json.loads(done.stdout)["elapsed"])
    return clients * messages / elapsed


def measure_once(server: run.Server, ws: str, args: argparse.Namespace) -> float:
    port = run.free_port()
    command = run.server_command(
        server.name, server.python, port, "--ws", ws, "--http", "auto", app=APP
    )
    with run.serving(command, port, server.cwd):
        run_load(port, args.clients, max(1, args.messages // 10), args)  # warm-up
        return run_load(port, args.clients, args.messages, args)


def measure(
    servers: list[run.Server], ws: str, args: argparse.Namespace
) -> tuple[list[float], list[list[float]]]:
    """Median msg/s of each server, and each round's msg/s of every server.

    The servers alternate round by round, so a change in the machine's load between
    rounds moves both sides of a ratio, not one.
    """
    rounds = [[measure_once(server, ws, args) for server in servers] for _ in range(args.rounds)]
    medians = [statistics.median(r[i] for r in rounds) for i in range(len(servers))]
    return medians, rounds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=50, help="concurrent WebSockets (N)")
    parser.add_argument("--messages", type=int, default=2000, help="messages per client (M)")
    parser.add_argument("--rounds", type=int, default=1, help="runs per server; median kept")
    parser.add_argument("--timeout", type=float, default=60, help="bound on one run, seconds")
    run.add_baseline_argument(parser)
    parser.add_argument(
        "--ws",
        action="append",
        choices=["websockets", "websockets-sansio", "wsproto"],
        help="backend to measure (repeatable; default all three)",
    )
    parser.add_argument(
        "--uvicorn-venv",
        type=Path,
        default=run.DEFAULT_UVICORN_VENV,
        help=f"venv holding uvicorn[standard] (default {run.DEFAULT_UVICORN_VENV})",
    )
    parser.add_argument("--client", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.clients < 1 or args.messages < 1:
        parser.error("--clients and --messages must be at least 1")
    if args.client is not None:
        client_main(args)
        return
    if not shutil.which("taskset"):
        run.fail("taskset is missing (apt-get install util-linux)")
    if (os.cpu_count() or 1) < 2:
        run.fail("needs two cores: one for the server, one for the clients")

    uvicorn_python = run.ensure_uvicorn(args.uvicorn_venv)
    backends = args.ws or ["websockets", "websockets-sansio", "wsproto"]
    if "wsproto" in backends:
        ensure_wsproto(uvicorn_python)
    servers = run.servers_under_test(args, uvicorn_python)
    rows = [(ws, *measure(servers, ws, args)) for ws in backends]

    versions = run.server_versions(servers[0].python, uvicorn_python)
    print(
        f"\ntricorn {versions[0]} vs uvicorn {versions[1]}; {args.clients} clients x "
        f"{args.messages} messages of {len(PAYLOAD)} bytes, echoed one at a time; server on "
        f"core {run.SERVER_CORE}, clients on core {run.CLIENT_CORE}, {args.rounds} round(s)"
        + (f"; before: {args.baseline}" if args.baseline is not None else "")
        + "\n"
    )
    columns = [f"{server.label} msg/s" for server in servers] + run.ratio_columns(servers)
    print("| --ws | " + " | ".join(columns) + " |")
    print("|---|" + "---:|" * len(columns))
    for ws, medians, per_round in rows:
        cells = [f"{value:,.0f}" for value in medians] + run.ratio_cells(per_round, servers)
        print(f"| {ws} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
