"""Logging for Tricorn: the TRACE level, the formatters and the default configuration.

Loggers:

* ``tricorn`` owns the handler of the default configuration;
* ``tricorn.error`` carries the server's own messages (startup, shutdown, errors);
* ``tricorn.access`` gets one record per completed response (see ``AccessFormatter``);
* ``tricorn.asgi`` gets the TRACE records of every ASGI message (``--log-level trace``).

``reopen_log_files()`` is what SIGUSR1 does in the master and in every worker (logrotate).

Fixed messages are an interface (people grep them), so formatters only decorate: they add
the level prefix and colours and never rewrite or re-escape what the caller logged.
"""

from __future__ import annotations

import http
import logging
import sys
from copy import copy
from typing import Any, Literal, TextIO

import click

TRACE_LOG_LEVEL = 5
logging.addLevelName(TRACE_LOG_LEVEL, "TRACE")

LOG_LEVELS: dict[str, int] = {
    "critical": logging.CRITICAL,
    "error": logging.ERROR,
    "warning": logging.WARNING,
    "info": logging.INFO,
    "debug": logging.DEBUG,
    "trace": TRACE_LOG_LEVEL,
}

_LEVEL_COLOURS: dict[int, str] = {
    TRACE_LOG_LEVEL: "blue",
    logging.DEBUG: "cyan",
    logging.INFO: "green",
    logging.WARNING: "yellow",
    logging.ERROR: "red",
    logging.CRITICAL: "bright_red",
}

_STATUS_COLOURS: dict[int, str] = {
    1: "bright_white",
    2: "green",
    3: "yellow",
    4: "red",
    5: "bright_red",
}

# The status phrase never changes for a code: compute it once per code, not per record.
_STATUS_TEXT: dict[int, str] = {
    status.value: f"{status.value} {status.phrase}" for status in http.HTTPStatus
}


def _isatty(stream: TextIO | None) -> bool:
    try:
        return bool(stream is not None and stream.isatty())
    except (AttributeError, ValueError):  # closed or replaced streams
        return False


class DefaultFormatter(logging.Formatter):
    """A formatter offering ``%(levelprefix)s``: the level name, a colon and padding.

    ``use_colors=None`` colours only when the stream the formatter usually writes to
    (stderr here) is a terminal. A record may carry ``extra={"color_message": ...}``: a
    variant of its format string with styling, used instead of ``msg`` when colouring.
    """

    stream_name = "stderr"

    def __init__(
        self,
        fmt: str | None = None,
        datefmt: str | None = None,
        style: Literal["%", "{", "$"] = "%",
        use_colors: bool | None = None,
    ) -> None:
        if use_colors is None:
            use_colors = _isatty(getattr(sys, self.stream_name, None))
        self.use_colors = use_colors
        super().__init__(fmt=fmt, datefmt=datefmt, style=style)

    def level_prefix(self, record: logging.LogRecord) -> str:
        name = record.levelname
        padding = " " * max(0, 8 - len(name))
        if self.use_colors:
            colour = _LEVEL_COLOURS.get(record.levelno)
            if colour is not None:
                name = click.style(name, fg=colour)
        return f"{name}:{padding}"

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 (logging API)
        record = copy(record)  # other handlers must see the record unchanged
        if self.use_colors and "color_message" in record.__dict__:
            record.msg = record.__dict__["color_message"]
            record.message = record.getMessage()
        record.levelprefix = self.level_prefix(record)
        return super().formatMessage(record)


class AccessFormatter(DefaultFormatter):
    """Formats the records of ``tricorn.access``.

    The protocol logs ``'%s - "%s %s HTTP/%s" %d'`` with the arguments ``(client_addr,
    method, path, http_version, status_code)`` and ``extra={"duration": seconds, "size":
    body_bytes}``, the path already made safe. This formatter offers ``%(client_addr)s``,
    ``%(request_line)s``, ``%(status_code)s`` (code and phrase, coloured on a terminal),
    ``%(duration)s`` (e.g. ``1.25ms``) and ``%(size)s`` (body bytes), and never escapes
    anything again.
    """

    stream_name = "stdout"

    def status_text(self, status_code: int) -> str:
        text = _STATUS_TEXT.get(status_code)
        if text is None:
            text = f"{status_code} "
        if self.use_colors:
            colour = _STATUS_COLOURS.get(status_code // 100)
            if colour is not None:
                text = click.style(text, fg=colour)
        return text

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 (logging API)
        args = record.args
        if isinstance(args, tuple) and len(args) == 5:
            # HTTP: (client_addr, method, path, http_version, status_code)
            client_addr, method, path, http_version, outcome = args
            request_line = f"{method} {path} HTTP/{http_version}"
        elif isinstance(args, tuple) and len(args) == 3:
            # WebSocket: (client_addr, path, outcome), outcome "[accepted]" or a status
            client_addr, path, outcome = args
            request_line = f"WebSocket {path}"
        else:
            # Not a protocol access record (a user logging to tricorn.access): plain line.
            return super().formatMessage(record)
        record = copy(record)
        if self.use_colors:
            request_line = click.style(request_line, bold=True)
        record.client_addr = client_addr
        record.request_line = request_line
        text = str(outcome)
        record.status_code = self.status_text(int(text)) if text.isdigit() else text
        duration = record.__dict__.get("duration")
        record.duration = "-" if duration is None else f"{float(duration) * 1000:.2f}ms"
        record.size = record.__dict__.get("size", "-")
        return super().formatMessage(record)


LOGGING_CONFIG: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "default": {
            "()": "tricorn.logs.DefaultFormatter",
            "fmt": "%(levelprefix)s %(message)s",
            "use_colors": None,
        },
        "access": {
            "()": "tricorn.logs.AccessFormatter",
            "fmt": '%(levelprefix)s %(client_addr)s - "%(request_line)s" %(status_code)s',
            "use_colors": None,
        },
    },
    "handlers": {
        "default": {
            "formatter": "default",
            "class": "logging.StreamHandler",
            "stream": "ext://sys.stderr",
        },
        "access": {
            "formatter": "access",
            "class": "logging.StreamHandler",
            "stream": "ext://sys.stdout",
        },
    },
    "loggers": {
        "tricorn": {"handlers": ["default"], "level": "INFO", "propagate": False},
        "tricorn.error": {"level": "INFO"},
        "tricorn.access": {"handlers": ["access"], "level": "INFO", "propagate": False},
    },
}
"""The default ``log_config``: a copy is applied, so changing it affects later Configs."""


def reopen_log_files() -> int:
    """Reopen every ``logging.FileHandler`` (after logrotate moved the files); the count."""
    handlers: list[logging.Handler] = list(logging.getLogger().handlers)
    for logger in list(logging.Logger.manager.loggerDict.values()):
        if isinstance(logger, logging.Logger):
            handlers.extend(logger.handlers)
    reopened = 0
    for handler in dict.fromkeys(handlers):  # unique, in order
        if not isinstance(handler, logging.FileHandler):
            continue
        handler.acquire()
        try:
            if handler.stream is not None:
                handler.stream.close()
            handler.stream = handler._open()
            reopened += 1
        finally:
            handler.release()
    return reopened
