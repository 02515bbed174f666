"""``tricorn status --pid FILE``: the table of a running master's workers.

The pid file names the master; the master answers on its control socket
(``tricorn.master.control``) with its state and, per worker, pid, age, state, requests
served, resident memory and the time since its last heartbeat.
"""

from __future__ import annotations

import json
from typing import Any

import click

from tricorn.master.control import ControlError, query
from tricorn.master.pidfile import pid_alive, read_pid


def format_age(seconds: float) -> str:
    """``42s``, ``5m03s``, ``2h05m``, ``3d04h``: short and sortable by eye."""
    total = int(seconds)
    if total < 60:
        return f"{total}s"
    minutes, secs = divmod(total, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h{minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours:02d}h"


def format_rss(rss: Any) -> str:
    if not isinstance(rss, int):
        return "-"
    return f"{rss / (1024 * 1024):.1f} MiB"


COLUMNS = ("PID", "AGE", "STATE", "GEN", "REQUESTS", "RSS", "HEARTBEAT")


def render(status: dict[str, Any]) -> str:
    """The text ``tricorn status`` prints for one master's status document."""
    master = status.get("master", {})
    workers = status.get("workers", [])
    lines = [
        f"master {master.get('pid')} [{master.get('name')}] {master.get('state')}, "
        f"up {format_age(master.get('age', 0))}, {master.get('target')} workers wanted, "
        f"generation {master.get('generation')}"
    ]
    if master.get("listening"):
        lines.append("listening on " + ", ".join(master["listening"]))
    if master.get("new_master"):
        lines.append(f"new master {master['new_master']} is taking over (USR2)")
    rows = [COLUMNS]
    for worker in workers:
        state = worker.get("state", "?")
        if worker.get("recycling") and state == "ready":
            state = "recycling"
        rows.append(
            (
                str(worker.get("pid")),
                format_age(worker.get("age", 0)),
                state,
                str(worker.get("generation")),
                str(worker.get("requests")),
                format_rss(worker.get("rss")),
                f"{worker.get('heartbeat', 0):.1f}s ago",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    for row in rows:
        cells = [
            cell.ljust(width) if i == 2 else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def _status(pid_path: str, as_json: bool) -> None:
    try:
        pid = read_pid(pid_path)
    except OSError as exc:
        raise click.ClickException(f"--pid {pid_path}: {exc.strerror or exc}") from None
    if pid is None:
        raise click.ClickException(f"--pid {pid_path}: no such pid file, or it holds no pid")
    if not pid_alive(pid):
        raise click.ClickException(
            f"--pid {pid_path}: process {pid} is not running (stale pid file)"
        )
    try:
        status = query(pid)
    except ControlError as exc:
        raise click.ClickException(f"--pid {pid_path}: {exc}") from None
    click.echo(json.dumps(status, indent=2) if as_json else render(status))


def build_status_command(cls: type[click.Command]) -> click.Command:
    """``tricorn status``, with ``cls`` (the one-line-error command class)."""
    callback = click.option(
        "--json", "as_json", is_flag=True, help="Print the master's answer as JSON."
    )(_status)
    callback = click.option(
        "--pid",
        "pid_path",
        required=True,
        envvar="TRICORN_PID",
        metavar="PATH",
        help="The master's pid file (its --pid).",
    )(callback)
    return click.command(
        name="status",
        cls=cls,
        context_settings={"help_option_names": ["--help"], "max_content_width": 100},
        help="Show the workers of a running tricorn master: pid, age, state, requests "
        "served, memory and last heartbeat.",
    )(callback)
