"""Import an object from a ``"module:attribute"`` string, with errors a user can act on."""

from __future__ import annotations

import importlib
import logging
import traceback
from typing import Any

logger = logging.getLogger("tricorn.error")


class ImportFromStringError(Exception):
    """The import string is malformed, or its module or attribute cannot be loaded.

    The message is one line meant for the user (no traceback).
    """


def import_from_string(import_str: Any) -> Any:
    """Return the object named by ``"package.module:attr.sub_attr"``.

    Anything that is not a string is returned as is, so callers may pass either an import
    string or the object itself. Raises ``ImportFromStringError`` when the string has no
    colon, the module does not exist, the module fails while importing, or the attribute
    is missing.
    """
    if not isinstance(import_str, str):
        return import_str

    module_str, _, attrs_str = import_str.partition(":")
    if not module_str or not attrs_str:
        raise ImportFromStringError(
            f'Import string "{import_str}" must be in format "<module>:<attribute>".'
        )

    try:
        module = importlib.import_module(module_str)
    except ModuleNotFoundError as exc:
        if exc.name is not None and _is_parent_or_self(exc.name, module_str):
            raise ImportFromStringError(f'Could not import module "{module_str}".') from None
        # The module exists but imports something missing: say what, without a traceback.
        _log_debug_traceback(exc)
        raise ImportFromStringError(
            f'Importing module "{module_str}" failed: No module named "{exc.name}".'
        ) from None
    except Exception as exc:
        # The user's module raised while importing: one line naming the place; the full
        # traceback is still available with --log-level debug.
        _log_debug_traceback(exc)
        raise ImportFromStringError(
            f'Importing module "{module_str}" raised {type(exc).__name__}: {exc}{_where(exc)}'
        ) from None

    instance: Any = module
    for attr_str in attrs_str.split("."):
        try:
            instance = getattr(instance, attr_str)
        except AttributeError:
            raise ImportFromStringError(
                f'Attribute "{attrs_str}" not found in module "{module_str}".'
            ) from None
    return instance


def _is_parent_or_self(missing: str, module_str: str) -> bool:
    # "a.b.c" is unimportable when "a", "a.b" or "a.b.c" itself is missing.
    return module_str == missing or module_str.startswith(missing + ".")


def _where(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    if isinstance(exc, SyntaxError) or not frames:
        # A SyntaxError's text already names the file and line.
        return ""
    last = frames[-1]
    return f" ({last.filename}, line {last.lineno})"


def _log_debug_traceback(exc: BaseException) -> None:
    if logger.isEnabledFor(logging.DEBUG):
        logger.debug(
            "Traceback of the import error:\n%s",
            "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)),
        )
