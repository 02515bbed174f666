"""HTTP/1.1: one shared connection, two thin parser backends, and the HTTP/1.1 sinks.

* ``connection`` -- per-connection behaviour shared by both backends (pipelining, flow
  control, keep-alive, timeouts, limits, smuggling guards, shutdown, error responses);
* ``request`` -- the request-head rules and limits both backends share;
* ``response`` -- ``HTTP1Sink``: status line, framing (length or chunked), keep-alive;
* ``websocket`` -- the connection after a WebSocket upgrade, as the stream's sink;
* ``httptools_impl`` / ``h11_impl`` -- translate one parser library's events into calls on
  ``connection``; nothing else.
"""
