"""The one definition of every Tricorn setting.

Rules: each setting is described exactly once, in ``SETTINGS``. The command line options
(``tricorn.cli.main``), the ``TRICORN_*`` environment variables, the validation done by
``Config`` and ``docs/settings.md`` (``scripts/gen_settings_doc.py``) are all derived from
this table; nothing else may spell a default, a flag or a bound again. Names are
uvicorn's, so a uvicorn command line or ``uvicorn.run(...)`` call keeps its meaning.

Validation is done by the click parameter type of the setting, for the command line and
for ``Config(...)`` alike, so both give the same one-line message.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import click

from tricorn.logs import LOG_LEVELS, LOGGING_CONFIG
from tricorn.net.sockets import BindError, parse_bind


class ConfigError(ValueError):
    """A setting is wrong, or the app or a socket cannot be set up because of one.

    ``str(error)`` is one line for the user, naming the option (or the app) and what is
    wrong. ``exit_code`` is the process exit status the command line uses for it: 1 for a
    bad setting, 3 (``STARTUP_FAILURE``) where uvicorn reports a startup failure.
    """

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


if TYPE_CHECKING:
    _ParamType = click.ParamType[Any, Any]
else:  # click < 8.2 has no generic ParamType at run time
    _ParamType = click.ParamType

ENV_PREFIX = "TRICORN_"

Flag = Literal["value", "flag", "switch"]


class ChoiceOrImportString(_ParamType):
    """One of a few names, or a ``module:attribute`` import string (like uvicorn's --loop)."""

    name = "choice"

    def __init__(self, choices: Sequence[str], shown: Sequence[str]) -> None:
        self.choices = tuple(choices)
        self.shown = tuple(shown)

    def get_metavar(self, param: click.Parameter, ctx: click.Context | None = None) -> str:
        return "[" + "|".join(self.shown) + "]"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if not isinstance(value, str) or value in self.choices:
            return value  # a class or factory passed through the Python API
        module, _, attr = value.partition(":")
        if module and attr:
            return value
        names = ", ".join(repr(choice) for choice in self.shown)
        self.fail(f"{value!r} is not one of {names}, nor a 'module:attribute' string.", param, ctx)


class HeaderType(_ParamType):
    """``Name:Value`` on the command line, a ``(name, value)`` pair in ``Config``."""

    name = "header"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, (tuple, list)) and len(value) == 2:
            name, header_value = value
        elif isinstance(value, str) and ":" in value:
            name, _, header_value = value.partition(":")
        else:
            self.fail(f"{value!r} is not a 'Name:Value' header.", param, ctx)
        name, header_value = str(name).strip(), str(header_value).strip()
        if not name or any(c in name for c in " \t\r\n") or any(c in header_value for c in "\r\n"):
            self.fail(f"{value!r} is not a 'Name:Value' header.", param, ctx)
        return (name, header_value)


@dataclass(frozen=True)
class Setting:
    """One setting: its Config keyword, command line flag, environment, help and checks."""

    name: str
    """The ``Config`` keyword and attribute, and the click parameter name."""
    default: Any
    """The ``Config`` default (see ``cli_default`` for the command line's)."""
    help: str
    type: Any = str
    """A Python type or click parameter type; the click type validates values."""
    flag: Flag = "value"
    """``flag``: ``--x`` only; ``switch``: the ``--x/--no-x`` pair."""
    opt: str | None = None
    """The flag when it is not ``--`` + name with dashes (``--reload-dir``)."""
    multiple: bool = False
    cli: bool = True
    """False for Python-only settings (callables and such)."""
    cli_default: Any = ...
    extra_env: tuple[str, ...] = ()
    """Environment variables read after ``TRICORN_<NAME>`` (uvicorn's WEB_CONCURRENCY...)."""
    unsupported: dict[Any, str] = field(default_factory=dict)
    """Values uvicorn knows that Tricorn parses but refuses, with the one-line reason."""
    doc_default: str | None = None
    metavar: str | None = None

    @property
    def flag_name(self) -> str:
        return self.opt or "--" + self.name.replace("_", "-")

    @property
    def decls(self) -> list[str]:
        if self.flag == "switch":
            return [f"{self.flag_name}/--no-{self.flag_name[2:]}", self.name]
        return [self.flag_name, self.name]

    @property
    def env(self) -> list[str]:
        return [ENV_PREFIX + self.name.upper(), *self.extra_env]

    @property
    def command_line_default(self) -> Any:
        if self.cli_default is not ...:
            return self.cli_default
        return () if self.multiple else self.default

    def click_type(self) -> _ParamType | None:
        if self.flag != "value":
            return None
        if isinstance(self.type, click.ParamType):
            return self.type
        converted: _ParamType = click.types.convert_type(self.type)
        return converted

    def check(self, value: Any) -> Any:
        """Validate ``value`` as ``Config`` gets it; return it (converted where click does).

        Raises ``ConfigError`` with the same message the command line gives.
        """
        if value is None or (not self.cli and not isinstance(self.type, click.ParamType)):
            return value
        param_type = self.click_type()
        if param_type is None or self.multiple:
            values = value if self.multiple and isinstance(value, (list, tuple)) else None
            if param_type is not None and values is not None:
                return [self._convert(param_type, item) for item in values]
            return value
        if isinstance(value, bool) and isinstance(
            param_type, (click.types.IntParamType, click.types.FloatParamType)
        ):
            raise ConfigError(f"Invalid value for '{self.flag_name}': {value!r} is not a number.")
        return self._convert(param_type, value)

    def _convert(self, param_type: _ParamType, value: Any) -> Any:
        if isinstance(value, os.PathLike):
            value = os.fspath(value)
        try:
            return param_type.convert(value, None, None)
        except click.BadParameter as exc:
            raise ConfigError(f"Invalid value for '{self.flag_name}': {exc.message}") from None

    def refusal(self, value: Any) -> str | None:
        """The one-line reason Tricorn refuses ``value`` (supported by uvicorn), or None."""
        if isinstance(value, (str, bool)):
            return self.unsupported.get(value)
        return None


def _file(dir_okay: bool = False) -> click.Path:
    return click.Path(exists=True, dir_okay=dir_okay)


_COUNT = click.IntRange(min=0)
_SECONDS = click.FloatRange(min=0)

LOOPS = ("auto", "asyncio", "uvloop")
HTTP_BACKENDS = ("auto", "h11", "httptools")
WS_BACKENDS = ("auto", "none", "websockets", "wsproto")
LIFESPANS = ("auto", "on", "off")
INTERFACES = ("auto", "asgi3", "asgi2", "wsgi")


def _not_supported(option: str, value: str, supported: Sequence[str]) -> str:
    return (
        f"tricorn does not support {option} {value}; "
        f"use one of: {', '.join(supported)} (or a 'module:attribute' string)."
    )


class BindType(_ParamType):
    """One ``--bind`` address: ``HOST:PORT``, ``[IPv6]:PORT``, ``unix:PATH`` or ``fd://N``."""

    name = "address"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        try:
            parse_bind(str(value))
        except BindError as exc:
            self.fail(exc.reason, param, ctx)
        return str(value)


SETTINGS: tuple[Setting, ...] = (
    Setting("host", "127.0.0.1", "Address to listen on: an IPv4 or IPv6 address or a name."),
    Setting(
        "port",
        8000,
        "TCP port to listen on; 0 lets the system pick a free port (it is logged).",
        type=click.IntRange(0, 65535),
    ),
    Setting("uds", None, "Listen on this UNIX domain socket path instead of TCP."),
    Setting(
        "fd",
        None,
        "Serve on an already listening socket inherited as this file descriptor.",
        type=_COUNT,
    ),
    Setting(
        "reload",
        False,
        "Restart the server when source files change (development; watchfiles).",
        flag="flag",
    ),
    Setting(
        "reload_dirs",
        None,
        "Directory to watch for --reload (repeatable); the working directory by default.",
        type=_file(dir_okay=True),
        opt="--reload-dir",
        multiple=True,
        doc_default="current directory",
    ),
    Setting(
        "reload_includes",
        None,
        "Glob of files to watch for --reload (repeatable); '*.py' by default.",
        opt="--reload-include",
        multiple=True,
    ),
    Setting(
        "reload_excludes",
        None,
        "Glob of files to ignore for --reload (repeatable); '.*, .py[cod], .sw.*, ~*' by default.",
        opt="--reload-exclude",
        multiple=True,
    ),
    Setting(
        "reload_delay",
        0.25,
        "Seconds without further changes before --reload restarts (changes are batched).",
        type=_SECONDS,
    ),
    Setting(
        "workers",
        None,
        "Number of worker processes; $WEB_CONCURRENCY when set, else 1. More than 1 runs "
        "the pre-fork master. Not with --reload.",
        type=click.IntRange(min=1),
        extra_env=("WEB_CONCURRENCY",),
        doc_default="$WEB_CONCURRENCY or 1",
    ),
    Setting(
        "loop",
        "auto",
        "Event loop: auto (uvloop when installed), asyncio, uvloop, or a 'module:factory' "
        "string naming a loop factory.",
        type=ChoiceOrImportString((*LOOPS, "none", "zuvloop"), LOOPS),
        unsupported={"zuvloop": _not_supported("--loop", "zuvloop", LOOPS)},
    ),
    Setting(
        "http",
        "auto",
        "HTTP/1.1 implementation: auto (httptools when installed), h11, httptools.",
        type=ChoiceOrImportString((*HTTP_BACKENDS, "zttp"), HTTP_BACKENDS),
        unsupported={"zttp": _not_supported("--http", "zttp", HTTP_BACKENDS)},
    ),
    Setting(
        "http2",
        False,
        "Serve HTTP/2 (uvicorn: with --http zttp). Not supported by tricorn.",
        flag="flag",
        unsupported={
            True: "tricorn does not support --http2; it serves HTTP/1.1 "
            f"(--http {', '.join(HTTP_BACKENDS)})."
        },
    ),
    Setting(
        "ws",
        "auto",
        "WebSocket implementation: auto, none, websockets, wsproto.",
        type=ChoiceOrImportString((*WS_BACKENDS, "websockets-sansio"), WS_BACKENDS),
    ),
    Setting(
        "ws_max_size",
        16 * 1024 * 1024,
        "Largest WebSocket message accepted, in bytes.",
        type=_COUNT,
    ),
    Setting(
        "ws_max_queue",
        32,
        "Most received WebSocket messages buffered before reading pauses.",
        type=_COUNT,
    ),
    Setting("ws_ping_interval", 20.0, "Seconds between WebSocket keep-alive pings.", type=_SECONDS),
    Setting(
        "ws_ping_timeout",
        20.0,
        "Seconds to wait for a WebSocket pong before closing.",
        type=_SECONDS,
    ),
    Setting(
        "ws_per_message_deflate",
        True,
        "Offer WebSocket per-message-deflate compression.",
        type=bool,
    ),
    Setting(
        "lifespan",
        "auto",
        "ASGI lifespan events: auto (run them if the app supports them), on, off.",
        type=click.Choice(LIFESPANS),
    ),
    Setting(
        "interface",
        "auto",
        "How to call the app: auto (detect), asgi3, asgi2 or wsgi.",
        type=click.Choice(INTERFACES),
    ),
    Setting(
        "env_file",
        None,
        "Load environment variables from this file (python-dotenv) before the app.",
        type=_file(),
    ),
    Setting(
        "log_config",
        LOGGING_CONFIG,
        "Logging configuration file: .json, .yaml/.yml or .ini/.conf. Replaces the default "
        "configuration.",
        type=_file(),
        cli_default=None,
        doc_default="built-in configuration",
    ),
    Setting(
        "log_level",
        None,
        "Log level: critical, error, warning, info, debug or trace (every ASGI message).",
        type=click.Choice(list(LOG_LEVELS)),
        doc_default="info",
    ),
    Setting("access_log", True, "Log one line per response.", flag="switch"),
    Setting(
        "use_colors",
        None,
        "Colour the log output; by default only when writing to a terminal.",
        flag="switch",
        doc_default="on a terminal",
    ),
    Setting(
        "proxy_headers",
        True,
        "Take the client address and scheme from X-Forwarded-For and X-Forwarded-Proto "
        "sent by the trusted peers of --forwarded-allow-ips.",
        flag="switch",
    ),
    Setting("server_header", True, "Add a 'server: tricorn' header to responses.", flag="switch"),
    Setting("date_header", True, "Add a 'date' header to responses.", flag="switch"),
    Setting(
        "forwarded_allow_ips",
        None,
        "Comma-separated peers trusted to send proxy headers: IP addresses, networks "
        "(CIDR), literals such as a UNIX socket path, or '*' for everyone. "
        "$FORWARDED_ALLOW_IPS when set, else '127.0.0.1,::1'.",
        extra_env=("FORWARDED_ALLOW_IPS",),
        doc_default="$FORWARDED_ALLOW_IPS or 127.0.0.1,::1",
    ),
    Setting(
        "root_path",
        "",
        "The URL prefix the app is mounted under behind a proxy (ASGI 'root_path').",
    ),
    Setting(
        "limit_concurrency",
        None,
        "Answer 503 once this many connections or requests are in flight.",
        type=_COUNT,
    ),
    Setting("backlog", 2048, "Length of the queue of connections not yet accepted.", type=_COUNT),
    Setting(
        "limit_max_requests",
        None,
        "Stop gracefully after serving this many requests.",
        type=_COUNT,
    ),
    Setting(
        "limit_max_requests_jitter",
        0,
        "Add a random 0..N to --limit-max-requests so workers do not all restart together.",
        type=_COUNT,
    ),
    Setting(
        "limit_max_memory",
        None,
        "Recycle a worker whose resident memory (RSS, read with psutil) exceeds this many "
        "MiB: the master starts its replacement first, then drains it. Runs the master.",
        type=click.IntRange(min=1),
        metavar="MIB",
    ),
    Setting(
        "worker_lifetime",
        None,
        "Recycle each worker after this many seconds (plus up to 10% jitter), replacement "
        "first. Runs the master.",
        type=click.FloatRange(min=0, min_open=True),
        metavar="SECONDS",
    ),
    Setting(
        "timeout_keep_alive",
        5,
        "Close an idle keep-alive connection after this many seconds.",
        type=_COUNT,
    ),
    Setting(
        "timeout_graceful_shutdown",
        None,
        "On shutdown, cancel requests still running after this many seconds.",
        type=_COUNT,
        doc_default="no limit",
    ),
    Setting(
        "timeout_worker_healthcheck",
        5,
        "Seconds a worker may go without answering the master's health check.",
        type=_COUNT,
    ),
    Setting("ssl_keyfile", None, "TLS private key file (PEM).", type=_file()),
    Setting("ssl_certfile", None, "TLS certificate chain file (PEM).", type=_file()),
    Setting("ssl_keyfile_password", None, "Password of an encrypted --ssl-keyfile."),
    Setting(
        "ssl_version",
        int(ssl.PROTOCOL_TLS_SERVER),
        "TLS protocol constant of the ssl module (default PROTOCOL_TLS_SERVER).",
        type=int,
    ),
    Setting(
        "ssl_cert_reqs",
        int(ssl.CERT_NONE),
        "Client certificates: 0 none, 1 optional, 2 required (ssl.CERT_* values).",
        type=click.IntRange(0, 2),
    ),
    Setting(
        "ssl_ca_certs",
        None,
        "CA certificates used to verify client certificates.",
        type=_file(),
    ),
    Setting(
        "ssl_ciphers",
        None,
        "OpenSSL cipher list; OpenSSL's secure defaults when not given.",
        doc_default="OpenSSL defaults",
    ),
    Setting(
        "headers",
        None,
        "Extra response header as 'Name:Value' (repeatable); replaces a default header "
        "of the same name.",
        type=HeaderType(),
        opt="--header",
        multiple=True,
    ),
    Setting(
        "app_dir",
        None,
        "Directory put first on sys.path before importing APP; the working directory by default.",
        cli_default="",
        doc_default="current directory",
    ),
    Setting(
        "h11_max_incomplete_event_size",
        None,
        "With h11, the most bytes of an incomplete request head buffered.",
        type=_COUNT,
        doc_default="h11's default (16 KiB)",
    ),
    # The pre-fork master's own settings (tricorn.master reads them).
    Setting(
        "bind",
        None,
        "Listen on ADDR: HOST:PORT, [IPv6]:PORT, unix:PATH or fd://N (repeatable: one server "
        "listens on every address given). Replaces --host/--port. Several run the master.",
        type=BindType(),
        multiple=True,
        metavar="ADDR",
    ),
    Setting(
        "pid",
        None,
        "Write the master's pid to this file (refused when a running process owns it; "
        "removed on exit; USR2 moves the old master's to PATH.oldbin). Runs the master.",
        metavar="PATH",
    ),
    Setting(
        "preload",
        False,
        "Import the app once in the master before forking the workers (memory shared "
        "copy-on-write; HUP then does not load new code). Runs the master.",
        flag="flag",
    ),
    Setting(
        "reuse_port",
        False,
        "Give each worker its own SO_REUSEPORT listener, so the kernel spreads connections "
        "evenly. Runs the master.",
        flag="flag",
    ),
    Setting(
        "name",
        None,
        "Name shown in the process titles (tricorn: master [NAME]); the APP by default.",
        doc_default="APP",
    ),
    Setting(
        "reset_contextvars",
        False,
        "Run each request in a fresh contextvars.Context (context set during lifespan is "
        "not seen).",
        flag="flag",
    ),
    Setting(
        "factory",
        False,
        "APP names a function that takes no arguments and returns the ASGI app.",
        flag="flag",
    ),
    # Python API only (callables, or uvicorn keywords without a flag).
    Setting("timeout_notify", 30, "Seconds between worker notifications.", type=_COUNT, cli=False),
    Setting(
        "callback_notify",
        None,
        "Coroutine function awaited periodically by the server (uvicorn API).",
        cli=False,
    ),
    Setting(
        "ssl_context_factory",
        None,
        "Callable (config, default_factory) -> ssl.SSLContext building the TLS context.",
        cli=False,
    ),
)

BY_NAME: dict[str, Setting] = {setting.name: setting for setting in SETTINGS}
CLI_SETTINGS: tuple[Setting, ...] = tuple(setting for setting in SETTINGS if setting.cli)


def _doc_default(setting: Setting) -> str:
    if setting.doc_default is not None:
        return setting.doc_default
    default = setting.default
    if setting.flag != "value":
        return "on" if default else "off"
    if default is None or default == "":
        return "-"
    return str(default)


def render_settings_doc() -> str:
    """The text of docs/settings.md (kept current by scripts/gen_settings_doc.py)."""
    lines = [
        "# Settings",
        "",
        "<!-- Generated by scripts/gen_settings_doc.py from tricorn/settings.py; do not edit. -->",
        "",
        "Every setting is a `tricorn` command line option, a `TRICORN_<NAME>` environment",
        "variable and a keyword of `tricorn.Config` / `tricorn.run` of the same name. A",
        "command line option beats the environment. The app itself is the `APP` argument",
        "(`module:attribute`) or `$TRICORN_APP`. Names and meanings are uvicorn's.",
        "",
        "| option | environment | `Config` keyword | default | meaning |",
        "|---|---|---|---|---|",
    ]
    for setting in CLI_SETTINGS:
        option = f"`{setting.flag_name}`"
        if setting.flag == "switch":
            option = f"`{setting.flag_name}` / `--no-{setting.flag_name[2:]}`"
        env = ", ".join(f"`{name}`" for name in setting.env)
        meaning = setting.help
        lines.append(
            f"| {option} | {env} | `{setting.name}` | {_doc_default(setting)} | {meaning} |"
        )
    lines += [
        "",
        "## Python API only",
        "",
        "| `Config` keyword | default | meaning |",
        "|---|---|---|",
    ]
    for setting in SETTINGS:
        if not setting.cli:
            lines.append(f"| `{setting.name}` | {_doc_default(setting)} | {setting.help} |")
    lines.append("")
    return "\n".join(lines)
