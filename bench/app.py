"""The app the benchmarks drive: trivial steps, so the figures are the orchestration cost."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.routing import Route

from sdk import Child, Client, Context, serve, task


async def _inc(x: int) -> int:
    return x + 1


@task("bench-chain")
async def chain(ctx: Context, n: int) -> int:
    x = 0
    for _ in range(n):
        x = await ctx.step.run("inc", _inc, x)
    return x


@task("bench-fan")
async def fan(ctx: Context, n: int) -> int:
    outs = await ctx.spawn("children", [Child("bench-child", i) for i in range(n)])
    return sum(outs)


@task("bench-child")
async def child(ctx: Context, i: int) -> int:
    return await ctx.step.run("work", _inc, i)  # type: ignore[no-any-return]


@task("bench-noop")
async def noop(ctx: Context) -> None:
    return None


app = Starlette(routes=[Route("/api/durable", serve(Client(app_id="bench"),
                                                      [chain, fan, child, noop]),
                              methods=["GET", "POST"])])
