"""Run Autobahn|Testsuite's fuzzing client against Tricorn's echo app, once per backend.

    .venv/bin/python tests/conformance/run_autobahn.py                 # both backends, all cases
    .venv/bin/python tests/conformance/run_autobahn.py --ws wsproto    # one backend
    .venv/bin/python tests/conformance/run_autobahn.py --cases quick   # the CI selection

For each ``--ws`` backend this starts ``python -m tricorn tests.conformance.echo:app`` on a
free port of 127.0.0.1, writes a fuzzingclient spec, runs ``wstest -m fuzzingclient`` and
reads its JSON report. A case passes when its behaviour is OK, NON-STRICT or INFORMATIONAL
and its closing behaviour is OK or INFORMATIONAL; anything else (FAILED, UNIMPLEMENTED,
WRONG CODE, UNCLEAN, a case missing from the report) is listed and the exit status is 1.
A traceback in the server's log fails the run too. Exit status 2: Autobahn is not
installed (``scripts/install-autobahn.sh``) or the server did not start.

wstest is Python 2 only, so it lives in its own virtualenv: ``--wstest``, else
``$TRICORN_AUTOBAHN``, else ``/tmp/autobahn-venv/bin/wstest``.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
DEFAULT_WSTEST = "/tmp/autobahn-venv/bin/wstest"
APP = "tests.conformance.echo:app"

# Each WebSocket backend runs behind a different HTTP parser, so both parsers' upgrade
# paths are exercised as well.
HTTP_FOR_WS = {"websockets": "httptools", "wsproto": "h11"}

PASSING_BEHAVIOR = {"OK", "NON-STRICT", "INFORMATIONAL"}
PASSING_CLOSE = {"OK", "INFORMATIONAL"}

# Every category in about 30 s instead of about 8 minutes per backend: all of 1-10 (framing,
# pings, reserved bits, opcodes, fragmentation, UTF-8, closing, limits up to 16 MiB
# messages: 15 s together) and, of each 12.x/13.x permessage-deflate group, the case with
# the smallest messages (x.y.1) and the first one that auto-fragments (x.y.11). The
# larger sizes of 12.x/13.x (1000 messages of up to 256 KiB each) take 95% of a full run.
QUICK_CASES = [
    "1.*", "2.*", "3.*", "4.*", "5.*", "6.*", "7.*", "8.*", "9.*", "10.*",
    *(f"12.{group}.{case}" for group in range(1, 6) for case in (1, 11)),
    *(f"13.{group}.{case}" for group in range(1, 8) for case in (1, 11)),
]  # fmt: skip


def wstest_path(explicit: str | None) -> str:
    return explicit or os.environ.get("TRICORN_AUTOBAHN") or DEFAULT_WSTEST


class ServerProcess:
    """``python -m tricorn`` serving the echo app on a free port, its log in a file."""

    def __init__(self, ws: str, http: str, outdir: Path, extra: list[str]) -> None:
        self.log_path = outdir / f"server-{ws}.log"
        self.log = self.log_path.open("wb")
        command = [
            sys.executable, "-m", "tricorn", APP,
            "--ws", ws, "--http", http,
            "--host", "127.0.0.1", "--port", "0",
            "--lifespan", "off", "--no-access-log",
            *extra,
        ]  # fmt: skip
        self.proc = subprocess.Popen(
            command, cwd=REPO, stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log
        )
        self.port = self._wait_for_port()

    def _wait_for_port(self, timeout: float = 30.0) -> int:
        deadline = time.monotonic() + timeout
        pattern = re.compile(rb"running on http://127\.0\.0\.1:(\d+)")
        while time.monotonic() < deadline:
            match = pattern.search(self.log_path.read_bytes())
            if match:
                return int(match.group(1))
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"the server did not start; its log:\n{self.log_text()}")

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> int | None:
        """Stop the server (SIGINT, then SIGKILL after 10 s); its exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return self.proc.returncode


def run_backend(
    ws: str,
    http: str,
    wstest: str,
    cases: list[str],
    exclude: list[str],
    outdir: Path,
    server_args: list[str],
    timeout: float,
) -> tuple[list[str], dict[str, Any]]:
    """One fuzzingclient run against one backend: (failure lines, summary)."""
    agent = f"tricorn-{ws}-{http}"
    server = ServerProcess(ws, http, outdir, server_args)
    reports = outdir / f"reports-{ws}"
    spec = {
        "outdir": str(reports),
        "servers": [{"agent": agent, "url": f"ws://127.0.0.1:{server.port}"}],
        "cases": cases,
        "exclude-cases": exclude,
        "exclude-agent-cases": {},
    }
    spec_path = outdir / f"spec-{ws}.json"
    spec_path.write_text(json.dumps(spec, indent=2))
    wstest_log = outdir / f"wstest-{ws}.log"
    started = time.monotonic()
    failures: list[str] = []
    try:
        with wstest_log.open("wb") as log:
            result = subprocess.run(
                [wstest, "-m", "fuzzingclient", "-s", str(spec_path)],
                cwd=outdir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=timeout,
            )
        if result.returncode != 0:
            failures.append(f"wstest exited with {result.returncode}; see {wstest_log}")
    except subprocess.TimeoutExpired:
        failures.append(f"wstest did not finish within {timeout:.0f} s; see {wstest_log}")
    finally:
        duration = time.monotonic() - started
        server_alive = server.proc.poll() is None
        status = server.stop()
    if not server_alive:
        failures.append(f"the server exited during the run with status {status}")
    if "Traceback" in server.log_text():
        failures.append(f"the server logged a traceback; see {server.log_path}")

    counts: collections.Counter[str] = collections.Counter()
    index_path = reports / "index.json"
    if not index_path.exists():
        failures.append(f"wstest wrote no report ({index_path})")
    else:
        index = json.loads(index_path.read_text())
        results = index.get(agent, {})
        if not results:
            failures.append(f"the report has no case for agent {agent}")
        for case_id in sorted(results, key=case_key):
            entry = results[case_id]
            behavior, close = entry["behavior"], entry["behaviorClose"]
            counts[behavior] += 1
            if behavior not in PASSING_BEHAVIOR or close not in PASSING_CLOSE:
                failures.append(describe_failure(case_id, entry, reports))
    summary = {
        "backend": ws,
        "http": http,
        "cases": sum(counts.values()),
        "counts": dict(counts),
        "duration": round(duration, 1),
        "reports": str(reports),
    }
    return failures, summary


def case_key(case_id: str) -> tuple[int, ...]:
    return tuple(int(part) for part in case_id.split("."))


def describe_failure(case_id: str, entry: dict[str, Any], reports: Path) -> str:
    """One failing case: its verdicts, and what Autobahn expected against what it saw."""
    line = (
        f"case {case_id}: behavior={entry['behavior']} close={entry['behaviorClose']}"
        f" remoteCloseCode={entry.get('remoteCloseCode')}"
    )
    report_path = reports / entry.get("reportfile", "")
    if report_path.is_file():
        report = json.loads(report_path.read_text())
        line += (
            f"\n    {report.get('description')}"
            f"\n    expected: {report.get('expectation')}"
            f"\n    result: {report.get('result')}; close: {report.get('resultClose')}"
            f"\n    remote close reason: {report.get('remoteCloseReason')!r}"
        )
    return line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--ws",
        action="append",
        choices=sorted(HTTP_FOR_WS),
        help="WebSocket backend to test (repeatable; default: both)",
    )
    parser.add_argument("--wstest", help="path of wstest (default: $TRICORN_AUTOBAHN)")
    parser.add_argument(
        "--cases",
        default="*",
        help="comma-separated case patterns, or 'quick' for the CI selection (default: *)",
    )
    parser.add_argument("--exclude", default="", help="comma-separated case patterns to skip")
    parser.add_argument("--outdir", help="where specs, logs and reports go (default: a temp dir)")
    parser.add_argument(
        "--timeout", type=float, default=1200, help="seconds one backend's run may take"
    )
    parser.add_argument(
        "server_args", nargs="*", help="extra tricorn options, after --, e.g. -- --ws-max-size 1"
    )
    args = parser.parse_args(argv)

    wstest = wstest_path(args.wstest)
    if not os.access(wstest, os.X_OK):
        print(
            f"error: wstest not found at {wstest}: run scripts/install-autobahn.sh "
            "or set TRICORN_AUTOBAHN",
            file=sys.stderr,
        )
        return 2
    cases = QUICK_CASES if args.cases == "quick" else split(args.cases)
    exclude = split(args.exclude)
    outdir = Path(args.outdir or tempfile.mkdtemp(prefix="tricorn-autobahn-")).resolve()
    outdir.mkdir(parents=True, exist_ok=True)

    all_failures: list[str] = []
    for ws in args.ws or sorted(HTTP_FOR_WS):
        http = HTTP_FOR_WS[ws]
        print(f"==> Autobahn fuzzingclient: --ws {ws} --http {http}", flush=True)
        try:
            failures, summary = run_backend(
                ws, http, wstest, cases, exclude, outdir, args.server_args, args.timeout
            )
        except RuntimeError as exc:
            print(f"error: --ws {ws}: {exc}", file=sys.stderr)
            return 2
        counts = ", ".join(f"{n} {name}" for name, n in sorted(summary["counts"].items()))
        print(
            f"    {summary['cases']} cases in {summary['duration']} s: {counts or 'none'}"
            f"\n    reports: {summary['reports']}/index.html",
            flush=True,
        )
        for failure in failures:
            print(f"    FAIL {failure}", flush=True)
        all_failures += [f"--ws {ws}: {failure}" for failure in failures]
    if all_failures:
        print(f"{len(all_failures)} problem(s); see above", file=sys.stderr)
        return 1
    return 0


def split(patterns: str) -> list[str]:
    return [p.strip() for p in patterns.split(",") if p.strip()]


if __name__ == "__main__":
    sys.exit(main())
