"""A small app whose id and function names come from ``DURABLE_APP_ID`` (and its keys
from ``DURABLE_SIGNING_KEY`` and ``DURABLE_SIGNING_KEY_FALLBACK``), so that several run
side by side, each with its own keys.

``<id>-echo`` answers its input; ``<id>-steps`` runs ``n`` steps of ``KEYAPP_STEP_S``
seconds each (0.3 by default) and appends one line to the file ``KEYAPP_CALLS`` names per
call it is given (so a test counts the calls a run took)."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from sdk import Client, Context, serve, task

APP_ID = os.environ.get("DURABLE_APP_ID", "keyapp")
CALLS = os.environ.get("KEYAPP_CALLS")
STEP_S = float(os.environ.get("KEYAPP_STEP_S", "0.3"))


@task(f"{APP_ID}-echo")
async def echo(ctx: Context, x: Any) -> Any:
    return x


async def _slow(i: int) -> int:
    await asyncio.sleep(STEP_S)
    return i


@task(f"{APP_ID}-steps")
async def steps(ctx: Context, n: int) -> int:
    if CALLS:
        with open(CALLS, "a") as f:
            f.write(f"{ctx.run_id}\n")
    for i in range(n):
        await ctx.step.run(f"s{i}", _slow, i)
    return n


client = Client(app_id=APP_ID)


async def home(request: Any) -> JSONResponse:
    return JSONResponse({"ok": True})


app = Starlette(routes=[
    Route("/", home),
    Route("/api/durable", serve(client, [echo, steps]), methods=["GET", "POST"]),
])
