"""``tricorn.run()``: build a Config and serve it, the way ``uvicorn.run()`` does."""

from __future__ import annotations

import logging
import sys
from typing import Any, NoReturn

import click

from tricorn.config import STARTUP_FAILURE, Config, ConfigError
from tricorn.master.arbiter import Arbiter
from tricorn.net.listeners import Listeners
from tricorn.net.sockets import BindError
from tricorn.worker.server import Server

logger = logging.getLogger("tricorn.error")


def run(app: Any, **settings: Any) -> None:
    """Serve ``app`` until stopped (SIGINT/SIGTERM).

    ``app`` is an ASGI/WSGI app object or a ``"module:attribute"`` import string; the
    keyword ``settings`` are those of ``tricorn.Config`` (uvicorn's names, plus
    ``app_dir`` and the master's settings). A bad setting or an app that cannot be
    imported is reported on one line and the process exits (1 for a bad setting, 3 when
    the server could not start, like uvicorn); call ``Config``/``Server`` directly to
    handle errors yourself.

    One process serves, like uvicorn, unless the settings need the pre-fork master
    (``Config.needs_master``: ``reload``, ``workers > 1``, ``pid``, ``preload``...); then
    ``app`` must be an import string, and the process exits with the master's code when it
    stops. With ``reload`` the master runs one worker and replaces it when a watched file
    changes.
    """
    try:
        config = Config(app, **settings)
    except ConfigError as exc:
        _exit_with(exc)

    if config.needs_master:
        if not isinstance(app, str):
            logger.warning(
                "You must pass the application as an import string to enable 'reload' or 'workers'."
            )
            sys.exit(STARTUP_FAILURE)
        sys.exit(Arbiter(config).run())

    server = Server(config)
    listeners = None
    try:
        # Load before serving so an unimportable app or a bad TLS file is one line, here.
        config.load()
        if config.bind:
            listeners = _bind_listeners(config)
        server.run(sockets=None if listeners is None else listeners.sockets)
    except ConfigError as exc:
        _exit_with(exc)
    except KeyboardInterrupt:
        pass
    finally:
        if listeners is not None:
            listeners.close()
    if not server.started:
        sys.exit(STARTUP_FAILURE)


def _bind_listeners(config: Config) -> Listeners:
    # One --bind in one process: bound as the master would, served by the Server.
    listeners = Listeners(backlog=config.backlog)
    try:
        listeners.open(config.bind_specs(), environ={})
    except BindError as exc:
        raise ConfigError(str(exc), STARTUP_FAILURE) from None
    return listeners


def _exit_with(exc: ConfigError) -> NoReturn:
    if exc.exit_code == STARTUP_FAILURE:
        # A startup failure is part of the server's story: log it like the rest.
        logger.error("%s", exc)
    else:
        click.echo(f"Error: {exc}", err=True)
    sys.exit(exc.exit_code)
