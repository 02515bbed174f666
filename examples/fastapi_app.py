"""A FastAPI (Starlette) app: ``tricorn examples.fastapi_app:app``.

Shows lifespan state reaching requests (``request.state``), path parameters, a JSON body
and a streamed response. Needs ``pip install fastapi``.
"""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
    # What is yielded here becomes the lifespan state, copied into every request's scope.
    yield {"greeting": "Hello"}


app = FastAPI(lifespan=lifespan)


class Item(BaseModel):
    name: str
    price: float
    quantity: int = 1


@app.get("/")
async def root() -> dict[str, str]:
    return {"message": "Hello, world!"}


@app.get("/hello/{name}")
async def hello(name: str, request: Request) -> dict[str, str]:
    return {"message": f"{request.state.greeting}, {name}!"}


@app.post("/items")
async def create_item(item: Item) -> dict[str, Any]:
    return {"name": item.name, "total": item.price * item.quantity}


@app.get("/count/{n}")
async def count(n: int) -> StreamingResponse:
    async def numbers() -> AsyncIterator[bytes]:
        for i in range(n):
            yield f"{i}\n".encode()

    return StreamingResponse(numbers(), media_type="text/plain")
