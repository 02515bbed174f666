"""WebSocket close codes and the checks that decide them, in one place.

Every close code the server sends is named here; the cycle picks among them. Close
reasons never carry internal detail (an app's exception text stays in the server log).
"""

from __future__ import annotations

import re
from typing import Any

# RFC 6455 close codes we produce.
NORMAL_CLOSURE = 1000
PROTOCOL_ERROR = 1002
ABNORMAL_CLOSURE = 1006
INVALID_DATA = 1007
MESSAGE_TOO_BIG = 1009
INTERNAL_ERROR = 1011
SERVICE_RESTART = 1012

# RFC 9110 token characters for header names; values may not contain CR, LF or NUL.
_VALID_NAME = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+").fullmatch
_INVALID_VALUE = re.compile(rb"[\x00\r\n]").search


def valid_close_code(code: object) -> bool:
    """Whether an app may send ``code`` in a close frame (RFC 6455 7.4)."""
    return isinstance(code, int) and (
        1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999
    )


def truncate_reason(reason: str) -> str:
    """A close reason cut to the 123 UTF-8 bytes a close frame can carry."""
    data = reason.encode("utf-8")
    if len(data) <= 123:
        return reason
    return data[:123].decode("utf-8", "ignore")


def check_headers(headers: Any) -> list[tuple[bytes, bytes]]:
    """The app's headers as a list, refusing names and values that would break HTTP."""
    checked = []
    for name, value in headers:
        if _VALID_NAME(name) is None:
            raise RuntimeError(f"Invalid HTTP header name {name!r}.")
        if _INVALID_VALUE(value) is not None:
            raise RuntimeError(f"Invalid HTTP header value {value!r}.")
        checked.append((bytes(name), bytes(value)))
    return checked
