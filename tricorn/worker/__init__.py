"""One worker: the ``Server`` (listeners, main loop, graceful shutdown) and the lifespan."""
