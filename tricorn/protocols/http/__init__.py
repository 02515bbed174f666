"""HTTP/1.1: one shared connection and ASGI cycle, two thin parser backends.

* ``connection`` -- per-connection behaviour shared by both backends (pipelining, flow
  control, keep-alive, timeouts, limits, shutdown, error responses).
* ``cycle`` -- the ASGI message rules of one request/response.
* ``httptools_impl`` / ``h11_impl`` -- translate one parser library's events into calls on
  ``connection``; nothing else.
"""
