"""WebSocket protocols: one shared ASGI cycle (``cycle``) and a thin adapter per library.

``websockets_impl.WebSocketsProtocol`` (``--ws websockets``) and
``wsproto_impl.WSProtoProtocol`` (``--ws wsproto``) are imported lazily by the config, so a
missing library only matters when it is asked for.
"""
