"""The master's control socket: ``tricorn status`` reads the table of workers from it.

The socket is named after the master's pid, so a client that knows the pid (from the pid
file) finds it, and a master started by USR2 has its own without a clash: on Linux an
abstract unix socket ``@tricorn-master-<pid>`` (no file to clean up), elsewhere
``<tmpdir>/tricorn-master-<uid>-<pid>.sock`` (mode 0600). The protocol is one-shot: a
client connects, the master writes one JSON document and closes. The master never reads
from a client, so a client cannot stall it; it answers only peers of its own user (or
root), checked with SO_PEERCRED where the platform has it. The client checks the other way
round too: abstract names are per network namespace, which containers of one pod share
while each has its own pids, so the client makes sure the pid that answers (SO_PEERCRED,
seen from its own pid namespace) is the one the pid file names. The document itself is
the arbiter's (``Arbiter.status()``); this module only carries it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import struct
import sys
import tempfile
from typing import Any

logger = logging.getLogger("tricorn.error")

# The longest answer a client accepts (a few hundred bytes per worker).
MAX_ANSWER = 4 * 1024 * 1024


def control_address(pid: int) -> str:
    if sys.platform.startswith("linux"):
        return f"\0tricorn-master-{pid}"
    return os.path.join(tempfile.gettempdir(), f"tricorn-master-{os.getuid()}-{pid}.sock")


class ControlServer:
    """The listening end, in the master. ``fileno()`` is readable when a client waits."""

    def __init__(self, pid: int) -> None:
        self.address = control_address(pid)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            if not self.address.startswith("\0"):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.address)
            self.sock.bind(self.address)
            if not self.address.startswith("\0"):
                os.chmod(self.address, 0o600)
            self.sock.listen(8)
            self.sock.setblocking(False)
        except BaseException:
            self.sock.close()
            raise

    def fileno(self) -> int:
        return self.sock.fileno()

    def answer(self, status: dict[str, Any]) -> None:
        """Write ``status`` to every client waiting to be accepted."""
        payload = json.dumps(status).encode() + b"\n"
        while True:
            try:
                conn, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                logger.debug("Control socket: accept failed: %s", exc)
                return
            with conn:
                if not _trusted(conn):
                    continue
                # A fresh unix socket buffers far more than one answer: this does not wait,
                # and the timeout bounds it should it ever have to.
                conn.settimeout(1.0)
                with contextlib.suppress(OSError):
                    conn.sendall(payload)

    def close(self) -> None:
        self.sock.close()
        if not self.address.startswith("\0"):
            with contextlib.suppress(OSError):
                os.unlink(self.address)


def _peer(conn: socket.socket) -> tuple[int, int] | None:
    """(pid, uid) of the other end, None where SO_PEERCRED does not exist."""
    option = getattr(socket, "SO_PEERCRED", None)
    if option is None:
        return None
    creds = conn.getsockopt(socket.SOL_SOCKET, option, struct.calcsize("3i"))
    pid, uid, _ = struct.unpack("3i", creds)
    return pid, uid


def _peer_pid(conn: socket.socket) -> int | None:
    peer = _peer(conn)
    return None if peer is None else peer[0]


def _trusted(conn: socket.socket) -> bool:
    try:
        peer = _peer(conn)
    except OSError:
        return False
    if peer is None:
        return True  # the socket file is 0600: only our user can connect
    return peer[1] in (0, os.getuid())


class ControlError(Exception):
    """The master cannot be asked; the message says why, in one line."""


def query(pid: int, timeout: float = 5.0) -> dict[str, Any]:
    """Ask the master ``pid`` for its status (the JSON document of ``master_status()``)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(control_address(pid))
            peer = _peer_pid(sock)
            if peer is not None and peer != pid:
                raise ControlError(
                    f"the control socket of process {pid} is held by another process "
                    "(another container sharing the network?)"
                )
            chunks: list[bytes] = []
            size = 0
            while size <= MAX_ANSWER:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
        except OSError as exc:
            raise ControlError(
                f"process {pid} does not answer on a tricorn control socket "
                f"({exc.strerror or exc}); is it a tricorn master?"
            ) from None
    try:
        answer = json.loads(b"".join(chunks))
    except ValueError:
        raise ControlError(f"process {pid} sent an answer that is not a status") from None
    if not isinstance(answer, dict):
        raise ControlError(f"process {pid} sent an answer that is not a status")
    return answer
