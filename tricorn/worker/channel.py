"""The worker's end of its pipe to the master (the message format is in
``tricorn.master.process``).

The heartbeat is written by a task on the worker's own event loop, on purpose: a loop
blocked by the app (``time.sleep`` in an endpoint) stops beating and the master notices.
The same task watches for the master's death (our parent pid changes, or the pipe breaks)
and then asks the server to stop, so a worker never outlives its master for long.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os

from tricorn.worker.server import Server

logger = logging.getLogger("tricorn.error")


class Channel:
    """Write-only messages from a worker to its master over a non-blocking pipe."""

    def __init__(self, fd: int, master_pid: int, interval: float = 1.0) -> None:
        self.fd = fd
        self.master_pid = master_pid
        self.interval = interval
        self.broken = False
        os.set_blocking(fd, False)

    def send(self, message: str) -> bool:
        """Write one message; False once the master is gone."""
        if self.broken:
            return False
        try:
            os.write(self.fd, message.encode("ascii") + b"\n")
        except BlockingIOError:
            return True  # the master is busy; the next beat will do
        except OSError:
            self.broken = True
            return False
        return True

    def ready(self) -> None:
        self.send("ready")

    def master_alive(self) -> bool:
        return not self.broken and os.getppid() == self.master_pid

    async def heartbeat(self, server: Server) -> None:
        """Beat every ``interval`` with ``server.server_state.total_requests`` until
        cancelled; if the master died, set ``server.should_exit`` and return."""
        while True:
            # server_state is replaced when serve() starts: read it each time.
            self.send(f"beat {server.server_state.total_requests}")
            if not self.master_alive():
                logger.warning(
                    "Master [%d] is gone, worker [%d] stopping", self.master_pid, os.getpid()
                )
                server.should_exit = True
                return
            await asyncio.sleep(self.interval)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)
        self.broken = True
