"""``Config``: every setting of a Tricorn server, checked, plus what ``load()`` derives.

Rules: ``Config(...)`` takes uvicorn 0.54's keywords (the table in ``tricorn.settings`` is
the one definition of names, defaults and checks), validates them before anything starts,
configures logging and loads ``env_file``. ``load()`` imports the app and resolves the
protocol, lifespan and TLS pieces; what it cannot set up because of the user raises
``ConfigError`` with one line to show. Protocol and lifespan modules are imported lazily
by import string so that this module stays importable on its own.
"""

from __future__ import annotations

import asyncio
import copy
import inspect
import json
import logging
import logging.config
import os
import socket
import ssl
import sys
from collections.abc import Awaitable, Callable
from configparser import RawConfigParser
from typing import IO, Any, Literal

from tricorn.importer import ImportFromStringError, import_from_string
from tricorn.logs import LOG_LEVELS, LOGGING_CONFIG, TRACE_LOG_LEVEL
from tricorn.net.listeners import inherits_sockets
from tricorn.net.sockets import (
    BindError,
    BindSpec,
    bind_tcp,
    bind_unix,
    parse_bind,
    socket_from_fd,
    strerror,
    tcp_address,
)
from tricorn.settings import BY_NAME, ConfigError
from tricorn.tls import default_context, server_context

__all__ = ["Config", "ConfigError", "LOGGING_CONFIG", "STARTUP_FAILURE", "SSL_PROTOCOL_VERSION"]

STARTUP_FAILURE = 3
# The pre-fork master's drain bound when --timeout-graceful-shutdown is unset: a master
# never waits without a bound, and its workers must finish within the same one.
DEFAULT_GRACEFUL_TIMEOUT = 30.0
"""Exit status of a server that could not start (app import, lifespan startup, bind)."""

SSL_PROTOCOL_VERSION: int = ssl.PROTOCOL_TLS_SERVER

# Backend name -> (library it needs, protocol class). "auto" takes the first installed.
# They are named by import string: the protocols sit above the config (they read it).
HTTP_PROTOCOLS: dict[str, tuple[str, str]] = {
    "httptools": ("httptools", "tricorn.protocols.http1.httptools_impl:HTTPToolsProtocol"),
    "h11": ("h11", "tricorn.protocols.http1.h11_impl:H11Protocol"),
}
WS_PROTOCOLS: dict[str, tuple[str, str]] = {
    "websockets": ("websockets", "tricorn.protocols.websocket.websockets_impl:WebSocketsCodec"),
    # uvicorn's "websockets-sansio": ours is sans-I/O already, so it is the same backend.
    "websockets-sansio": (
        "websockets",
        "tricorn.protocols.websocket.websockets_impl:WebSocketsCodec",
    ),
    "wsproto": ("wsproto", "tricorn.protocols.websocket.wsproto_impl:WSProtoCodec"),
}
LIFESPAN: dict[str, str] = {
    "auto": "tricorn.worker.lifespan:LifespanOn",
    "on": "tricorn.worker.lifespan:LifespanOn",
    "off": "tricorn.worker.lifespan:LifespanOff",
}
LOG_CONFIG_FORMATS = (".json", ".yaml", ".yml", ".ini", ".conf", ".cfg")

logger = logging.getLogger("tricorn.error")

SSLContextFactory = Callable[["Config", Callable[[], ssl.SSLContext]], ssl.SSLContext]


class Config:
    """The settings of one server. Pass it to ``tricorn.Server`` (or use ``tricorn.run``).

    Keywords, defaults and meanings are uvicorn's (see docs/settings.md); ``app`` is an
    ASGI app, a WSGI app, a factory (with ``factory=True``) or a ``"module:attr"`` string.
    Bad values raise ``ConfigError`` here, before anything starts. Creating a Config
    applies its logging configuration and loads ``env_file`` into ``os.environ``.
    Call ``load()`` (the server does) to import the app and resolve the protocol classes.
    """

    def __init__(
        self,
        app: Any,
        host: str = "127.0.0.1",
        port: int = 8000,
        uds: str | None = None,
        fd: int | None = None,
        loop: str | Callable[..., Any] = "auto",
        http: type[asyncio.Protocol] | str = "auto",
        http2: bool = False,
        ws: type[Any] | str = "auto",
        ws_max_size: int = 16 * 1024 * 1024,
        ws_max_queue: int = 32,
        ws_ping_interval: float | None = 20.0,
        ws_ping_timeout: float | None = 20.0,
        ws_per_message_deflate: bool = True,
        lifespan: Literal["auto", "on", "off"] | str = "auto",
        env_file: str | os.PathLike[str] | None = None,
        log_config: dict[str, Any]
        | str
        | os.PathLike[str]
        | RawConfigParser
        | IO[Any]
        | None = LOGGING_CONFIG,
        log_level: str | int | None = None,
        access_log: bool = True,
        use_colors: bool | None = None,
        interface: Literal["auto", "asgi3", "asgi2", "wsgi"] | str = "auto",
        reload: bool = False,
        reload_dirs: list[str] | str | None = None,
        reload_delay: float = 0.25,
        reload_includes: list[str] | str | None = None,
        reload_excludes: list[str] | str | None = None,
        workers: int | None = None,
        proxy_headers: bool = True,
        server_header: bool = True,
        date_header: bool = True,
        forwarded_allow_ips: list[str] | str | None = None,
        root_path: str = "",
        limit_concurrency: int | None = None,
        limit_max_requests: int | None = None,
        limit_max_requests_jitter: int = 0,
        backlog: int = 2048,
        timeout_keep_alive: int = 5,
        timeout_notify: int = 30,
        timeout_graceful_shutdown: int | None = None,
        timeout_worker_healthcheck: int = 5,
        callback_notify: Callable[..., Awaitable[None]] | None = None,
        ssl_keyfile: str | os.PathLike[str] | None = None,
        ssl_certfile: str | os.PathLike[str] | None = None,
        ssl_keyfile_password: str | None = None,
        ssl_version: int = SSL_PROTOCOL_VERSION,
        ssl_cert_reqs: int = ssl.CERT_NONE,
        ssl_ca_certs: str | os.PathLike[str] | None = None,
        ssl_ciphers: str | None = None,
        ssl_context_factory: SSLContextFactory | None = None,
        headers: list[tuple[str, str]] | None = None,
        factory: bool = False,
        h11_max_incomplete_event_size: int | None = None,
        reset_contextvars: bool = False,
        app_dir: str | None = None,
        bind: list[str] | str | None = None,
        pid: str | os.PathLike[str] | None = None,
        preload: bool = False,
        reuse_port: bool = False,
        name: str | None = None,
        limit_max_memory: int | None = None,
        worker_lifetime: float | None = None,
    ) -> None:
        if isinstance(bind, str):
            bind = [bind]
        given = dict(locals())
        del given["self"], given["app"], given["log_config"], given["log_level"]
        checked = {name: BY_NAME[name].check(value) for name, value in given.items()}
        for name, value in checked.items():
            reason = BY_NAME[name].refusal(value)
            if reason is not None:
                raise ConfigError(reason)

        self.app = app
        self.host: str = checked["host"]
        self.port: int = checked["port"]
        self.uds: str | None = checked["uds"]
        self.fd: int | None = checked["fd"]
        self.loop: str | Callable[..., Any] = checked["loop"]
        self.http: type[asyncio.Protocol] | str = checked["http"]
        self.http2: bool = checked["http2"]
        self.ws: type[Any] | str = checked["ws"]
        self.ws_max_size: int = checked["ws_max_size"]
        self.ws_max_queue: int = checked["ws_max_queue"]
        self.ws_ping_interval: float | None = checked["ws_ping_interval"]
        self.ws_ping_timeout: float | None = checked["ws_ping_timeout"]
        self.ws_per_message_deflate: bool = checked["ws_per_message_deflate"]
        self.lifespan: str = checked["lifespan"]
        self.env_file: str | None = checked["env_file"]
        self.log_config = log_config
        self.log_level: str | int | None = log_level
        self.access_log: bool = checked["access_log"]
        self.use_colors: bool | None = checked["use_colors"]
        self.interface: str = checked["interface"]
        self.reload: bool = checked["reload"]
        self.reload_dirs: list[str] = _as_list(checked["reload_dirs"])
        self.reload_delay: float = checked["reload_delay"]
        self.reload_includes: list[str] = _as_list(checked["reload_includes"])
        self.reload_excludes: list[str] = _as_list(checked["reload_excludes"])
        self.workers: int = checked["workers"] or 1
        self.proxy_headers: bool = checked["proxy_headers"]
        self.server_header: bool = checked["server_header"]
        self.date_header: bool = checked["date_header"]
        self.root_path: str = checked["root_path"]
        self.limit_concurrency: int | None = checked["limit_concurrency"]
        self.limit_max_requests: int | None = checked["limit_max_requests"]
        self.limit_max_requests_jitter: int = checked["limit_max_requests_jitter"]
        self.backlog: int = checked["backlog"]
        self.timeout_keep_alive: int = checked["timeout_keep_alive"]
        self.timeout_notify: int = checked["timeout_notify"]
        self.timeout_graceful_shutdown: int | None = checked["timeout_graceful_shutdown"]
        self.timeout_worker_healthcheck: int = checked["timeout_worker_healthcheck"]
        self.callback_notify = callback_notify
        self.ssl_keyfile: str | None = checked["ssl_keyfile"]
        self.ssl_certfile: str | None = checked["ssl_certfile"]
        self.ssl_keyfile_password: str | None = checked["ssl_keyfile_password"]
        self.ssl_version: int = checked["ssl_version"]
        self.ssl_cert_reqs: int = checked["ssl_cert_reqs"]
        self.ssl_ca_certs: str | None = checked["ssl_ca_certs"]
        self.ssl_ciphers: str | None = checked["ssl_ciphers"]
        self.ssl_context_factory = ssl_context_factory
        self.headers: list[tuple[str, str]] = list(checked["headers"] or [])
        self.encoded_headers: list[tuple[bytes, bytes]] = []
        self.factory: bool = checked["factory"]
        self.h11_max_incomplete_event_size: int | None = checked["h11_max_incomplete_event_size"]
        self.reset_contextvars: bool = checked["reset_contextvars"]
        self.app_dir: str | None = app_dir
        # The pre-fork master's settings (tricorn.master).
        self.bind: list[str] = _as_list(checked["bind"])
        self.pid: str | None = checked["pid"]
        self.preload: bool = checked["preload"]
        self.reuse_port: bool = checked["reuse_port"]
        self.name: str | None = checked["name"]
        self.limit_max_memory: int | None = checked["limit_max_memory"]
        self.worker_lifetime: float | None = checked["worker_lifetime"]

        self._check_combinations()
        self._check_log_settings()

        if workers is None and "WEB_CONCURRENCY" in os.environ:
            self.workers = _env_int("WEB_CONCURRENCY", "--workers")
        self.forwarded_allow_ips: list[str] | str
        if forwarded_allow_ips is None:
            self.forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1,::1")
        else:
            self.forwarded_allow_ips = forwarded_allow_ips

        self.loaded = False
        self.loaded_app: Any = None
        # The HTTP/1.1 connection class of --http, and the frame codec class of --ws.
        self.http_protocol_class: Any = None
        self.ws_protocol_class: type[Any] | None = None
        self.lifespan_class: Any = None
        self.ssl: ssl.SSLContext | None = None

        self.configure_logging()
        if self.env_file is not None:
            self._load_env_file(self.env_file)
        if self.reload and self.workers > 1:
            logger.warning('"workers" flag is ignored when reloading is enabled.')
        if not self.reload and (self.reload_dirs or self.reload_includes or self.reload_excludes):
            logger.warning(
                "--reload-dir, --reload-include and --reload-exclude do nothing without --reload."
            )

    # -- checks -------------------------------------------------------------------------

    def _check_combinations(self) -> None:
        if self.uds is not None and self.fd is not None:
            raise ConfigError("--uds and --fd cannot be used together: choose one listener.")
        if self.ssl_keyfile and not self.ssl_certfile:
            raise ConfigError(
                f"--ssl-keyfile {self.ssl_keyfile} needs --ssl-certfile (the certificate)."
            )
        if self.ssl_ca_certs and not self.ssl_certfile and self.ssl_context_factory is None:
            raise ConfigError("--ssl-ca-certs needs --ssl-certfile (TLS is off without it).")

    def _check_log_settings(self) -> None:
        level = self.log_level
        if isinstance(level, str) and level.lower() not in LOG_LEVELS:
            names = ", ".join(repr(name) for name in LOG_LEVELS)
            raise ConfigError(f"Invalid value for '--log-level': {level!r} is not one of {names}.")
        if isinstance(level, bool) or not (level is None or isinstance(level, (str, int))):
            raise ConfigError(f"Invalid value for '--log-level': {level!r}.")
        log_config = self.log_config
        if isinstance(log_config, os.PathLike):
            log_config = self.log_config = os.fspath(log_config)
        if isinstance(log_config, str):
            BY_NAME["log_config"].check(log_config)  # exists, is a file
            if not log_config.lower().endswith(LOG_CONFIG_FORMATS):
                raise ConfigError(
                    f"Invalid value for '--log-config': {log_config!r} has an unknown format; "
                    "use a .json, .yaml, .yml, .ini or .conf file."
                )

    # -- logging and environment ---------------------------------------------------------

    def configure_logging(self) -> None:
        """Apply ``log_config``, then ``log_level``, ``use_colors`` and ``access_log``."""
        log_config = self.log_config
        try:
            if isinstance(log_config, dict):
                log_config = copy.deepcopy(log_config)  # never change the caller's dict
                if self.use_colors is not None:
                    for formatter in log_config.get("formatters", {}).values():
                        if str(formatter.get("()", "")).startswith("tricorn.logs."):
                            formatter["use_colors"] = self.use_colors
                logging.config.dictConfig(log_config)
            elif isinstance(log_config, str) and log_config.lower().endswith(".json"):
                with open(log_config) as file:
                    logging.config.dictConfig(json.load(file))
            elif isinstance(log_config, str) and log_config.lower().endswith((".yaml", ".yml")):
                try:
                    import yaml
                except ImportError:
                    raise ConfigError(
                        f"--log-config {log_config}: YAML needs PyYAML "
                        "(pip install PyYAML, or tricorn[standard])."
                    ) from None
                with open(log_config) as file:
                    logging.config.dictConfig(yaml.safe_load(file))
            elif log_config is not None:
                logging.config.fileConfig(log_config, disable_existing_loggers=False)
        except ConfigError:
            raise
        except Exception as exc:  # malformed file: name it, no traceback
            where = log_config if isinstance(log_config, str) else type(log_config).__name__
            raise ConfigError(
                f"--log-config {where}: cannot apply it: {type(exc).__name__}: {exc}"
            ) from None

        if self.log_level is not None:
            level = self.log_level
            if isinstance(level, str):
                level = LOG_LEVELS[level.lower()]
            for name in ("tricorn.error", "tricorn.access", "tricorn.asgi"):
                logging.getLogger(name).setLevel(level)
        if not self.access_log:
            access = logging.getLogger("tricorn.access")
            access.handlers = []
            access.propagate = False
            # The protocol checks isEnabledFor once per connection: make that False too.
            access.setLevel(logging.CRITICAL + 1)

    def _load_env_file(self, path: str) -> None:
        try:
            from dotenv import load_dotenv
        except ImportError:
            raise ConfigError(
                f"--env-file {path}: needs python-dotenv "
                "(pip install python-dotenv, or tricorn[standard])."
            ) from None
        logger.info("Loading environment from '%s'", path)
        load_dotenv(dotenv_path=path)

    # -- derived properties --------------------------------------------------------------

    @property
    def asgi_version(self) -> Literal["2.0", "3.0"]:
        """The ASGI version the app speaks ("2.0" only for ``interface="asgi2"``)."""
        return "2.0" if self.interface == "asgi2" else "3.0"

    @property
    def is_ssl(self) -> bool:
        return bool(self.ssl_keyfile or self.ssl_certfile or self.ssl_context_factory)

    @property
    def use_subprocess(self) -> bool:
        return bool(self.reload or self.workers > 1)

    @property
    def needs_master(self) -> bool:
        """Whether serving this config takes the pre-fork master (``tricorn.master``).

        True for --reload, several workers and for what only the master does: ``pid``,
        ``limit_max_memory``, ``worker_lifetime``, ``preload``, ``reuse_port``, several
        ``bind``, systemd socket activation (``LISTEN_FDS`` for this process) and a master
        started by another one's USR2. Otherwise one process serves, like uvicorn.
        """
        if self.reload or self.workers > 1 or len(self.bind) > 1:
            return True
        if self.pid or self.preload or self.reuse_port:
            return True
        if self.limit_max_memory is not None or self.worker_lifetime is not None:
            return True
        return inherits_sockets(os.environ, os.getpid())

    @property
    def should_reload(self) -> bool:
        return isinstance(self.app, str) and self.reload

    # -- load ------------------------------------------------------------------------------

    def load(self) -> None:
        """Import the app and resolve protocol, lifespan, TLS and headers (idempotent).

        Raises ``ConfigError`` (one line) when the app cannot be loaded (exit_code 3) or a
        setting cannot be honoured on this machine (a backend library missing, bad TLS
        files).
        """
        if self.loaded:
            return
        self.http_protocol_class = self._backend_class(self.http, "--http", HTTP_PROTOCOLS)
        self.ws_protocol_class = (
            None if self.ws == "none" else self._backend_class(self.ws, "--ws", WS_PROTOCOLS)
        )
        self.lifespan_class = self._import_setting(LIFESPAN[self.lifespan], "--lifespan")
        self.ssl = server_context(self)
        self.encoded_headers = [
            (name.lower().encode("latin-1"), value.encode("latin-1"))
            for name, value in self.headers
        ]
        self.loaded_app = self.load_app()
        self.loaded = True

    def _import_setting(self, import_str: str, option: str) -> Any:
        try:
            return import_from_string(import_str)
        except ImportFromStringError as exc:
            raise ConfigError(f"{option} {import_str}: {exc}") from None

    def _backend_class(self, value: Any, option: str, backends: dict[str, tuple[str, str]]) -> Any:
        """Resolve ``--http``/``--ws``: a class, a backend name, "auto" or an import string.

        "auto" picks the first backend whose library is installed (None when none is: WebSockets
        are then refused with a warning, HTTP always has h11).
        """
        if not isinstance(value, str):
            return value
        if value == "auto":
            for library, target in backends.values():
                if _installed(library):
                    return self._import_setting(target, option)
            return None
        if value in backends:
            library, target = backends[value]
            if not _installed(library):
                raise ConfigError(
                    f"{option} {value}: the {library} package is not installed "
                    f"(pip install {library}, or use {option} auto)."
                )
            return self._import_setting(target, option)
        return self._import_setting(value, option)

    def load_app(self) -> Any:
        """Import and adapt the app: the ASGI 3 callable the server will call."""
        if self.app_dir is not None and self.app_dir not in sys.path:
            sys.path.insert(0, self.app_dir)
        try:
            app = import_from_string(self.app)
        except ImportFromStringError as exc:
            raise ConfigError(f"Error loading ASGI app. {exc}", STARTUP_FAILURE) from None

        if self.factory:
            try:
                app = app()
            except Exception as exc:
                raise ConfigError(
                    f"Error loading ASGI app factory: {type(exc).__name__}: {exc}",
                    STARTUP_FAILURE,
                ) from None
        elif _looks_like_factory(app):
            logger.warning(
                "ASGI app factory detected. Using it, but please consider setting the "
                "--factory flag explicitly."
            )
            app = app()

        if self.interface == "auto":
            self.interface = detect_interface(app)
        if self.interface == "wsgi":
            from tricorn.middleware.wsgi import WSGIMiddleware

            app = WSGIMiddleware(app)
            self.ws_protocol_class = None
        elif self.interface == "asgi2":
            from tricorn.middleware.asgi2 import ASGI2Middleware

            app = ASGI2Middleware(app)

        if logger.getEffectiveLevel() <= TRACE_LOG_LEVEL:
            from tricorn.middleware.message_logger import MessageLoggerMiddleware

            app = MessageLoggerMiddleware(app)
        if self.proxy_headers:
            from tricorn.middleware.proxy_headers import ProxyHeadersMiddleware

            app = ProxyHeadersMiddleware(app, trusted_hosts=self.forwarded_allow_ips)
        return app

    # -- TLS (tricorn.tls) ----------------------------------------------------------------

    def default_ssl_context(self) -> ssl.SSLContext:
        """The TLS context built from the ``ssl_*`` settings (needs ``ssl_certfile``)."""
        return default_context(self)

    # -- event loop and sockets --------------------------------------------------------------

    def get_loop_factory(self) -> Callable[[], asyncio.AbstractEventLoop] | None:
        """What creates the server's event loop: uvloop for "auto" when installed."""
        loop = self.loop
        if not isinstance(loop, str):
            return loop
        if loop == "none":
            return None
        if loop == "asyncio" or (loop == "auto" and not _installed("uvloop")):
            return asyncio.SelectorEventLoop if sys.platform == "win32" else asyncio.new_event_loop
        if loop in ("auto", "uvloop"):
            try:
                import uvloop
            except ImportError:
                raise ConfigError(
                    "--loop uvloop: the uvloop package is not installed "
                    "(pip install uvloop, or use --loop auto)."
                ) from None
            factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
            return factory
        imported: Callable[[], asyncio.AbstractEventLoop] = self._import_setting(loop, "--loop")
        return imported

    def bind_specs(self) -> list[BindSpec]:
        """Where to listen: every ``bind``, plus ``uds`` and ``fd``; else ``host:port``."""
        specs = [parse_bind(value) for value in self.bind]
        if self.uds:
            specs.append(BindSpec("unix", path=self.uds))
        if self.fd is not None:
            specs.append(BindSpec("fd", fd=self.fd))
        if not specs:
            specs.append(BindSpec("tcp", host=self.host, port=self.port))
        return specs

    def bind_socket(self) -> socket.socket:
        """The single-process server's socket for --uds, --fd or --host/--port: bound, not
        yet listening, inheritable.

        Raises ``ConfigError`` (exit_code 3) with one line naming the option when it cannot
        be had.
        """
        try:
            if self.uds is not None:
                sock = bind_unix(self.uds)
            elif self.fd is not None:
                sock = socket_from_fd(self.fd, "--fd", dup=True)
            else:
                sock = bind_tcp(self.host, self.port)
        except BindError as exc:
            raise ConfigError(self._bind_message(exc), STARTUP_FAILURE) from None
        sock.set_inheritable(True)
        return sock

    def _bind_message(self, exc: BindError) -> str:
        # uvicorn's wording: "[Errno 98] could not bind on 127.0.0.1:8000 (--host/--port): ..."
        error = exc.error
        if self.uds is not None:
            if error is None:
                return f"--uds {self.uds}: {exc.reason}."
            where = f"unix socket {self.uds} (--uds)"
        elif self.fd is not None:
            if error is None:
                return f"--fd {self.fd}: {exc.reason}."
            return f"{_errno(error)}--fd {self.fd}: not an open socket: {_lower_first(error)}"
        else:
            where = f"{tcp_address(self.host, self.port)} (--host/--port)"
        if error is None:
            return str(exc)
        return f"{_errno(error)}could not bind on {where}: {_lower_first(error)}"


def _errno(exc: BaseException) -> str:
    number = getattr(exc, "errno", None)
    return f"[Errno {number}] " if number else ""


def _lower_first(exc: BaseException) -> str:
    text = strerror(exc)
    return text[:1].lower() + text[1:]


def _as_list(value: list[str] | tuple[str, ...] | str | None) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return list(value)


def _env_int(name: str, option: str) -> int:
    raw = os.environ[name]
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(
            f"Invalid value for {option} from ${name}: {raw!r} is not an integer."
        ) from None
    if value < 1:
        raise ConfigError(f"Invalid value for {option} from ${name}: {value} is less than 1.")
    return value


def _installed(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def _is_coroutine_callable(obj: Any) -> bool:
    if inspect.iscoroutinefunction(obj):
        return True
    call = getattr(obj, "__call__", None)  # noqa: B004 (we want the method itself)
    return call is not None and inspect.iscoroutinefunction(call)


def _required_positional(obj: Any) -> int | None:
    try:
        signature = inspect.signature(obj)
    except (TypeError, ValueError):
        return None
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return sum(
        1
        for param in signature.parameters.values()
        if param.kind in kinds and param.default is inspect.Parameter.empty
    )


def _looks_like_factory(app: Any) -> bool:
    # A plain callable needing no argument cannot be an ASGI or WSGI app: it is a factory.
    if inspect.isclass(app) or not callable(app) or _is_coroutine_callable(app):
        return False
    return _required_positional(app) == 0


def detect_interface(app: Any) -> Literal["asgi3", "asgi2", "wsgi"]:
    """Guess how ``app`` is called, as uvicorn does, and recognise WSGI callables.

    A class is ASGI 3 when its instances are awaitable, else ASGI 2 (``App(scope)``); a
    coroutine function or an object with an ``async __call__`` is ASGI 3; another callable
    taking exactly two arguments is WSGI (``environ, start_response``); the rest ASGI 2.
    """
    if inspect.isclass(app):
        return "asgi3" if hasattr(app, "__await__") else "asgi2"
    if _is_coroutine_callable(app):
        return "asgi3"
    if _required_positional(app) == 2:
        return "wsgi"
    return "asgi2"
