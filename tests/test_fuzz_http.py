"""A short, bounded run of fuzz/fuzz_http.py in the test suite (longer runs: fuzz/README.md).

Random, mutated and well-formed requests, pipelined, fed whole and byte by byte, to both
backends in memory: only well-formed responses, a protocol error followed by close, or
waiting for more input may come out; and valid requests get the same bytes back from both.
"""

from __future__ import annotations

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
