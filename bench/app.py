"""The app the benchmarks drive: trivial steps, so the figures are the orchestration cost."""

from __future__ import annotations

import time

from starlette.applications import Starlette
from starlette.routing import Route

from sdk import Child, Client, Context, Workflow, serve, task


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


@task("bench-wait")
async def wait(ctx: Context, customer: str) -> object:
    """Waits for its customer's event (bench/waits.py: many such waits at once)."""
    return await ctx.wait_for_event("bench.ping", match={"data.customer": customer},
                                    timeout=86400)


def _stamp() -> list[float]:
    return [time.time(), time.process_time()]


@task("bench-loop")
async def loop(ctx: Context, spec: dict[str, float]) -> int:
    """A long durable loop (bench/loop.py): ``spec["n"]`` times a step, then a sleep of
    ``spec["sleep_ms"]``; each step's output is the app's clock and CPU time when it ran."""
    n, sleep_ms = int(spec["n"]), float(spec["sleep_ms"])
    for _ in range(n):
        await ctx.step.run("tick", _stamp)
        await ctx.sleep_for(sleep_ms / 1000.0)
    return n


@task("bench-sleep")
async def sleeper(ctx: Context, seconds: float) -> None:
    """Sleeps durably (bench/sleepers.py: many such sleeps at once)."""
    await ctx.sleep_for(seconds)


# a diamond of width 18: root -> 18 middles -> sink (20 tasks)
wide = Workflow("bench-wide")


@wide.task()
async def root(ctx: Context, x: int) -> int:
    return x


_middles = []
for _i in range(18):
    async def _middle(ctx: Context, x: int, _i: int = _i) -> int:
        return int(ctx.parent(root)) + _i

    _middles.append(wide.task(f"m{_i}", parents=[root])(_middle))


@wide.task(parents=_middles)
async def sink(ctx: Context, x: int) -> int:
    return sum(ctx.parent(m) for m in _middles)


# a chain of 10 tasks
chain10 = Workflow("bench-chain10")
_prev: list = []
for _i in range(10):
    async def _link(ctx: Context, x: int, _i: int = _i) -> int:
        return (int(ctx.parent(f"c{_i - 1}")) if _i else x) + 1

    _prev = [chain10.task(f"c{_i}", parents=_prev)(_link)]


FUNCTIONS = [chain, fan, child, noop, wait, loop, sleeper, wide, chain10]
app = Starlette(routes=[Route("/api/durable", serve(Client(app_id="bench"), FUNCTIONS),
                              methods=["GET", "POST"])])
