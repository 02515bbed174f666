"""Wire protocols: each parser library adapted to one shared ASGI cycle per protocol."""
