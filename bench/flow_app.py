"""The app bench/flow.py drives: one one-step task, declared with a concurrency limit when
``FLOWBENCH_LIMIT`` is set (a limit that never binds, so the figures are the claim's cost)."""

from __future__ import annotations

import os

from starlette.applications import Starlette
from starlette.routing import Route

from sdk import Client, Concurrency, Context, serve, task

LIMIT = int(os.environ.get("FLOWBENCH_LIMIT") or 0)
KEYED = bool(os.environ.get("FLOWBENCH_KEYED"))


async def _inc(x: int) -> int:
    return x + 1


def _limits() -> list[Concurrency] | None:
    if not LIMIT:
        return None
    return [Concurrency(LIMIT), *([Concurrency(LIMIT, key="input.k")] if KEYED else [])]


@task("flow-bench", concurrency=_limits())
async def one_step(ctx: Context, inp: dict[str, int]) -> int:
    return await ctx.step.run("inc", _inc, inp["x"])  # type: ignore[no-any-return]


client = Client(app_id="flow-bench")
app = Starlette(routes=[Route("/api/durable", serve(client, [one_step]),
                              methods=["GET", "POST"])])
