"""A Flask (WSGI) app: ``tricorn examples.flask_app:app --interface wsgi``.

WSGI apps run through a2wsgi; ``--interface wsgi`` must be given, since a WSGI callable
cannot be told apart from an ASGI 2 one by looking at it. Needs ``pip install flask``.
"""

from flask import Flask, Response, request

app = Flask(__name__)


@app.get("/")
def index() -> str:
    return "Hello from Flask!"


@app.post("/echo")
def echo() -> Response:
    return Response(request.get_data(), content_type=request.content_type or "text/plain")


@app.get("/where")
def where() -> dict[str, str]:
    return {"path": request.path, "script_root": request.script_root, "scheme": request.scheme}
