"""Tricorn against uvicorn on the same app, same core, same load, in one run.

    .venv/bin/python bench/run.py                      # both backends, 10 s per run
    .venv/bin/python bench/run.py --duration 5 --connections 128 --http h11
    git worktree add /tmp/before HEAD~3 && .venv/bin/python bench/run.py --baseline /tmp/before

Each server runs as one process pinned to core 0 (``taskset``); ``wrk`` drives it from
core 1, over 127.0.0.1 only. Every measured run follows a short warm-up on the same server.
The table reports requests/s, p99 latency and the ratio Tricorn/uvicorn (above 1 means
Tricorn serves more requests per second). The servers take turns round by round and each
ratio is the median of the per-round ratios, so a change in the machine's load moves
both sides of a ratio together.

``--baseline DIR`` adds a third server: Tricorn from another checkout (an earlier commit,
say), run by the same interpreter from that directory, so a change is measured before and
after in one run (ratio after/before, and each against uvicorn).

uvicorn is installed for benchmarking only, into its own venv (``--uvicorn-venv``, created
on first use); it is never a Tricorn dependency. ``wrk`` is installed with apt-get when
missing and running as root.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

ROOT = Path(__file__).resolve().parent.parent
APP = "bench.app:app"
EXPECTED_BODY = b"Hello, world!"
DEFAULT_UVICORN_VENV = Path.home() / ".cache" / "tricorn-bench" / "uvicorn-venv"
SERVER_CORE = "0"
CLIENT_CORE = "1"


@dataclass
class Result:
    requests_per_s: float
    p99_ms: float
    errors: str  # wrk's error lines, empty when the run was clean


def fail(message: str) -> NoReturn:
    print(f"bench: {message}", file=sys.stderr)
    raise SystemExit(1)


def ensure_wrk() -> str:
    wrk = shutil.which("wrk")
    if wrk:
        return wrk
    if os.geteuid() != 0:
        fail("wrk is not installed (apt-get install wrk)")
    print("bench: installing wrk with apt-get", file=sys.stderr)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-q"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], check=True, env=env)
    return shutil.which("wrk") or fail("wrk still missing after apt-get install")


def ensure_uvicorn(venv: Path) -> Path:
    python = venv / "bin" / "python"
    probe = [str(python), "-c", "import uvicorn, httptools, uvloop"]
    if python.exists() and subprocess.run(probe, capture_output=True).returncode == 0:
        return python
    print(f"bench: installing uvicorn[standard] into {venv}", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, "uvicorn[standard]"], check=True)
    return python


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_serving(proc: subprocess.Popen[bytes], port: int, timeout: float) -> None:
    """Wait until the port accepts connections and answers the expected body."""
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            fail(f"server exited with code {proc.returncode} before serving")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as response:
                body = response.read()
            if body != EXPECTED_BODY:
                fail(f"server answered {body!r}, expected {EXPECTED_BODY!r}")
            return
        except OSError:
            if time.monotonic() > deadline:
                fail(f"server did not accept on port {port} within {timeout:.0f} s")
            time.sleep(0.05)


@contextmanager
def serving(command: list[str], port: int, cwd: Path = ROOT) -> Iterator[None]:
    """Run ``command`` from ``cwd`` (``python -m`` imports tricorn from there first)."""
    proc = subprocess.Popen(
        ["taskset", "-c", SERVER_CORE, *command],
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        wait_until_serving(proc, port, timeout=30)
        yield
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        assert proc.stderr is not None
        stderr = proc.stderr.read().decode(errors="replace").strip()
        proc.stderr.close()
        if stderr:
            # Servers run at log level warning: anything here deserves a look.
            print(f"bench: server stderr:\n{stderr}", file=sys.stderr)


UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def server_versions(tricorn_python: Path, uvicorn_python: Path) -> list[str]:
    """The tricorn and uvicorn versions each measured interpreter imports."""
    return [
        subprocess.run(
            [str(python), "-c", f"import {name}; print({name}.__version__)"],
            capture_output=True,
            text=True,
        ).stdout.strip()
        for name, python in (("tricorn", tricorn_python), ("uvicorn", uvicorn_python))
    ]


def run_wrk(wrk: str, port: int, args: argparse.Namespace, duration: float) -> Result:
    command = [
        "taskset",
        "-c",
        CLIENT_CORE,
        wrk,
        f"-t{args.threads}",
        f"-c{args.connections}",
        f"-d{duration:g}s",  # wrk refuses "8.0s"
        "--latency",
        f"http://127.0.0.1:{port}/",
    ]
    out = subprocess.run(
        command, capture_output=True, text=True, check=True, timeout=duration + 60
    ).stdout
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    p99 = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s|m)\s*$", out, re.MULTILINE)
    if not rps or not p99:
        fail(f"could not read wrk's output:\n{out}")
    errors = [
        line.strip()
        for line in out.splitlines()
        if line.strip().startswith(("Socket errors", "Non-2xx"))
    ]
    return Result(
        float(rps.group(1)), float(p99.group(1)) * UNITS_MS[p99.group(2)], "; ".join(errors)
    )


def server_command(name: str, python: Path, port: int, *protocol: str, app: str = APP) -> list[str]:
    """Start ``name`` (tricorn or uvicorn) on ``app`` with the same settings for both;
    ``protocol`` picks the backend (e.g. ``--http h11`` or ``--ws wsproto``)."""
    common = [
        app,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        *protocol,
        "--loop",
        "auto",
        "--log-level",
        "warning",
        "--no-access-log",
        "--lifespan",
        "off",
    ]
    if name == "uvicorn":
        return [str(python), "-m", "uvicorn", "--app-dir", str(ROOT), *common]
    return [str(python), "-m", "tricorn", *common]


@dataclass
class Server:
    """One server under test: ``name`` (tricorn or uvicorn), its interpreter and directory."""

    label: str
    name: str
    python: Path
    cwd: Path = ROOT


def measure_once(server: Server, http: str, wrk: str, args: argparse.Namespace) -> Result:
    port = free_port()
    command = server_command(server.name, server.python, port, "--http", http)
    with serving(command, port, server.cwd):
        run_wrk(wrk, port, args, args.warmup)
        return run_wrk(wrk, port, args, args.duration)


def measure(
    servers: list[Server], http: str, wrk: str, args: argparse.Namespace
) -> tuple[list[Result], list[list[float]]]:
    """Each server's median result, and each round's requests/s of every server.

    The servers take turns round by round (the ratios are taken per round)."""
    rounds: list[list[Result]] = []
    for _ in range(args.rounds):
        rounds.append([measure_once(server, http, wrk, args) for server in servers])
    medians = [
        Result(
            statistics.median(r[i].requests_per_s for r in rounds),
            statistics.median(r[i].p99_ms for r in rounds),
            "; ".join(r[i].errors for r in rounds if r[i].errors),
        )
        for i in range(len(servers))
    ]
    return medians, [[result.requests_per_s for result in r] for r in rounds]


def median_ratio(per_round: list[list[float]], a: int, b: int) -> float:
    return statistics.median(r[a] / r[b] for r in per_round)


def add_baseline_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--baseline",
        type=Path,
        metavar="DIR",
        help="also measure Tricorn from this checkout (e.g. a git worktree of an older commit)",
    )


def servers_under_test(args: argparse.Namespace, uvicorn_python: Path) -> list[Server]:
    """Tricorn, Tricorn from ``--baseline`` if given, and uvicorn (always last)."""
    tricorn_python = Path(sys.executable)
    servers = [Server("Tricorn", "tricorn", tricorn_python)]
    if args.baseline is not None:
        servers.append(Server("before", "tricorn", tricorn_python, args.baseline.resolve()))
    servers.append(Server("uvicorn", "uvicorn", uvicorn_python))
    return servers


def ratio_columns(servers: list[Server]) -> list[str]:
    """Each Tricorn over uvicorn, and after over before when there is a baseline."""
    columns = [f"{server.label}/uvicorn" for server in servers[:-1]]
    if len(servers) == 3:
        columns.append("Tricorn/before")
    return columns


def ratio_cells(per_round: list[list[float]], servers: list[Server]) -> list[str]:
    """The cells of ``ratio_columns``: medians of the per-round ratios."""
    uvicorn = len(servers) - 1
    cells = [f"{median_ratio(per_round, i, uvicorn):.2f}" for i in range(uvicorn)]
    if len(servers) == 3:
        cells.append(f"{median_ratio(per_round, 0, 1):.2f}")
    return cells


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=10, help="seconds per measured run")
    parser.add_argument("--warmup", type=float, default=2, help="seconds of warm-up per run")
    parser.add_argument("--connections", type=int, default=64, help="wrk connections")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads")
    parser.add_argument("--rounds", type=int, default=1, help="runs per server; median kept")
    add_baseline_argument(parser)
    parser.add_argument(
        "--http",
        action="append",
        choices=["httptools", "h11"],
        help="backend to measure (repeatable; default both)",
    )
    parser.add_argument(
        "--uvicorn-venv",
        type=Path,
        default=DEFAULT_UVICORN_VENV,
        help=f"venv holding uvicorn[standard], created if missing (default {DEFAULT_UVICORN_VENV})",
    )
    args = parser.parse_args()
    if args.connections < args.threads:
        fail("--connections must be at least --threads")
    if not shutil.which("taskset"):
        fail("taskset is missing (apt-get install util-linux)")
    if (os.cpu_count() or 1) < 2:
        fail("needs two cores: one for the server, one for wrk")

    wrk = ensure_wrk()
    uvicorn_python = ensure_uvicorn(args.uvicorn_venv)
    servers = servers_under_test(args, uvicorn_python)
    backends = args.http or ["httptools", "h11"]
    rows = [(http, *measure(servers, http, wrk, args)) for http in backends]

    versions = server_versions(servers[0].python, uvicorn_python)
    print(
        f"\ntricorn {versions[0]} vs uvicorn {versions[1]}; "
        f"wrk -t{args.threads} -c{args.connections} -d{args.duration:g}s, "
        f"server on core {SERVER_CORE}, wrk on core {CLIENT_CORE}, {args.rounds} round(s)"
        + (f"; before: {args.baseline}" if args.baseline is not None else "")
        + "\n"
    )
    labels = [server.label for server in servers]
    columns = [f"{label} req/s" for label in labels] + [f"{label} p99" for label in labels]
    columns += ratio_columns(servers)
    print("| --http | " + " | ".join(columns) + " |")
    print("|---|" + "---:|" * len(columns))
    for http, results, per_round in rows:
        cells = [f"{r.requests_per_s:,.0f}" for r in results]
        cells += [f"{r.p99_ms:.2f} ms" for r in results]
        cells += ratio_cells(per_round, servers)
        print(f"| {http} | " + " | ".join(cells) + " |")
    for http, results, _ in rows:
        for server, result in zip(servers, results, strict=True):
            if result.errors:
                print(f"warning: {server.label} --http {http}: {result.errors}", file=sys.stderr)


if __name__ == "__main__":
    main()
