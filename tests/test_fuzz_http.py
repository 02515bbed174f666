"""A short, bounded run of fuzz/fuzz_http.py in the test suite (longer runs: fuzz/README.md).

Random, mutated and well-formed requests, pipelined, fed whole and byte by byte, to both
backends in memory: only well-formed responses, a protocol error followed by close, or
waiting for more input may come out; and both backends give the same verdict on any input,
valid or not: the same bytes back (Date aside) and the same closed flag.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from fuzz.fuzz_http import check, check_same_answers, http_case, valid_input


# http_backend is a plain string, so sharing it between examples is harmless.
@pytest.mark.timeout(60)
@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    database=None,
)
@given(case=http_case())
def test_fuzz_http(http_backend: str, case: tuple[bytes, list[int]]) -> None:
    check(http_backend, *case)


@pytest.mark.timeout(60)
@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None
)
@given(case=http_case(valid_input))
def test_fuzz_backends_answer_alike(case: tuple[bytes, list[int]]) -> None:
    check_same_answers(*case)


@pytest.mark.timeout(60)
@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None
)
@given(case=http_case())
def test_fuzz_backends_agree_on_any_input(case: tuple[bytes, list[int]]) -> None:
    """Malformed, mutated and truncated input too: same statuses, same close, same bytes."""
    check_same_answers(*case)


@pytest.mark.parametrize(
    "data",
    [
        b"GET / HTTP/1.1\r\nHost: a\r\nX: b\r\n c\r\n\r\n",  # obs-fold: 400 on both
        b"\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",  # leading CRLF: 200 on both
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\nabc\n0\n\n",
    ],
)
def test_fuzz_parity_oracle_sees_agreement(data: bytes) -> None:
    """The parity check passes where the backends now agree (it failed on each before)."""
    for cuts in ([], list(range(1, len(data)))):
        check_same_answers(data, cuts)


def test_fuzz_parity_oracle_sees_differences(monkeypatch: pytest.MonkeyPatch) -> None:
    """The parity check fails when the backends' verdicts differ."""
    import fuzz.fuzz_http as fuzz_http

    real = fuzz_http.run_exchange

    def lenient_h11(backend: str, data: bytes, cuts: list[int]) -> Any:
        if backend == "h11":  # as if h11 had answered the obs-fold request
            return real(backend, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", [])
        return real(backend, data, cuts)

    monkeypatch.setattr(fuzz_http, "run_exchange", lenient_h11)
    with pytest.raises(AssertionError, match="backends differ"):
        check_same_answers(b"GET / HTTP/1.1\r\nHost: a\r\nX: b\r\n c\r\n\r\n", [])


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (b"GET / HTTP/1.1\r\nhost: x\r\n\r\n", 200),
        (b"GET /a HTTP/1.1\r\nhost: x\r\n\r\n", 200),  # odd path length: chunked response
        (b"\x00garbage\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\ncontent-length: x\r\n\r\n", 400),
    ],
)
def test_fuzz_oracle_sees_outcomes(http_backend: str, data: bytes, status: int) -> None:
    """The oracle itself works: fixed inputs give the expected statuses, whole and bytewise."""
    from fuzz.fuzz_http import parse_responses, run_exchange

    for cuts in ([], list(range(1, len(data)))):
        check(http_backend, data, cuts)
        output, closed, log = run_exchange(http_backend, data, cuts)
        responses = parse_responses(output, log.methods)
        assert [r.status for r in responses] == [status]
        assert closed == (status != 200)


@pytest.mark.parametrize(
    "output",
    [
        b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nab",  # body cut short
        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n",  # head cut short
        b"HTTP/1.1 400 Bad Request\r\n\r\n",  # error without framing
        b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\ncontent-length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nbad header\r\ncontent-length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nabc\r\n0\r\n\r\n",
        b"HTTP/1.0 200 OK\r\ncontent-length: 0\r\n\r\n",
    ],
)
def test_fuzz_oracle_rejects_malformed_output(output: bytes) -> None:
    """The response checker fails on broken framing, so a broken server cannot pass."""
    from fuzz.fuzz_http import parse_responses

    with pytest.raises(AssertionError):
        parse_responses(output, ["GET"])
