"""The test app plus a slow step, for the replica tests: a call that stays in flight long
enough for a replica to be killed under it."""

from __future__ import annotations

import asyncio

from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.routing import Route

from sdk import Client, Context, serve, task
from tests.apps.testapp import FUNCTIONS, effect, home


class SlowInput(BaseModel):
    steps: int
    seconds: float


@task("slow-effects", input_model=SlowInput)
async def slow_effects(ctx: Context, inp: SlowInput) -> int:
    """``steps`` steps, each with a side effect, each taking ``seconds`` (each its own call:
    a short sleep between)."""
    for i in range(inp.steps):
        await ctx.step.run(f"s{i}", _slow_step, ctx.run_id, f"s{i}", inp.seconds)
        await ctx.sleep_for(0.05, name=f"pause{i}")
    return inp.steps


async def _slow_step(run_id: str, step: str, seconds: float) -> str:
    effect(run_id, step)
    await asyncio.sleep(seconds)
    return step


client = Client(app_id="testapp")

app = Starlette(routes=[
    Route("/", home),
    Route("/api/durable", serve(client, [*FUNCTIONS, slow_effects]),
          methods=["GET", "POST"]),
])

