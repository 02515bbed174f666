"""Tricorn: an ASGI web server with uvicorn's command line and a real pre-fork master."""

from tricorn.config import Config
from tricorn.main import run
from tricorn.worker.server import Server

__version__ = "0.1.0"
__all__ = ["Config", "Server", "run", "__version__"]
