"""The ``tricorn`` command line: uvicorn's options, environment, one-line errors, a real run."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import click
import httpx
import pytest
from click.testing import CliRunner

import tricorn
from tests.utils import TIME_UNIT, wait_for
from tricorn.cli import main as cli_main
from tricorn.config import Config
from tricorn.logs import LOGGING_CONFIG
from tricorn.settings import CLI_SETTINGS

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable

# `uvicorn --help` of 0.54, option names only (checked against a real uvicorn when found).
UVICORN_OPTIONS = """
--host --port --uds --fd --reload --reload-dir --reload-include --reload-exclude
--reload-delay --workers --loop --http --http2 --ws --ws-max-size --ws-max-queue
--ws-ping-interval --ws-ping-timeout --ws-per-message-deflate --lifespan --interface
--env-file --log-config --log-level --access-log --no-access-log --use-colors
--no-use-colors --proxy-headers --no-proxy-headers --server-header --no-server-header
--date-header --no-date-header --forwarded-allow-ips --root-path --limit-concurrency
--backlog --limit-max-requests --limit-max-requests-jitter --timeout-keep-alive
--timeout-graceful-shutdown --timeout-worker-healthcheck --ssl-keyfile --ssl-certfile
--ssl-keyfile-password --ssl-version --ssl-cert-reqs --ssl-ca-certs --ssl-ciphers --header
--version --app-dir --h11-max-incomplete-event-size --reset-contextvars --factory --help
""".split()  # noqa: SIM905 (easier to compare with --help)


def uvicorn_executable() -> str | None:
    found = shutil.which("uvicorn")
    if found is None and os.path.exists("/tmp/uv/bin/uvicorn"):
        found = "/tmp/uv/bin/uvicorn"
    return found


def tricorn_options() -> set[str]:
    names: set[str] = set()
    for param in cli_main.main.params:
        names.update(param.opts)
        names.update(param.secondary_opts)
    return names | {"--help"}


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("TRICORN_")}
    full_env.pop("WEB_CONCURRENCY", None)
    full_env.update(env or {})
    return subprocess.run(
        [PYTHON, "-m", "tricorn", *args],
        cwd=ROOT,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=30 * TIME_UNIT,
        check=False,
    )


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, dict[str, Any]]]:
    """Replace run() behind the CLI: record what it would have been called with."""
    calls: list[tuple[Any, dict[str, Any]]] = []
    monkeypatch.setattr(cli_main, "run", lambda app, **settings: calls.append((app, settings)))
    for name in list(os.environ):
        if name.startswith("TRICORN_") or name in ("WEB_CONCURRENCY", "FORWARDED_ALLOW_IPS"):
            monkeypatch.delenv(name)
    return calls


# -- options --------------------------------------------------------------------------------


def test_every_uvicorn_option_is_accepted() -> None:
    missing = set(UVICORN_OPTIONS) - tricorn_options()
    assert not missing


def test_option_list_matches_real_uvicorn() -> None:
    exe = uvicorn_executable()
    if exe is None:
        pytest.skip("uvicorn is not installed here; the written list is used")
    help_text = subprocess.run(
        [exe, "--help"], capture_output=True, text=True, check=True, timeout=30
    ).stdout
    names: set[str] = set()
    for line in help_text.splitlines():
        if line.startswith("  --"):
            names.update(re.findall(r"--[a-z0-9][a-z0-9-]*", re.split(r"\s{2,}", line.strip())[0]))
    assert names == set(UVICORN_OPTIONS)


def test_every_option_parses(captured: list[Any], tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("")
    args = [
        "tests.apps:hello",
        "--host", "0.0.0.0", "--port", "0", "--uds", "/tmp/t.sock", "--fd", "3",
        "--reload", "--reload-dir", str(tmp_path), "--reload-include", "*.py",
        "--reload-exclude", "*.tmp", "--reload-delay", "0.5", "--workers", "2",
        "--loop", "zuvloop", "--http", "zttp", "--http2", "--ws", "websockets-sansio",
        "--ws-max-size", "10", "--ws-max-queue", "2", "--ws-ping-interval", "1.5",
        "--ws-ping-timeout", "2.5", "--ws-per-message-deflate", "false",
        "--lifespan", "off", "--interface", "asgi3", "--env-file", str(env_file),
        "--log-config", str(env_file), "--log-level", "trace", "--no-access-log",
        "--no-use-colors", "--no-proxy-headers", "--no-server-header", "--no-date-header",
        "--forwarded-allow-ips", "*", "--root-path", "/api", "--limit-concurrency", "5",
        "--backlog", "10", "--limit-max-requests", "7", "--limit-max-requests-jitter", "3",
        "--timeout-keep-alive", "1", "--timeout-graceful-shutdown", "2",
        "--timeout-worker-healthcheck", "4", "--ssl-keyfile", str(env_file),
        "--ssl-certfile", str(env_file), "--ssl-keyfile-password", "pw", "--ssl-version", "2",
        "--ssl-cert-reqs", "1", "--ssl-ca-certs", str(env_file), "--ssl-ciphers", "ALL",
        "--header", "X-A: 1", "--header", "X-B:2", "--app-dir", "src",
        "--h11-max-incomplete-event-size", "100", "--reset-contextvars", "--factory",
    ]  # fmt: skip
    result = CliRunner().invoke(cli_main.main, args)
    assert result.exit_code == 0, result.output
    app, settings = captured[0]
    assert app == "tests.apps:hello"
    assert settings["headers"] == [("X-A", "1"), ("X-B", "2")]
    assert settings["reload"] is True and settings["workers"] == 2
    assert settings["use_colors"] is False and settings["access_log"] is False
    assert settings["ws_per_message_deflate"] is False
    assert settings["ws_ping_interval"] == 1.5
    assert settings["http"] == "zttp" and settings["loop"] == "zuvloop"
    assert settings["reload_dirs"] == [str(tmp_path)]
    assert set(settings) == {setting.name for setting in CLI_SETTINGS}


def test_defaults_reach_run_like_uvicorn(captured: list[Any]) -> None:
    result = CliRunner().invoke(cli_main.main, ["main:app"])
    assert result.exit_code == 0, result.output
    _, settings = captured[0]
    assert settings["log_config"] is LOGGING_CONFIG
    assert settings["headers"] is None and settings["reload_dirs"] is None
    assert settings["use_colors"] is None and settings["workers"] is None
    assert settings["app_dir"] == ""
    assert settings["port"] == 8000 and settings["host"] == "127.0.0.1"
    # Config accepts exactly what the CLI passes.
    Config("main:app", **{**settings, "log_config": None})


def test_environment_variables(captured: list[Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRICORN_APP", "env:app")
    monkeypatch.setenv("TRICORN_PORT", "9001")
    monkeypatch.setenv("TRICORN_ACCESS_LOG", "false")
    monkeypatch.setenv("TRICORN_HEADERS", "X-A:1 X-B:2")
    monkeypatch.setenv("WEB_CONCURRENCY", "3")
    monkeypatch.setenv("FORWARDED_ALLOW_IPS", "10.0.0.0/8")
    result = CliRunner().invoke(cli_main.main, [])
    assert result.exit_code == 0, result.output
    app, settings = captured[-1]
    assert app == "env:app"
    assert settings["port"] == 9001
    assert settings["access_log"] is False
    assert settings["headers"] == [("X-A", "1"), ("X-B", "2")]
    assert settings["workers"] == 3
    assert settings["forwarded_allow_ips"] == "10.0.0.0/8"

    # A flag beats the environment; TRICORN_WORKERS beats WEB_CONCURRENCY.
    monkeypatch.setenv("TRICORN_WORKERS", "5")
    result = CliRunner().invoke(cli_main.main, ["cli:app", "--port", "9002"])
    assert result.exit_code == 0, result.output
    app, settings = captured[-1]
    assert (app, settings["port"], settings["workers"]) == ("cli:app", 9002, 5)


def test_bad_environment_value_names_the_option(
    captured: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRICORN_PORT", "eighty")
    result = CliRunner().invoke(cli_main.main, ["main:app"])
    assert result.exit_code == 2
    assert "Error: Invalid value for '--port': 'eighty' is not a valid integer" in result.output
    assert not captured


def test_env_reaches_config_in_a_real_process() -> None:
    # WEB_CONCURRENCY=0 makes --workers 0: refused, which proves it arrived.
    result = run_cli("tests.apps:hello", env={"WEB_CONCURRENCY": "0"})
    assert result.returncode == 2
    assert result.stderr.startswith("Error: Invalid value for '--workers': 0 is not in the range")
    result = run_cli(env={"TRICORN_APP": "tests.no_such_module:app"})
    assert result.returncode == 3
    assert 'Could not import module "tests.no_such_module"' in result.stderr


def test_version() -> None:
    result = CliRunner().invoke(cli_main.main, ["--version"])
    assert result.exit_code == 0
    assert re.fullmatch(
        rf"Running tricorn {re.escape(tricorn.__version__)} with \w+ \d+\.\d+\.\d+\S* on \w+\n",
        result.output,
    )


def test_help_lists_options() -> None:
    result = CliRunner().invoke(cli_main.main, ["--help"])
    assert result.exit_code == 0
    assert "Usage: tricorn [OPTIONS] APP" in result.output
    assert "--access-log / --no-access-log" in result.output


# -- one-line errors --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--port", "70000"], 2, "Error: Invalid value for '--port': 70000 is not in the range"),
        (["--loop", "foo"], 2, "Error: Invalid value for '--loop': 'foo' is not one of"),
        (["--http", "spdy"], 2, "Error: Invalid value for '--http': 'spdy'"),
        (["--ws", "x"], 2, "Error: Invalid value for '--ws': 'x'"),
        (["--lifespan", "x"], 2, "Error: Invalid value for '--lifespan': 'x'"),
        (["--interface", "x"], 2, "Error: Invalid value for '--interface': 'x'"),
        (["--log-level", "loud"], 2, "Error: Invalid value for '--log-level': 'loud'"),
        (["--timeout-keep-alive", "-1"], 2, "Error: Invalid value for '--timeout-keep-alive'"),
        (["--workers", "-2"], 2, "Error: Invalid value for '--workers'"),
        (["--ssl-certfile", "no.pem"], 2, "Error: Invalid value for '--ssl-certfile': File"),
        (["--ssl-ca-certs", "no.pem"], 2, "Error: Invalid value for '--ssl-ca-certs': File"),
        (["--ssl-keyfile", "pyproject.toml"], 1, "Error: --ssl-keyfile pyproject.toml needs"),
        (["--header", "nocolon"], 2, "Error: Invalid value for '--header': 'nocolon'"),
        (["--env-file", "no.env"], 2, "Error: Invalid value for '--env-file': File 'no.env'"),
        (["--log-config", "no.json"], 2, "Error: Invalid value for '--log-config': File"),
        (["--log-config", "pyproject.toml"], 1, "Error: Invalid value for '--log-config': "),
        (["--uds", "/tmp/x.sock", "--fd", "3"], 1, "Error: --uds and --fd cannot be used"),
        (["--reload-delay", "-1"], 2, "Error: Invalid value for '--reload-delay'"),
        (["--workers", "0"], 2, "Error: Invalid value for '--workers': 0 is not in the range"),
        (["--bind", "x"], 2, "Error: Invalid value for '--bind': expected HOST:PORT, [IPv6]"),
        (["--bind", "h:99999"], 2, "Error: Invalid value for '--bind': the port must be"),
        (["--worker-lifetime", "0"], 2, "Error: Invalid value for '--worker-lifetime': 0"),
        (["--limit-max-memory", "x"], 2, "Error: Invalid value for '--limit-max-memory'"),
        (["--http", "zttp"], 1, "Error: tricorn does not support --http zttp; use one of"),
        (["--http2"], 1, "Error: tricorn does not support --http2"),
        (["--loop", "zuvloop"], 1, "Error: tricorn does not support --loop zuvloop"),
        (["--nope"], 2, "Error: No such option"),
    ],
)
def test_bad_values_are_one_line(args: list[str], code: int, message: str) -> None:
    result = run_cli("tests.apps:hello", *args)
    assert result.returncode == code, result.stderr
    assert result.stderr.startswith(message), result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert "Traceback" not in result.stderr + result.stdout


@pytest.mark.parametrize(
    ("app", "message"),
    [
        ("tests.no_such_module:app", 'Could not import module "tests.no_such_module".'),
        ("tests.apps:helo", 'Attribute "helo" not found in module "tests.apps".'),
        ("tests.apps", 'Import string "tests.apps" must be in format "<module>:<attribute>".'),
    ],
)
def test_unimportable_app_exits_3_like_uvicorn(app: str, message: str) -> None:
    result = run_cli(app)
    assert result.returncode == 3
    assert result.stderr == f"ERROR:    Error loading ASGI app. {message}\n"


def test_status_is_a_command_and_apps_have_a_colon(captured: list[Any], tmp_path: Path) -> None:
    missing = tmp_path / "none.pid"
    result = CliRunner().invoke(cli_main.main, ["status", "--pid", str(missing)])
    assert result.exit_code == 1
    assert result.output == f"Error: --pid {missing}: no such pid file, or it holds no pid\n"
    assert not captured
    result = CliRunner().invoke(cli_main.main, ["status"])
    assert result.exit_code == 2 and "Missing option '--pid'" in result.output
    # A module named "status" is an app like any other: module:attribute.
    result = CliRunner().invoke(cli_main.main, ["status:app", "--workers", "3"])
    assert result.exit_code == 0, result.output
    assert captured[0][0] == "status:app" and captured[0][1]["workers"] == 3
    result = CliRunner().invoke(cli_main.main, ["--help"])
    assert "tricorn status --pid FILE" in result.output


def test_master_settings_reach_run(captured: list[Any], tmp_path: Path) -> None:
    args = ["main:app", "--bind", "127.0.0.1:0", "--bind", "unix:/tmp/x.sock", "--pid"]
    args += [str(tmp_path / "a.pid"), "--preload", "--reuse-port", "--name", "shop"]
    args += ["--limit-max-memory", "512", "--worker-lifetime", "3600"]
    result = CliRunner().invoke(cli_main.main, args)
    assert result.exit_code == 0, result.output
    _, settings = captured[0]
    assert settings["bind"] == ["127.0.0.1:0", "unix:/tmp/x.sock"]
    assert settings["pid"] == str(tmp_path / "a.pid")
    assert settings["preload"] is settings["reuse_port"] is True
    assert (settings["name"], settings["limit_max_memory"]) == ("shop", 512)
    assert settings["worker_lifetime"] == 3600.0
    config = Config("main:app", **{**settings, "log_config": None})
    assert config.bind == ["127.0.0.1:0", "unix:/tmp/x.sock"] and config.needs_master


def test_missing_app_argument() -> None:
    result = run_cli()
    assert result.returncode == 2
    assert result.stderr == "Error: Missing argument 'APP'.\n"


def test_python_api_app_object_with_workers(capsys: pytest.CaptureFixture[str]) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        pass  # pragma: no cover

    with pytest.raises(SystemExit) as info:
        tricorn.run(app, workers=2, log_config=None)
    assert info.value.code == 3


def test_python_api_bad_setting(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        tricorn.run("tests.apps:hello", port=70000, log_config=None)
    assert info.value.code == 1
    assert capsys.readouterr().err.startswith("Error: Invalid value for '--port': 70000")


def test_standalone_mode_off_raises_click_errors() -> None:
    with pytest.raises(click.UsageError):
        cli_main.main.main(["--port", "x", "a:b"], standalone_mode=False)


# -- a real run ------------------------------------------------------------------------------


@pytest.mark.parametrize("loop", ["auto", "asyncio"])
def test_smoke_serves_hello_and_stops_on_sigint(loop: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRICORN_")}
    process = subprocess.Popen(
        [
            PYTHON,
            "-m",
            "tricorn",
            "tests.apps:hello",
            "--port",
            "0",
            "--no-use-colors",
            "--loop",
            loop,
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    err_lines: list[str] = []
    out_lines: list[str] = []
    assert process.stdout is not None and process.stderr is not None
    readers = [
        threading.Thread(target=lambda: err_lines.extend(process.stderr), daemon=True),  # type: ignore[arg-type]
        threading.Thread(target=lambda: out_lines.extend(process.stdout), daemon=True),  # type: ignore[arg-type]
    ]
    for reader in readers:
        reader.start()
    try:
        wait_for(
            lambda: (
                any("Tricorn running on" in line for line in err_lines)
                or process.poll() is not None
            ),
            timeout=15,
            what="tricorn to listen",
        )
        running = next(line for line in err_lines if "Tricorn running on" in line)
        match = re.search(r"http://127\.0\.0\.1:(\d+) \(Press CTRL\+C to quit\)", running)
        assert match, running
        port = int(match.group(1))
        assert port != 0
        response = httpx.get(f"http://127.0.0.1:{port}/", timeout=5 * TIME_UNIT)
        assert response.status_code == 200
        assert response.text == "Hello, world!"
        wait_for(lambda: out_lines, what="the access line")
        assert re.fullmatch(
            r'INFO:     127\.0\.0\.1:\d+ - "GET / HTTP/1\.1" 200 OK\n', out_lines[0]
        )
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=10 * TIME_UNIT) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=5)
        for reader in readers:
            reader.join(timeout=5)
        process.stdout.close()
        process.stderr.close()
    assert err_lines[0].startswith("INFO:     Started server process [")
    assert not any("Traceback" in line for line in err_lines)
    assert not any("master" in line for line in err_lines)  # one process, like uvicorn
