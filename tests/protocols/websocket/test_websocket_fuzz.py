"""Arbitrary client bytes after the handshake: only documented outcomes, on both backends.

Whatever the client sends, whole or byte by byte, the protocol raises nothing, and the
connection is either still open or closing with one of the close codes we document.
"""

from __future__ import annotations

import asyncio

import hypothesis.strategies as st
from hypothesis import HealthCheck, given, settings

from tests.protocols.websocket.conftest import WSConn, accepted, raw_frame
from tests.protocols.websocket.test_websocket import echo_app
from tricorn.protocols.asgi import websocket as ws_stream

DOCUMENTED = {1000, 1002, 1005, 1006, 1007, 1009} | set(range(3000, 5000))

frames = st.builds(
    raw_frame,
    st.sampled_from([0x0, 0x1, 0x2, 0x3, 0x8, 0x9, 0xA, 0xB]),
    st.binary(max_size=200),
    fin=st.booleans(),
    mask=st.booleans(),
)
streams = st.one_of(st.binary(max_size=300), st.lists(frames, max_size=6).map(b"".join))


def run(backend: str, data: bytes, bytewise: bool) -> None:
    async def main() -> None:
        conn = WSConn(backend, echo_app, ws_max_size=150)
        conn.open()
        await conn.turn()
        accepted(conn.received())
        chunks = [data[i : i + 1] for i in range(len(data))] if bytewise else [data]
        for chunk in chunks:
            conn.feed(chunk)
            await asyncio.sleep(0)
        stream = conn.stream
        assert ws_stream.OPEN <= stream.state <= ws_stream.CLOSED
        if stream.disconnect is not None:
            assert stream.disconnect["code"] in DOCUMENTED, stream.disconnect
        conn.transport.close()
        await conn.settle()

    asyncio.run(main())


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=streams, bytewise=st.booleans())
def test_websockets_backend_survives_any_bytes(data: bytes, bytewise: bool) -> None:
    run("websockets", data, bytewise)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=streams, bytewise=st.booleans())
def test_wsproto_backend_survives_any_bytes(data: bytes, bytewise: bool) -> None:
    run("wsproto", data, bytewise)
