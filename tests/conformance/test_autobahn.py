"""RFC 6455 conformance: Autobahn|Testsuite's fuzzing client against each WebSocket backend.

Runs ``run_autobahn.py`` (a real ``python -m tricorn`` serving ``echo:app``, a real
``wstest``) and fails listing every case Autobahn did not pass. Skipped when wstest is not
installed: ``bash scripts/install-autobahn.sh`` installs it (Python 2.7 needed), at
``$TRICORN_AUTOBAHN`` or /tmp/autobahn-venv/bin/wstest.

By default the CI selection (``--cases quick``: every case of 1-10, the first cases of each
12.x/13.x compression group) runs, about 30 s per backend; TRICORN_AUTOBAHN_CASES=* runs
all 517 cases (about 8 minutes per backend, almost all of it in 12.x/13.x).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conformance.run_autobahn import wstest_path

HERE = Path(__file__).resolve().parent
WSTEST = wstest_path(None)
CASES = os.environ.get("TRICORN_AUTOBAHN_CASES", "quick")

pytestmark = pytest.mark.skipif(
    not os.access(WSTEST, os.X_OK),
    reason=f"Autobahn wstest not installed at {WSTEST}: run scripts/install-autobahn.sh "
    "(needs Python 2.7) or set TRICORN_AUTOBAHN to its wstest",
)


@pytest.mark.timeout(1800)
@pytest.mark.parametrize("ws", ["websockets", "wsproto"])
def test_autobahn_fuzzingclient(ws: str, tmp_path: Path) -> None:
    command = [
        sys.executable, str(HERE / "run_autobahn.py"),
        "--ws", ws, "--wstest", WSTEST, "--cases", CASES, "--outdir", str(tmp_path),
    ]  # fmt: skip
    result = subprocess.run(
        command,
        cwd=HERE.parents[1],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=1700,
    )
    report = result.stdout + result.stderr
    assert result.returncode == 0, f"Autobahn run over --ws {ws} failed:\n{report}"
    assert " cases in " in result.stdout, report  # a run that tested nothing is no pass
