"""The example app: a Starlette app that mounts the SDK endpoint at /api/durable, serving
the order fulfilment task (``orders.py``) and the daily sales ETL workflow (``etl.py``).

Run it with ``uvicorn examples.functions.app:app --port 8000`` next to an orchestrator
(``make run`` does both). Configuration comes from the environment (DURABLE_*).
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from examples.functions import etl, orders
from sdk import Client, serve

FUNCTIONS = [*orders.FUNCTIONS, *etl.FUNCTIONS]

client = Client(app_id="orders-app")


async def home(request: Request) -> JSONResponse:
    return JSONResponse({"app": "orders-app", "durable_endpoint": "/api/durable",
                         "functions": [f.name for f in FUNCTIONS]})


app = Starlette(routes=[
    Route("/", home),
    Route("/api/durable", serve(client, FUNCTIONS), methods=["GET", "POST"]),
])
