"""An app for ``wait_for_event``'s lookback (tests/e2e/test_flow_look.py).

Each function runs a step that blocks until the test has sent its events (the step
writes ``<FLOWLOOK_FLAGS>/<run id>.ready``, the test sends, then writes ``<run id>.go``),
then waits: the events land between the step and the wait, the race of issue 13.
"""

from __future__ import annotations

import asyncio
import os
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.routing import Route

from sdk import Client, Context, SyncContext, serve, task
from tests.support.procs import API_KEY

FLAGS = Path(os.environ.get("FLOWLOOK_FLAGS") or os.environ.get("TESTAPP_FLAGS") or "/tmp")


class LookInput(BaseModel):
    key: str
    lookback: float | None = None
    timeout: float = 10.0


def _said_go(run_id: str) -> bool:
    """Say the step runs (the first time); whether the test said its events are sent."""
    ready = FLAGS / f"{run_id}.ready"
    if not ready.exists():
        ready.write_text("")
    return (FLAGS / f"{run_id}.go").exists()


async def _ready(run_id: str) -> float:
    """Block until the test says its events are sent."""
    deadline = time.monotonic() + 30
    while not _said_go(run_id):
        if time.monotonic() > deadline:
            raise TimeoutError("the test never said go")
        await asyncio.sleep(0.02)
    return time.time()


@task("look-wait", input_model=LookInput)
async def look_wait(ctx: Context, inp: LookInput) -> dict[str, Any]:
    await ctx.step.run("ready", _ready, ctx.run_id)
    ev = await ctx.wait_for_event("look.go", match={"data.key": inp.key},
                                  timeout=inp.timeout, lookback=inp.lookback)
    return {"event": ev, "resumed_at": time.time()}


@task("look-wait-twice", input_model=LookInput)
async def look_wait_twice(ctx: Context, inp: LookInput) -> dict[str, Any]:
    await ctx.step.run("ready", _ready, ctx.run_id)
    first = await ctx.wait_for_event("look.go", match={"data.key": inp.key},
                                     timeout=inp.timeout, lookback=inp.lookback)
    second = await ctx.wait_for_event("look.go", match={"data.key": inp.key},
                                      timeout=inp.timeout, lookback=inp.lookback)
    return {"first": first, "second": second}


def _ready_sync(run_id: str) -> float:
    deadline = time.monotonic() + 30
    while not _said_go(run_id):
        if time.monotonic() > deadline:
            raise TimeoutError("the test never said go")
        time.sleep(0.02)
    return time.time()


@task("look-wait-sync", input_model=LookInput)
def look_wait_sync(ctx: SyncContext, inp: LookInput) -> dict[str, Any]:
    ctx.step.run("ready", _ready_sync, ctx.run_id)
    back = None if inp.lookback is None else timedelta(seconds=inp.lookback)
    ev = ctx.wait_for_event("look.go", match={"data.key": inp.key}, timeout=inp.timeout,
                            lookback=back)
    return {"event": ev}


class SendInput(BaseModel):
    key: str
    send_to: list[str]
    """The orchestrators the step sends its event through, the first that answers
    (another replica first, say)."""
    lookback: float | None = None
    timeout: float = 30.0


async def _send(send_to: list[str], key: str) -> str:
    async with httpx.AsyncClient(timeout=30) as c:
        for i, base in enumerate(send_to):
            try:
                r = await c.post(f"{base}/api/v1/events",
                                 json=[{"name": "look.sent", "data": {"key": key}}],
                                 headers={"authorization": f"Bearer {API_KEY}"})
                r.raise_for_status()
                return str(r.json()["ids"][0])
            except httpx.HTTPError:
                if i == len(send_to) - 1:
                    raise
    raise ValueError("no orchestrator to send to")


@task("look-send", input_model=SendInput)
async def look_send(ctx: Context, inp: SendInput) -> dict[str, Any]:
    """The step itself sends the event the wait after it is for: it is stored (and
    committed) before the wait is recorded, every time."""
    sent = await ctx.step.run("send", _send, inp.send_to, inp.key)
    ev = await ctx.wait_for_event("look.sent", match={"data.key": inp.key},
                                  timeout=inp.timeout, lookback=inp.lookback)
    return {"sent": sent, "event": ev}


client = Client(app_id="flow-look")

app = Starlette(routes=[
    Route("/api/durable", serve(client, [look_wait, look_wait_twice, look_wait_sync,
                                         look_send]),
          methods=["GET", "POST"]),
])
