"""The example app: a Starlette app that mounts the SDK endpoint at /api/durable.

Run it with ``uvicorn examples.functions.app:app --port 8000`` next to an orchestrator
(``make run`` does both). Configuration comes from the environment (DURABLE_*).
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from examples.functions.orders import FUNCTIONS
from sdk import Client, serve

client = Client(app_id="orders-app")


async def home(request: Request) -> JSONResponse:
    return JSONResponse({"app": "orders-app", "durable_endpoint": "/api/durable"})


app = Starlette(routes=[
    Route("/", home),
    Route("/api/durable", serve(client, FUNCTIONS), methods=["GET", "POST"]),
])
