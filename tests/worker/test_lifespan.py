"""ASGI lifespan: the protocol in memory, then through a real server and the CLI."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httpx
import pytest

from tests import apps
from tests.utils import run_server
from tests.worker.helpers import capture_logs, cli, serve_config


def _lifespan(app: Any, mode: str) -> Any:
    from tricorn import Config

    config = Config(app, lifespan=mode, log_config=None)
    config.load()
    return config.lifespan_class(config)


def _startup_and_shutdown(app: Any, mode: str) -> tuple[Any, list[logging.LogRecord]]:
    lifespan = _lifespan(app, mode)

    async def main() -> None:
        await lifespan.startup()
        if not lifespan.should_exit:
            await lifespan.shutdown()

    with capture_logs() as logs:
        asyncio.run(main())
    return lifespan, logs.records


def _messages(records: list[logging.LogRecord]) -> list[str]:
    return [record.getMessage() for record in records]


@pytest.mark.parametrize("mode", ["on", "auto"])
def test_startup_and_shutdown_complete(mode: str) -> None:
    app = apps.LifespanRecorder()
    lifespan, records = _startup_and_shutdown(app, mode)
    assert not lifespan.should_exit
    assert app.events == ["startup", "shutdown"]
    assert _messages(records) == [
        "Waiting for application startup.",
        "Application startup complete.",
        "Waiting for application shutdown.",
        "Application shutdown complete.",
    ]


def test_state_is_filled_by_the_app() -> None:
    lifespan, _ = _startup_and_shutdown(apps.lifespan_state, "on")
    assert lifespan.state == {"name": "tricorn", "items": []}


def test_off_never_calls_the_app() -> None:
    app = apps.LifespanRecorder()
    lifespan, records = _startup_and_shutdown(app, "off")
    assert app.events == []
    assert records == []
    assert lifespan.state == {}
    assert not lifespan.should_exit


def test_auto_carries_on_when_the_app_does_not_support_lifespan() -> None:
    lifespan, records = _startup_and_shutdown(apps.no_lifespan, "auto")
    assert not lifespan.should_exit
    assert _messages(records) == [
        "Waiting for application startup.",
        "ASGI 'lifespan' protocol appears unsupported.",
        "Application startup complete.",
    ]
    assert all(record.levelno == logging.INFO for record in records)


def test_app_returning_at_once_is_treated_as_unsupported() -> None:
    lifespan, records = _startup_and_shutdown(apps.hello, "auto")
    assert not lifespan.should_exit
    assert "ASGI 'lifespan' protocol appears unsupported." in _messages(records)
    assert "Waiting for application shutdown." not in _messages(records)


def test_on_fails_startup_when_the_app_raises() -> None:
    lifespan, records = _startup_and_shutdown(apps.startup_raises, "on")
    assert lifespan.should_exit
    errors = [record for record in records if record.levelno == logging.ERROR]
    assert [record.getMessage() for record in errors] == [
        "Exception in 'lifespan' protocol",
        "Application startup failed. Exiting.",
    ]
    assert errors[0].exc_info is not None
    assert str(errors[0].exc_info[1]) == apps.STARTUP_RAISES_MESSAGE


@pytest.mark.parametrize("mode", ["on", "auto"])
def test_startup_failed_message_is_logged(mode: str) -> None:
    lifespan, records = _startup_and_shutdown(apps.startup_failed, mode)
    assert lifespan.should_exit
    errors = [(r.getMessage(), r.exc_info) for r in records if r.levelno == logging.ERROR]
    assert errors == [
        (apps.STARTUP_FAILED_MESSAGE, None),
        ("Application startup failed. Exiting.", None),
    ]


def test_shutdown_failed_message_is_logged() -> None:
    lifespan, records = _startup_and_shutdown(apps.shutdown_failed, "on")
    assert not lifespan.should_exit
    errors = [r.getMessage() for r in records if r.levelno == logging.ERROR]
    assert errors == [apps.SHUTDOWN_FAILED_MESSAGE, "Application shutdown failed. Exiting."]


@pytest.mark.parametrize("mode", ["on", "auto"])
def test_message_in_the_wrong_order_is_a_clear_error(mode: str) -> None:
    lifespan, records = _startup_and_shutdown(apps.wrong_order, mode)
    assert lifespan.should_exit
    errors = [r.getMessage() for r in records if r.levelno == logging.ERROR]
    assert errors == [
        "ASGI lifespan: unexpected 'lifespan.shutdown.complete': shutdown was not requested yet",
        "Application startup failed. Exiting.",
    ]


def test_unknown_message_type_is_a_clear_error() -> None:
    async def app(scope: apps.Scope, receive: apps.Receive, send: apps.Send) -> None:
        await receive()
        await send({"type": "lifespan.startup.done"})

    lifespan, records = _startup_and_shutdown(app, "auto")
    assert lifespan.should_exit
    assert "unexpected message type 'lifespan.startup.done'" in _messages(records)[1]


def test_app_that_keeps_running_after_shutdown_is_cancelled() -> None:
    cancelled: list[bool] = []

    async def app(scope: apps.Scope, receive: apps.Receive, send: apps.Send) -> None:
        await receive()
        await send({"type": "lifespan.startup.complete"})
        await receive()
        await send({"type": "lifespan.shutdown.complete"})
        try:
            await receive()  # nothing more will come
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    lifespan, records = _startup_and_shutdown(app, "on")
    assert cancelled == [True]
    assert "Application shutdown complete." in _messages(records)


def test_state_reaches_each_request_as_a_shallow_copy(http_backend: str) -> None:
    with (
        run_server(apps.lifespan_state, http=http_backend, lifespan="on") as running,
        httpx.Client() as client,
    ):
        first = client.get(running.url).json()
        second = client.get(running.url).json()
    # "name" was replaced in the first request's copy only; the list object is shared.
    assert first == {"name": "tricorn", "items": []}
    assert second == {"name": "tricorn", "items": ["request"]}


def test_server_does_not_serve_when_startup_fails(http_backend: str) -> None:
    with (
        capture_logs() as logs,
        serve_config(apps.startup_failed, lifespan="on", port=0, http=http_backend) as server,
    ):
        pass
    assert not server.started
    assert apps.STARTUP_FAILED_MESSAGE in logs.messages
    assert not any(m.startswith("Tricorn running on") for m in logs.messages)
    assert not any(m.startswith("Finished server process") for m in logs.messages)


@pytest.mark.parametrize("app", ["startup_failed", "startup_raises"])
def test_cli_exits_3_when_startup_fails(app: str) -> None:
    with cli(f"tests.apps:{app}", "--port", "0", "--lifespan", "on") as process:
        assert process.wait() == 3
    output = process.output
    assert "Application startup failed. Exiting." in output
    assert "Tricorn running on" not in output
    if app == "startup_failed":
        assert apps.STARTUP_FAILED_MESSAGE in output
        assert "Traceback" not in output
    else:
        # A real exception in the app: its traceback is logged, as uvicorn does.
        assert f"RuntimeError: {apps.STARTUP_RAISES_MESSAGE}" in output


def test_run_exits_3_when_startup_fails() -> None:
    import subprocess
    import sys

    from tests.worker.helpers import ROOT

    code = "import tricorn; tricorn.run('tests.apps:startup_failed', port=0, lifespan='on')"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 3
    assert apps.STARTUP_FAILED_MESSAGE in result.stderr
    assert "Traceback" not in result.stderr
