"""Functions under the flow controls applied at run creation (throttle, rate limit,
debounce, singleton, batch), for tests/e2e/test_flow_lim.py.

Each call appends one JSON line to the file named by ``FLOW_LOG`` when it starts and one
when it ends: ``{"fn", "run", "phase", "t", "input", "event", "events"}`` (a run called
twice, after an orchestrator restart, appears twice). The replica tests' ``slow-effects``
is served too (``tests.support.replicas`` waits for it).
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from typing import Any

from starlette.applications import Starlette
from starlette.routing import Route

from sdk import (
    Batch,
    Client,
    Context,
    Debounce,
    RateLimit,
    Singleton,
    Throttle,
    serve,
    task,
)
from tests.apps.replica_app import slow_effects
from tests.apps.testapp import home

LOG = os.environ.get("FLOW_LOG") or os.path.join(os.environ.get("TESTAPP_FLAGS", "."),
                                                 "flow.log")

THROTTLE = Throttle(5, period=1.0, key="input.k", burst=2)
RATE = RateLimit(1, period=3600, key="input.k", burst=5)
DEBOUNCE = Debounce(period=5.0, key="event.data.k", max_wait=30.0)
DEBOUNCE_WAIT = Debounce(period=1.0, key="event.data.k", max_wait=2.5)
BATCH = Batch(20, timeout=1.5, key="event.data.k")


def record(ctx: Context, phase: str, **extra: Any) -> None:
    line = {"fn": ctx.function, "run": ctx.run_id, "phase": phase, "t": time.time(),
            "input": ctx.input, "event": ctx.event, **extra}
    with open(LOG, "a") as f:
        f.write(json.dumps(line) + "\n")


@task("thr", throttle=THROTTLE)
async def thr(ctx: Context, inp: Any) -> None:
    record(ctx, "start")


@task("rl", rate_limit=RATE)
async def rl(ctx: Context, inp: Any) -> None:
    record(ctx, "start")


@task("deb", triggers=["deb.edit"], debounce=DEBOUNCE)
async def deb(ctx: Context, inp: Any) -> None:
    record(ctx, "start")


@task("debw", triggers=["debw.edit"], debounce=DEBOUNCE_WAIT)
async def debw(ctx: Context, inp: Any) -> None:
    record(ctx, "start")


@task("one", singleton=Singleton(key="input.k"))
async def one(ctx: Context, inp: Any) -> None:
    record(ctx, "start")
    await asyncio.sleep(float(inp.get("sleep", 0.2)))
    record(ctx, "end")


@task("onec", singleton=Singleton(key="input.k", mode="cancel"))
async def onec(ctx: Context, inp: Any) -> None:
    record(ctx, "start")
    await asyncio.sleep(float(inp.get("sleep", 0.5)))
    record(ctx, "end")


@task("bat", triggers=["bat.item"], batch=BATCH)
async def bat(ctx: Context, inp: Any) -> int:
    record(ctx, "start", events=[e["id"] for e in ctx.events],
           received=[e["ts"] for e in ctx.events], data=inp)
    return len(ctx.events)


FUNCTIONS = [thr, rl, deb, debw, one, onec, bat]
client = Client(app_id="flowlim")

app = Starlette(routes=[
    Route("/", home),
    Route("/api/durable", serve(client, [*FUNCTIONS, slow_effects]), methods=["GET", "POST"]),
])
