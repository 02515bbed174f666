"""The pre-fork master: ``Arbiter(config).run()`` binds the listeners, forks the workers
and supervises them (signals, health checks, rolling restarts, recycling).

Modules: ``arbiter`` (the supervisor loop), ``rollout`` (which workers to start and
retire), ``process`` (the master's handle on one worker and its checks), ``signals`` (the
signal queue), ``sockets`` (listeners), ``reexec`` (USR2), ``control`` (``tricorn
status``), ``systemd``, ``pidfile``.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Arbiter"]


def __getattr__(name: str) -> Any:
    # Lazy: tricorn.worker.child imports tricorn.master.signals, and the arbiter imports
    # tricorn.worker.child; importing the arbiter here would make that a cycle.
    if name == "Arbiter":
        from tricorn.master.arbiter import Arbiter

        return Arbiter
    raise AttributeError(name)
