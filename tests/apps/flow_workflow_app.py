"""Workflows whose start a flow control delays (tests/e2e/test_flow_workflow.py): each
task returns what the workflow run was started with, and when it ran."""

from __future__ import annotations

import time
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from sdk import Batch, Client, Context, Debounce, Throttle, Workflow, serve

debounced = Workflow("wf-debounced", debounce=Debounce(period=1.0, key="input.k"))


@debounced.task()
async def first(ctx: Context, inp: Any) -> Any:
    return {"input": inp, "t": time.time()}


@debounced.task(parents=[first])
async def second(ctx: Context, inp: Any) -> Any:
    return ctx.parent(first)["input"]


throttled = Workflow("wf-throttled", throttle=Throttle(2, period=1.0))


@throttled.task()
async def only(ctx: Context, inp: Any) -> Any:
    return {"input": inp, "t": time.time()}


batched = Workflow("wf-batched", triggers=["wf.item"], batch=Batch(max_size=3, timeout=30))


@batched.task()
async def gather(ctx: Context, inp: Any) -> Any:
    return inp




async def home(request: Request) -> PlainTextResponse:
    return PlainTextResponse("flow workflows")


app = Starlette(routes=[
    Route("/", home),
    Route("/api/durable", serve(Client(app_id="flowwf"), [debounced, throttled, batched]),
          methods=["GET", "POST"]),
])
