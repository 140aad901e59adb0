"""An app for the retention tests: ``ret-brief`` keeps its ended runs one second,
``ret-kept`` has no retention of its own (the orchestrator keeps its runs forever by
default), ``ret-waits`` (kept one second too) waits for an event that never comes."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from sdk import Client, Context, serve, task


async def _double(x: int) -> int:
    return 2 * x


@task("ret-brief", retention=1)
async def brief(ctx: Context, x: int) -> Any:
    return await ctx.step.run("double", _double, x)


@task("ret-kept")
async def kept(ctx: Context, x: int) -> Any:
    return await ctx.step.run("double", _double, x)


@task("ret-waits", retention=timedelta(seconds=1))
async def waits(ctx: Context) -> Any:
    return await ctx.wait_for_event("ret.never", timeout=3600)


client = Client(app_id="retention-app")


async def home(request: Any) -> JSONResponse:
    return JSONResponse({"ok": True})


app = Starlette(routes=[
    Route("/", home),
    Route("/api/durable", serve(client, [brief, kept, waits]), methods=["GET", "POST"]),
])
