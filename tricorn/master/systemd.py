"""systemd's notification protocol (``sd_notify``), in the few lines it takes.

Under ``Type=notify`` systemd passes ``NOTIFY_SOCKET`` (a unix datagram socket; a leading
``@`` means the abstract namespace) and reads ``KEY=VALUE`` lines sent to it. The master
sends READY=1 once its first workers are ready, RELOADING=1 (with MONOTONIC_USEC) on HUP
and READY=1 when the reload is done, STOPPING=1 when it stops, WATCHDOG=1 every half
``WATCHDOG_USEC`` when systemd asks for it, and MAINPID=<pid> when a master started by
USR2 takes over. Without ``NOTIFY_SOCKET`` every call is a no-op; a failed send is logged
at debug level and never stops the server.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Mapping

logger = logging.getLogger("tricorn.error")


def monotonic_usec() -> int:
    """CLOCK_MONOTONIC in microseconds: what systemd expects with RELOADING=1."""
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


class Notifier:
    """Where to send notifications, read once from the environment of the master."""

    def __init__(self, environ: Mapping[str, str] | None = None, pid: int | None = None) -> None:
        environ = os.environ if environ is None else environ
        pid = os.getpid() if pid is None else pid
        address = environ.get("NOTIFY_SOCKET") or None
        if address is not None and address.startswith("@"):
            address = "\0" + address[1:]
        self.address = address
        self.watchdog_interval: float | None = None
        usec = environ.get("WATCHDOG_USEC", "")
        owner = environ.get("WATCHDOG_PID")
        if usec.isdigit() and int(usec) > 0 and (owner is None or owner == str(pid)):
            # Half the period, as sd_watchdog_enabled(3) advises.
            self.watchdog_interval = int(usec) / 2e6
        self.next_watchdog = 0.0  # monotonic time of the next WATCHDOG=1

    def feed_watchdog(self, now: float) -> None:
        """Send WATCHDOG=1 when it is due (call it at least every ``watchdog_interval``)."""
        interval = self.watchdog_interval
        if interval is not None and now >= self.next_watchdog:
            self.next_watchdog = now + interval
            self.watchdog()

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def notify(self, *lines: str) -> bool:
        """Send ``lines`` (``"READY=1"``...) as one datagram; True when it was sent."""
        if self.address is None:
            return False
        message = "\n".join(lines).encode()
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.sendto(message, self.address)
        except OSError as exc:
            logger.debug("sd_notify %r failed: %s", lines, exc)
            return False
        return True

    def ready(self, status: str = "") -> bool:
        return self.notify("READY=1", *([f"STATUS={status}"] if status else []))

    def reloading(self) -> bool:
        return self.notify("RELOADING=1", f"MONOTONIC_USEC={monotonic_usec()}")

    def stopping(self) -> bool:
        return self.notify("STOPPING=1")

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

    def main_pid(self, pid: int, status: str = "") -> bool:
        """A new master took over: systemd must follow ``pid`` from now on."""
        return self.notify(f"MAINPID={pid}", "READY=1", *([f"STATUS={status}"] if status else []))


# Variables a worker must not inherit: only the master speaks to systemd.
SYSTEMD_VARIABLES = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")
