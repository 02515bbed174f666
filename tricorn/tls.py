"""TLS: the ``ssl.SSLContext`` a server wraps its connections in, built from the settings.

``Config.load()`` calls ``server_context()`` once; a bad file or value is a ``ConfigError``
naming the option, before the server listens.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from typing import Any, Protocol

from tricorn.settings import ConfigError


class TLSSettings(Protocol):
    """What this module reads of a ``tricorn.Config`` (it sits below the config)."""

    ssl_keyfile: str | None
    ssl_certfile: str | None
    ssl_keyfile_password: str | None
    ssl_version: int
    ssl_cert_reqs: int
    ssl_ca_certs: str | None
    ssl_ciphers: str | None
    # Called as ``factory(config, config.default_ssl_context)``.
    ssl_context_factory: Callable[[Any, Callable[[], ssl.SSLContext]], ssl.SSLContext] | None

    @property
    def is_ssl(self) -> bool: ...

    def default_ssl_context(self) -> ssl.SSLContext: ...


def server_context(config: TLSSettings) -> ssl.SSLContext | None:
    """The context to serve with: ``ssl_context_factory``'s, else the default one when
    TLS is on (``config.is_ssl``), else None (plain TCP)."""
    factory = config.ssl_context_factory
    if factory is not None:
        context = factory(config, config.default_ssl_context)
        if not isinstance(context, ssl.SSLContext):
            raise ConfigError(
                f"ssl_context_factory must return an ssl.SSLContext, got {type(context).__name__}."
            )
        return context
    if config.is_ssl:
        return default_context(config)
    return None


def default_context(config: TLSSettings) -> ssl.SSLContext:
    """The context built from the ``ssl_*`` settings (needs ``ssl_certfile``)."""
    if not config.ssl_certfile:
        raise ConfigError("TLS needs --ssl-certfile (ssl_certfile).")
    try:
        context = ssl.SSLContext(config.ssl_version)
    except (ValueError, OSError) as exc:
        raise ConfigError(f"--ssl-version {config.ssl_version}: {exc}") from None
    password = config.ssl_keyfile_password
    try:
        context.load_cert_chain(
            config.ssl_certfile, config.ssl_keyfile, (lambda: password) if password else None
        )
    except (ssl.SSLError, OSError, ValueError) as exc:
        raise ConfigError(
            f"--ssl-certfile {config.ssl_certfile} / --ssl-keyfile {config.ssl_keyfile}: "
            f"cannot load the certificate and key: {exc}"
        ) from None
    context.verify_mode = ssl.VerifyMode(config.ssl_cert_reqs)
    if config.ssl_ca_certs:
        try:
            context.load_verify_locations(config.ssl_ca_certs)
        except (ssl.SSLError, OSError) as exc:
            raise ConfigError(f"--ssl-ca-certs {config.ssl_ca_certs}: {exc}") from None
    if config.ssl_ciphers:
        try:
            context.set_ciphers(config.ssl_ciphers)
        except ssl.SSLError as exc:
            raise ConfigError(f"--ssl-ciphers {config.ssl_ciphers}: {exc}") from None
    return context
