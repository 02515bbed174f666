"""Config: validation from the settings table, load(), TLS, sockets, logging, environment."""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import os
import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tricorn import config as config_module
from tricorn.config import STARTUP_FAILURE, Config, ConfigError, detect_interface
from tricorn.logs import LOGGING_CONFIG, TRACE_LOG_LEVEL
from tricorn.middleware.asgi2 import ASGI2Middleware
from tricorn.middleware.message_logger import MessageLoggerMiddleware
from tricorn.middleware.proxy_headers import ProxyHeadersMiddleware
from tricorn.middleware.wsgi import WSGIMiddleware
from tricorn.settings import SETTINGS, render_settings_doc

ROOT = Path(__file__).resolve().parent.parent
LOGGER_NAMES = ("tricorn", "tricorn.error", "tricorn.access", "tricorn.asgi")


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """Config() configures logging globally: put the tricorn loggers back afterwards."""
    saved = []
    for name in LOGGER_NAMES:
        log = logging.getLogger(name)
        saved.append((log, list(log.handlers), log.level, log.propagate, log.disabled))
    yield
    for log, handlers, level, propagate, disabled in saved:
        log.handlers = handlers
        log.setLevel(level)
        log.propagate = propagate
        log.disabled = disabled


async def asgi3_app(scope: Any, receive: Any, send: Any) -> None:
    pass


class ASGI2App:
    def __init__(self, scope: Any) -> None:
        self.scope = scope

    async def __call__(self, receive: Any, send: Any) -> None:
        pass


class ASGI3Instance:
    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        pass


def wsgi_app(environ: Any, start_response: Any) -> list[bytes]:
    start_response("200 OK", [])
    return [b""]


def make_config(**settings: Any) -> Config:
    settings.setdefault("log_config", None)
    return Config(asgi3_app, **settings)


# -- one definition -----------------------------------------------------------------------


def test_config_defaults_are_the_settings_table_defaults() -> None:
    parameters = inspect.signature(Config.__init__).parameters
    names = [name for name in parameters if name not in ("self", "app")]
    assert sorted(names) == sorted(setting.name for setting in SETTINGS)
    for setting in SETTINGS:
        assert parameters[setting.name].default == setting.default, setting.name


def test_every_setting_is_an_attribute() -> None:
    config = make_config()
    for setting in SETTINGS:
        assert hasattr(config, setting.name), setting.name


def test_settings_doc_is_current() -> None:
    doc = (ROOT / "docs" / "settings.md").read_text(encoding="utf-8")
    assert doc == render_settings_doc(), "run: python scripts/gen_settings_doc.py"
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_settings_doc.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout


def test_settings_doc_lists_every_option_and_env_var() -> None:
    doc = render_settings_doc()
    for setting in SETTINGS:
        assert f"`{setting.name}`" in doc
        if setting.cli:
            assert f"`{setting.flag_name}`" in doc
            assert f"`TRICORN_{setting.name.upper()}`" in doc
    assert "`WEB_CONCURRENCY`" in doc and "`FORWARDED_ALLOW_IPS`" in doc


# -- validation ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "fragment"),
    [
        ({"port": 70000}, "'--port': 70000 is not in the range"),
        ({"port": -1}, "'--port': -1"),
        ({"port": True}, "'--port': True is not a number"),
        ({"timeout_keep_alive": -1}, "'--timeout-keep-alive'"),
        ({"limit_concurrency": -5}, "'--limit-concurrency'"),
        ({"backlog": -1}, "'--backlog'"),
        ({"ws_ping_interval": -1.0}, "'--ws-ping-interval'"),
        ({"loop": "foo"}, "'--loop': 'foo' is not one of"),
        ({"http": "nope"}, "'--http': 'nope' is not one of"),
        ({"ws": "nope"}, "'--ws'"),
        ({"lifespan": "maybe"}, "'--lifespan': 'maybe' is not one of"),
        ({"interface": "asgi4"}, "'--interface'"),
        ({"log_level": "loud"}, "'--log-level': 'loud'"),
        ({"ssl_certfile": "/no/such/cert.pem"}, "'--ssl-certfile': File '/no/such/cert.pem'"),
        ({"ssl_ca_certs": "/no/such/ca.pem"}, "'--ssl-ca-certs'"),
        ({"env_file": "/no/such/.env"}, "'--env-file': File '/no/such/.env' does not exist"),
        ({"log_config": "/no/such/log.json"}, "'--log-config'"),
        ({"headers": [("bad name", "x")]}, "'--header'"),
        ({"headers": ["no-colon"]}, "'--header': 'no-colon' is not a 'Name:Value' header"),
        ({"uds": "/tmp/x.sock", "fd": 3}, "--uds and --fd cannot be used together"),
        ({"ssl_keyfile": __file__}, "--ssl-keyfile"),
        ({"loop": "zuvloop"}, "tricorn does not support --loop zuvloop; use one of: auto"),
        ({"http": "zttp"}, "tricorn does not support --http zttp; use one of: auto, h11"),
        ({"http2": True}, "tricorn does not support --http2"),
    ],
)
def test_bad_values_raise_one_line(settings: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        make_config(**settings)
    message = str(info.value)
    assert fragment in message
    assert "\n" not in message
    assert info.value.exit_code == 1


def test_log_config_with_unknown_format(tmp_path: Path) -> None:
    path = tmp_path / "logging.txt"
    path.write_text("{}")
    with pytest.raises(ConfigError, match=r"'--log-config'.*unknown format"):
        Config(asgi3_app, log_config=str(path))


def test_malformed_log_config_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "logging.json"
    path.write_text("{not json")
    with pytest.raises(ConfigError, match=r"--log-config .*logging.json: cannot apply it"):
        Config(asgi3_app, log_config=str(path))


def test_values_accepted_and_converted() -> None:
    config = make_config(
        port=0,
        headers=[("X-One", "1"), "X-Two: 2"],  # type: ignore[list-item]
        loop="asyncio",
        http="h11",
        ws="none",
        reload_dirs="src",
        forwarded_allow_ips="*",
        workers=1,
    )
    assert config.port == 0
    assert config.headers == [("X-One", "1"), ("X-Two", "2")]
    assert config.reload_dirs == ["src"]
    assert config.forwarded_allow_ips == "*"


def test_import_strings_pass_for_loop_and_http() -> None:
    config = make_config(loop="asyncio:new_event_loop", http="tests.test_config:Dummy")
    assert config.loop == "asyncio:new_event_loop"
    assert config.get_loop_factory() is asyncio.new_event_loop


def test_web_concurrency_and_forwarded_allow_ips_from_env(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("WEB_CONCURRENCY", "4")
    monkeypatch.setenv("FORWARDED_ALLOW_IPS", "10.0.0.0/8")
    config = make_config()
    assert config.workers == 4
    assert config.forwarded_allow_ips == "10.0.0.0/8"
    explicit = make_config(workers=2, forwarded_allow_ips="1.2.3.4")
    assert explicit.workers == 2
    assert explicit.forwarded_allow_ips == "1.2.3.4"
    monkeypatch.setenv("WEB_CONCURRENCY", "many")
    with pytest.raises(ConfigError, match=r"--workers from \$WEB_CONCURRENCY: 'many'"):
        make_config()


def test_forwarded_allow_ips_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FORWARDED_ALLOW_IPS", raising=False)
    monkeypatch.delenv("WEB_CONCURRENCY", raising=False)
    config = make_config()
    assert config.forwarded_allow_ips == "127.0.0.1,::1"
    assert config.workers == 1


def test_env_file_is_loaded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = tmp_path / ".env"
    env.write_text("TRICORN_TEST_FROM_ENV_FILE=yes\n")
    monkeypatch.delenv("TRICORN_TEST_FROM_ENV_FILE", raising=False)
    make_config(env_file=env)
    assert os.environ.pop("TRICORN_TEST_FROM_ENV_FILE") == "yes"


# -- load() ------------------------------------------------------------------------------------


def test_load_sets_everything_and_is_idempotent() -> None:
    config = make_config(http="h11", lifespan="off", headers=[("X-Thing", "v")])
    config.load()
    from tricorn.protocols.http1.h11_impl import H11Protocol
    from tricorn.worker.lifespan import LifespanOff

    assert config.loaded
    assert config.http_protocol_class is H11Protocol
    assert config.ws_protocol_class is not None  # --ws auto picks an installed library
    assert config.lifespan_class is LifespanOff
    assert config.ssl is None
    assert config.encoded_headers == [(b"x-thing", b"v")]
    assert isinstance(config.loaded_app, ProxyHeadersMiddleware)
    assert config.loaded_app.app is asgi3_app
    app = config.loaded_app
    config.load()
    assert config.loaded_app is app


def test_http_auto_prefers_httptools() -> None:
    config = make_config(lifespan="on")
    config.load()
    from tricorn.protocols.http1.httptools_impl import HTTPToolsProtocol
    from tricorn.worker.lifespan import LifespanOn

    assert config.http_protocol_class is HTTPToolsProtocol
    assert config.lifespan_class is LifespanOn


def test_http_auto_without_httptools(monkeypatch: pytest.MonkeyPatch) -> None:
    real = config_module._installed
    monkeypatch.setattr(
        config_module, "_installed", lambda name: name != "httptools" and real(name)
    )
    config = make_config()
    config.load()
    assert config.http_protocol_class.__name__ == "H11Protocol"
    with pytest.raises(ConfigError, match="--http httptools: the httptools package is not"):
        make_config(http="httptools").load()


def test_http_class_is_used_as_is() -> None:
    class Custom(asyncio.Protocol):
        pass

    config = make_config(http=Custom)
    config.load()
    assert config.http_protocol_class is Custom


def test_proxy_headers_off_and_trace_logger() -> None:
    config = make_config(proxy_headers=False, log_level="trace")
    config.load()
    assert isinstance(config.loaded_app, MessageLoggerMiddleware)
    assert config.loaded_app.app is asgi3_app


@pytest.mark.parametrize(
    ("app", "interface"),
    [
        (asgi3_app, "asgi3"),
        (ASGI3Instance(), "asgi3"),
        (ASGI2App, "asgi2"),
        (wsgi_app, "wsgi"),
        (lambda scope: None, "asgi2"),
    ],
)
def test_detect_interface(app: Any, interface: str) -> None:
    assert detect_interface(app) == interface


def test_interface_adapters() -> None:
    config = Config(ASGI2App, log_config=None, proxy_headers=False)
    config.load()
    assert config.interface == "asgi2"
    assert config.asgi_version == "2.0"
    assert isinstance(config.loaded_app, ASGI2Middleware)

    config = Config(wsgi_app, log_config=None, proxy_headers=False)
    config.load()
    assert config.interface == "wsgi"
    assert config.asgi_version == "3.0"
    assert isinstance(config.loaded_app, WSGIMiddleware)
    assert config.ws_protocol_class is None

    # An explicit interface wins over detection.
    config = Config(wsgi_app, log_config=None, proxy_headers=False, interface="asgi3")
    config.load()
    assert config.loaded_app is wsgi_app


def create_app() -> Any:
    return asgi3_app


def broken_factory() -> Any:
    raise RuntimeError("no database")


def test_factory(caplog: pytest.LogCaptureFixture) -> None:
    config = Config("tests.test_config:create_app", factory=True, log_config=None)
    config.load()
    assert config.loaded_app.app is asgi3_app

    with caplog.at_level(logging.WARNING, logger="tricorn.error"):
        config = Config("tests.test_config:create_app", log_config=None)
        config.load()
    assert config.loaded_app.app is asgi3_app
    assert "ASGI app factory detected" in caplog.text

    with pytest.raises(ConfigError) as info:
        Config("tests.test_config:broken_factory", factory=True, log_config=None).load()
    assert str(info.value) == "Error loading ASGI app factory: RuntimeError: no database"
    assert info.value.exit_code == STARTUP_FAILURE


@pytest.mark.parametrize(
    ("app", "message"),
    [
        ("tests.no_such_module:app", 'Could not import module "tests.no_such_module".'),
        ("tests.test_config:nope", 'Attribute "nope" not found in module "tests.test_config".'),
        ("tests.test_config", 'Import string "tests.test_config" must be in format'),
    ],
)
def test_unimportable_app(app: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        Config(app, log_config=None).load()
    assert str(info.value).startswith(f"Error loading ASGI app. {message}")
    assert info.value.exit_code == STARTUP_FAILURE


def test_app_dir(tmp_path: Path) -> None:
    (tmp_path / "h1_app_dir_module.py").write_text(
        "async def app(scope, receive, send):\n    pass\n"
    )
    config = Config("h1_app_dir_module:app", app_dir=str(tmp_path), log_config=None)
    try:
        config.load()
        assert config.loaded_app.app.__module__ == "h1_app_dir_module"
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("h1_app_dir_module", None)


# -- TLS ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    folder = tmp_path_factory.mktemp("tls")
    files = {
        "cert": folder / "cert.pem",
        "key": folder / "key.pem",
        "ca": folder / "ca.pem",
        "chain": folder / "chain.pem",
    }
    cert.cert_chain_pems[0].write_to_path(str(files["cert"]))
    cert.private_key_pem.write_to_path(str(files["key"]))
    ca.cert_pem.write_to_path(str(files["ca"]))
    cert.private_key_and_cert_chain_pem.write_to_path(str(files["chain"]))
    return {name: str(path) for name, path in files.items()}


def test_tls_context(tls_files: dict[str, str]) -> None:
    config = make_config(
        ssl_certfile=tls_files["cert"],
        ssl_keyfile=tls_files["key"],
        ssl_ca_certs=tls_files["ca"],
        ssl_cert_reqs=ssl.CERT_OPTIONAL,
        ssl_ciphers="ECDHE+AESGCM",
    )
    assert config.is_ssl
    config.load()
    assert isinstance(config.ssl, ssl.SSLContext)
    assert config.ssl.verify_mode == ssl.CERT_OPTIONAL

    combined = make_config(ssl_certfile=tls_files["chain"])
    combined.load()
    assert isinstance(combined.ssl, ssl.SSLContext)


def test_tls_errors_are_one_line(tls_files: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match="--ssl-certfile .* cannot load the certificate"):
        make_config(ssl_certfile=tls_files["ca"]).load()  # a certificate without its key
    with pytest.raises(ConfigError, match="--ssl-ciphers NOT-A-CIPHER"):
        make_config(
            ssl_certfile=tls_files["cert"], ssl_keyfile=tls_files["key"], ssl_ciphers="NOT-A-CIPHER"
        ).load()


def test_ssl_context_factory(tls_files: dict[str, str]) -> None:
    seen: list[Config] = []

    def factory(config: Config, default: Any) -> ssl.SSLContext:
        seen.append(config)
        context: ssl.SSLContext = default()
        context.set_alpn_protocols(["http/1.1"])
        return context

    config = make_config(
        ssl_certfile=tls_files["cert"], ssl_keyfile=tls_files["key"], ssl_context_factory=factory
    )
    config.load()
    assert seen == [config]
    assert isinstance(config.ssl, ssl.SSLContext)

    bad = make_config(ssl_context_factory=lambda config, default: "nope")
    assert bad.is_ssl
    with pytest.raises(ConfigError, match="must return an ssl.SSLContext, got str"):
        bad.load()


# -- sockets -----------------------------------------------------------------------------------


def test_bind_tcp_port_zero() -> None:
    with make_config(host="127.0.0.1", port=0).bind_socket() as sock:
        assert sock.family == socket.AF_INET
        assert sock.getsockname()[1] > 0
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR)
        assert sock.get_inheritable()


def test_bind_tcp_ipv6() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 on this machine")
    try:
        sock = make_config(host="::1", port=0).bind_socket()
    except ConfigError as exc:
        pytest.skip(f"IPv6 loopback unavailable: {exc}")
    with sock:
        assert sock.family == socket.AF_INET6


def test_bind_busy_port_is_one_line() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(ConfigError) as info:
            make_config(port=port).bind_socket()
    assert str(info.value) == (
        f"[Errno 98] could not bind on 127.0.0.1:{port} (--host/--port): address already in use"
    )
    assert info.value.exit_code == STARTUP_FAILURE


def test_bind_uds(tmp_path: Path) -> None:
    path = str(tmp_path / "app.sock")
    with make_config(uds=path).bind_socket() as sock:
        assert sock.family == socket.AF_UNIX
        assert os.stat(path).st_mode & 0o777 == 0o666
    # The file is now stale (nobody listens): a new bind replaces it.
    with make_config(uds=path).bind_socket() as sock:
        sock.listen()
        # Now somebody listens: refuse to steal the socket.
        with pytest.raises(ConfigError, match="another server is listening"):
            make_config(uds=path).bind_socket()
    not_a_socket = tmp_path / "file"
    not_a_socket.write_text("")
    with pytest.raises(ConfigError, match="exists and is not a socket"):
        make_config(uds=str(not_a_socket)).bind_socket()


def test_bind_fd() -> None:
    with socket.socket() as original:
        original.bind(("127.0.0.1", 0))
        with make_config(fd=original.fileno()).bind_socket() as sock:
            assert sock.family == socket.AF_INET
            assert sock.getsockname() == original.getsockname()
        os.fstat(original.fileno())  # still open: we worked on a duplicate
    with pytest.raises(ConfigError, match=r"--fd 987: not an open socket"):
        make_config(fd=987).bind_socket()


# -- loop ----------------------------------------------------------------------------------------


def test_loop_factories(monkeypatch: pytest.MonkeyPatch) -> None:
    assert make_config(loop="none").get_loop_factory() is None
    assert make_config(loop="asyncio").get_loop_factory() is asyncio.new_event_loop
    uvloop = pytest.importorskip("uvloop")
    assert make_config(loop="auto").get_loop_factory() is uvloop.new_event_loop
    assert make_config(loop="uvloop").get_loop_factory() is uvloop.new_event_loop
    monkeypatch.setattr(config_module, "_installed", lambda name: False)
    assert make_config(loop="auto").get_loop_factory() is asyncio.new_event_loop
    with pytest.raises(ConfigError, match="--loop no.such:factory"):
        make_config(loop="no.such:factory").get_loop_factory()


# -- logging ---------------------------------------------------------------------------------


def test_default_logging_config_is_not_mutated() -> None:
    before = json.dumps(LOGGING_CONFIG, sort_keys=True)
    Config(asgi3_app, use_colors=False)
    assert json.dumps(LOGGING_CONFIG, sort_keys=True) == before
    handler = logging.getLogger("tricorn").handlers[0]
    assert handler.formatter is not None
    assert handler.formatter.use_colors is False  # type: ignore[attr-defined]


def test_log_level_and_access_log() -> None:
    Config(asgi3_app, log_level="trace", log_config=None)
    assert logging.getLogger("tricorn.error").isEnabledFor(TRACE_LOG_LEVEL)
    assert logging.getLogger("tricorn.asgi").isEnabledFor(TRACE_LOG_LEVEL)
    Config(asgi3_app, log_level=logging.WARNING, log_config=None, access_log=False)
    assert not logging.getLogger("tricorn.error").isEnabledFor(logging.INFO)
    assert not logging.getLogger("tricorn.access").isEnabledFor(logging.CRITICAL)


@pytest.mark.parametrize("suffix", [".json", ".yaml", ".ini"])
def test_log_config_files(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"logging{suffix}"
    if suffix == ".ini":
        path.write_text(
            "[loggers]\nkeys=root,tricorn\n\n[handlers]\nkeys=h\n\n[formatters]\nkeys=f\n\n"
            "[logger_root]\nlevel=WARNING\nhandlers=\n\n"
            "[logger_tricorn]\nlevel=DEBUG\nhandlers=h\nqualname=tricorn\npropagate=0\n\n"
            "[handler_h]\nclass=NullHandler\nformatter=f\nargs=()\n\n"
            "[formatter_f]\nformat=%(message)s\n"
        )
    else:
        data = {
            "version": 1,
            "disable_existing_loggers": False,
            "handlers": {"h": {"class": "logging.NullHandler"}},
            "loggers": {"tricorn": {"handlers": ["h"], "level": "DEBUG", "propagate": False}},
        }
        path.write_text(json.dumps(data))  # JSON is YAML too
    Config(asgi3_app, log_config=str(path))
    tricorn_logger = logging.getLogger("tricorn")
    assert tricorn_logger.level == logging.DEBUG
    assert isinstance(tricorn_logger.handlers[0], logging.NullHandler)


class Dummy(asyncio.Protocol):
    pass
