"""Apps for the master's real-process tests (``tests.master.apps:<name>``).

* ``pid``: 200 with the worker's pid; ``?delay=S`` awaits S seconds first, ``?block=S``
  blocks the event loop for S seconds (a stuck worker); ``?imported=1`` answers the pid of
  the process that imported this module instead (the master's with ``--preload``);
  ``?orphan=1`` starts a short-lived grandchild whose parent exits at once (an orphan the
  nearest init must reap) and answers its pid.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from typing import Any
from urllib.parse import parse_qs

IMPORTED_IN = os.getpid()


async def pid(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    query = parse_qs(scope["query_string"].decode())
    if "delay" in query:
        await asyncio.sleep(float(query["delay"][0]))
    if "block" in query:
        time.sleep(float(query["block"][0]))  # noqa: ASYNC251 (on purpose: a stuck loop)
    if "orphan" in query:
        # `sh` prints the pid of its background `sleep` and exits: the sleep is orphaned.
        script = "sleep 0.2 >/dev/null 2>&1 & echo $!"
        orphan = subprocess.run(["sh", "-c", script], capture_output=True, check=True)  # noqa: ASYNC221
        body = orphan.stdout.strip()
    else:
        body = str(IMPORTED_IN if "imported" in query else os.getpid()).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain"), (b"content-length", b"%d" % len(body))],
        }
    )
    await send({"type": "http.response.body", "body": body})
