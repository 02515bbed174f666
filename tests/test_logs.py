"""Formatters: uvicorn-like default lines, colours only when asked, nothing escaped twice."""

from __future__ import annotations

import logging
from typing import Any

import click
import pytest

from tricorn.logs import (
    LOGGING_CONFIG,
    TRACE_LOG_LEVEL,
    AccessFormatter,
    DefaultFormatter,
)

DEFAULT_FMT = LOGGING_CONFIG["formatters"]["default"]["fmt"]
ACCESS_FMT = LOGGING_CONFIG["formatters"]["access"]["fmt"]


def record(msg: str, args: Any = (), level: int = logging.INFO, **extra: Any) -> logging.LogRecord:
    rec = logging.LogRecord("tricorn.access", level, __file__, 1, msg, args, None)
    rec.__dict__.update(extra)
    return rec


def access_record(path: str = "/", status: int = 200, **extra: Any) -> logging.LogRecord:
    return record(
        '%s - "%s %s HTTP/%s" %d', ("127.0.0.1:40860", "GET", path, "1.1", status), **extra
    )


def test_trace_level_is_registered() -> None:
    assert TRACE_LOG_LEVEL == 5
    assert logging.getLevelName(TRACE_LOG_LEVEL) == "TRACE"


def test_default_format_like_uvicorn() -> None:
    formatter = DefaultFormatter(DEFAULT_FMT, use_colors=False)
    assert formatter.format(record("Started server process [%d]", (42,))) == (
        "INFO:     Started server process [42]"
    )
    warning = record("careful", level=logging.WARNING)
    assert formatter.format(warning) == "WARNING:  careful"
    assert formatter.format(record("x", level=TRACE_LOG_LEVEL)) == "TRACE:    x"


def test_default_colours_and_color_message() -> None:
    formatter = DefaultFormatter(DEFAULT_FMT, use_colors=True)
    rec = record("Running on %s", ("here",), color_message="Running on " + "\x1b[1m%s\x1b[0m")
    text = formatter.format(rec)
    assert text == click.style("INFO", fg="green") + ":     Running on \x1b[1mhere\x1b[0m"
    # The record itself is untouched for other handlers.
    assert rec.getMessage() == "Running on here"
    plain = DefaultFormatter(DEFAULT_FMT, use_colors=False).format(rec)
    assert plain == "INFO:     Running on here"


def test_use_colors_none_follows_the_terminal() -> None:
    # Under pytest stderr/stdout are captured, not terminals.
    assert DefaultFormatter(DEFAULT_FMT).use_colors is False
    assert AccessFormatter(ACCESS_FMT).use_colors is False


def test_access_format_like_uvicorn() -> None:
    formatter = AccessFormatter(ACCESS_FMT, use_colors=False)
    assert formatter.format(access_record()) == (
        'INFO:     127.0.0.1:40860 - "GET / HTTP/1.1" 200 OK'
    )
    assert formatter.format(access_record(status=599)).endswith('" 599 ')


def test_access_status_coloured() -> None:
    formatter = AccessFormatter(ACCESS_FMT, use_colors=True)
    text = formatter.format(access_record(status=404))
    assert click.style("404 Not Found", fg="red") in text
    assert click.style("GET / HTTP/1.1", bold=True) in text


def test_access_duration_and_size() -> None:
    fmt = "%(client_addr)s %(request_line)s %(status_code)s %(duration)s %(size)s"
    formatter = AccessFormatter(fmt, use_colors=False)
    text = formatter.format(access_record(duration=0.00125, size=1234))
    assert text == "127.0.0.1:40860 GET / HTTP/1.1 200 OK 1.25ms 1234"
    assert formatter.format(access_record()).endswith(" - -")


@pytest.mark.parametrize(
    "path", ["/a\\x1b[31mred", '/q?x=\\"quoted\\"', "/caf\\xc3\\xa9", "/line\\r\\nbreak"]
)
def test_access_path_is_not_escaped_again(path: str) -> None:
    # The protocol escapes the path; the formatter must print it as given.
    formatter = AccessFormatter(ACCESS_FMT, use_colors=False)
    assert formatter.format(access_record(path)) == (
        f'INFO:     127.0.0.1:40860 - "GET {path} HTTP/1.1" 200 OK'
    )


def test_other_records_on_the_access_logger() -> None:
    formatter = AccessFormatter("%(levelprefix)s %(message)s", use_colors=False)
    assert formatter.format(record("plain %s", ("text",))) == "INFO:     plain text"
