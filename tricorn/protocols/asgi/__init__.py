"""The ASGI side of every wire protocol: one HTTP stream and one WebSocket stream.

* ``http`` -- ``HTTPStream``, the ASGI HTTP rules of one request, and ``HTTPSink``, what
  it needs of the framing that carries it;
* ``websocket`` -- ``WebSocketStream`` and ``WebSocketSink``, the same for a WebSocket;
* ``scope`` -- the connection scope, for both;
* ``errors`` -- protocol errors, the server's own responses, header checks, close codes.

Nothing here writes a byte: the framings (``protocols.http1``, later ``http2``) do, each
through its sinks. See ``tricorn.protocols`` for how a request flows.
"""
