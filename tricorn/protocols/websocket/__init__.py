"""WebSocket frame codecs: one sans-I/O library each, behind one interface (``codec``).

``websockets_impl.WebSocketsCodec`` (``--ws websockets``) and ``wsproto_impl.WSProtoCodec``
(``--ws wsproto``) are imported lazily by the config, so a missing library only matters
when it is asked for. The ASGI rules of a WebSocket are ``protocols.asgi.websocket``'s;
carrying it over HTTP/1.1 is ``protocols.http1.websocket``'s.
"""
