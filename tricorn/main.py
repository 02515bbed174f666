"""``tricorn.run()``: build a Config and serve it, the way ``uvicorn.run()`` does."""

from __future__ import annotations

import logging
import sys
from typing import Any, NoReturn

import click

from tricorn.config import STARTUP_FAILURE, Config, ConfigError
from tricorn.settings import BY_NAME

logger = logging.getLogger("tricorn.error")


def run(app: Any, **settings: Any) -> None:
    """Serve ``app`` until stopped (SIGINT/SIGTERM), in this process.

    ``app`` is an ASGI/WSGI app object or a ``"module:attribute"`` import string; the
    keyword ``settings`` are those of ``tricorn.Config`` (uvicorn's names, plus
    ``app_dir``). A bad setting or an app that cannot be imported is reported on one line
    and the process exits (1 for a bad setting, 3 when the server could not start, like
    uvicorn); call ``Config``/``Server`` directly to handle errors yourself.
    """
    try:
        config = Config(app, **settings)
    except ConfigError as exc:
        _exit_with(exc)

    if config.reload or config.workers > 1:
        if not isinstance(app, str):
            logger.warning(
                "You must pass the application as an import string to enable 'reload' or 'workers'."
            )
            sys.exit(STARTUP_FAILURE)
        later = BY_NAME["reload" if config.reload else "workers"].later
        _exit_with(ConfigError(later or "This feature is not available in tricorn yet."))

    from tricorn.worker.server import Server  # imported late: the server imports protocols

    server = Server(config)
    try:
        # Load before serving so an unimportable app or a bad TLS file is one line, here.
        config.load()
        server.run()
    except ConfigError as exc:
        _exit_with(exc)
    except KeyboardInterrupt:
        pass
    if not server.started:
        sys.exit(STARTUP_FAILURE)


def _exit_with(exc: ConfigError) -> NoReturn:
    if exc.exit_code == STARTUP_FAILURE:
        # A startup failure is part of the server's story: log it like the rest.
        logger.error("%s", exc)
    else:
        click.echo(f"Error: {exc}", err=True)
    sys.exit(exc.exit_code)
