"""The rules of an HTTP/1.1 request head that both parser backends share.

What llhttp (``--http httptools``) refuses while parsing, the h11 backend refuses the same
way (``h11_impl``); what neither parser checks, ``HTTP1Connection.request_head`` checks
for both, with the limits and helpers defined here.
"""

from __future__ import annotations

import re

from tricorn.protocols.asgi.errors import HTTPProtocolError

DEFAULT_MAX_HEAD = 64 * 1024  # bytes of request line + headers (--h11-max-incomplete-event-size)
MAX_TARGET = 8190  # bytes of request target, as Apache's LimitRequestLine
MAX_HEADERS = 100  # header fields per request

# Every method llhttp accepts on an HTTP/1.x request line (probed with httptools 0.9); both
# backends serve these and refuse any other with 400. llhttp refuses a method as soon as its
# bytes stop spelling one of these, before the token is complete, so it cannot tell an
# unknown method (RFC 9110 9.1 would suggest 501) from garbage such as a TLS handshake: 400
# is the answer that does not depend on how the bytes were cut.
HTTP_METHODS = frozenset(
    (
        b"ACL BIND CHECKOUT CONNECT COPY DELETE GET HEAD LINK LOCK M-SEARCH MERGE MKACTIVITY "
        b"MKCALENDAR MKCOL MOVE NOTIFY OPTIONS PATCH POST PROPFIND PROPPATCH PURGE PUT QUERY "
        b"REBIND REPORT SEARCH SOURCE SUBSCRIBE TRACE UNBIND UNLINK UNLOCK UNSUBSCRIBE"
    ).split()
)
# "chunked" as the last coding, followed by spaces only: llhttp's reading of a chunked body.
CHUNKED_FINAL = re.compile(rb"(?:^|,[ \t]*)chunked *\Z", re.IGNORECASE)


def version_error(http_version: str) -> HTTPProtocolError:
    """The error for a request version other than 1.0 and 1.1.

    0.9 (llhttp's name for a request line without a version) is not an HTTP/1 request: 400.
    Anything above is a version we do not speak: 505.
    """
    if http_version < "1.0":
        return HTTPProtocolError(400, f"invalid HTTP version {http_version!r}")
    return HTTPProtocolError(505, f"unsupported HTTP version {http_version!r}")


def transfer_coding_error(value: bytes) -> HTTPProtocolError | None:
    """Check a request's Transfer-Encoding value: None when the body is plainly chunked.

    RFC 9112 6.1/6.3: "chunked" anywhere but last, or twice, leaves the body length unknown
    (400). Any other coding, before "chunked" or alone, is one we do not implement (501).
    Empty list elements are ignored (RFC 9110 5.6.1). Only spaces may follow the final
    "chunked": llhttp reads "chunked<TAB>" as another coding and fails after the head, so
    both backends refuse it (400) before the app starts.
    """
    codings = [coding for coding in (c.strip(b" \t").lower() for c in value.split(b",")) if coding]
    if not codings or b"chunked" in codings[:-1]:
        return HTTPProtocolError(400, "chunked is not the final transfer coding, once")
    if any(coding != b"chunked" for coding in codings):
        return HTTPProtocolError(501, "unsupported transfer coding")
    if CHUNKED_FINAL.search(value) is None:
        return HTTPProtocolError(400, "invalid Transfer-Encoding")
    return None


def split_target(target: bytes) -> tuple[bytes, bytes]:
    """The raw path and query of a request target (RFC 9112 3.2).

    origin-form as it is; absolute-form keeps only its path (``http://host/a`` -> ``/a``);
    asterisk-form stays ``*``. Anything else is a 400.
    """
    raw_path, _, query = target.partition(b"?")
    if raw_path[:1] != b"/":
        if raw_path[:7].lower() == b"http://" or raw_path[:8].lower() == b"https://":
            slash = raw_path.find(b"/", raw_path.find(b"//") + 2)
            raw_path = raw_path[slash:] if slash != -1 else b"/"
        elif raw_path != b"*":
            raise HTTPProtocolError(400, "invalid request target")
    return raw_path, query
