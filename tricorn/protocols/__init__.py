"""The wire protocols of a worker, over one ASGI layer. How a request flows:

HTTP/1.1::

    socket --accept--> selector.ProtocolSelector         picks the framing per connection
      -> http1.HTTPToolsProtocol | http1.H11Protocol      parses the bytes (one per connection)
         http1.connection.HTTP1Connection.request_head    limits, smuggling guards, keep-alive
      -> asgi.scope.new_scope + asgi.http.HTTPStream     one per request: the ASGI rules
         HTTPStream.run_asgi(app): receive() / send()    app <-> stream
      -> http1.response.HTTP1Sink                         the stream's sink: status line,
         transport.write                                   Content-Length or chunked, keep-alive

WebSocket over HTTP/1.1::

    HTTP1Connection.request_head sees "Upgrade: websocket"
      -> http1.websocket.WebSocketOverHTTP1               the upgraded connection is the sink
         websocket.<library>_impl codec.handshake()       websockets or wsproto checks the head
      -> asgi.websocket.WebSocketStream                  the ASGI rules, close codes, timers
         later bytes: HTTP1Connection.data_received -> WebSocketOverHTTP1.receive
           -> codec.receive -> stream.message_part ...   frames in
         stream -> sink.send_message -> codec.message -> transport.write   frames out

Where HTTP/2 plugs in: ``selector`` picks an ``http2`` framing (by ALPN on TLS, by the
connection preface on cleartext); that framing makes one ``HTTPStream`` per HTTP/2 stream
with its own sink (HEADERS, DATA within the flow-control windows, RST_STREAM for
``abort``, WINDOW_UPDATE for ``consumed``), and one ``WebSocketStream`` per extended
CONNECT (RFC 8441) with a sink that carries the codec's frames in DATA frames. Nothing in
``asgi`` changes.

Layers inside (imports run down only): ``selector`` > ``http1`` > ``websocket`` (frame
codecs) > ``asgi`` (streams, scope, errors) > ``base`` (the per-connection context every
framing shares) > ``state``, ``utils``.
"""
