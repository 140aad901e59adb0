"""Workflows and trigger/control fixtures for the end-to-end tests of issue 4."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from sdk import CancelOn, Child, Context, NonRetriableError, Retry, Workflow, task

FLAGS = os.environ.get("TESTAPP_FLAGS", "/tmp")
_counts: dict[str, int] = {}


def bump(key: str) -> int:
    _counts[key] = _counts.get(key, 0) + 1
    return _counts[key]


async def _timed(seconds: float) -> dict[str, float]:
    start = time.time()
    await asyncio.sleep(seconds)
    return {"start": start, "end": time.time()}


# -- a diamond: a -> (b, c) -> d -------------------------------------------------------------
diamond = Workflow("diamond")


@diamond.task()
async def a(ctx: Context, x: int) -> int:
    return x + 1


@diamond.task(parents=[a])
async def b(ctx: Context, x: int) -> dict[str, Any]:
    t = await ctx.step.run("work", _timed, 0.5)
    return {"value": ctx.parent(a) * 2, **t}


@diamond.task(parents=[a])
async def c(ctx: Context, x: int) -> dict[str, Any]:
    t = await ctx.step.run("work", _timed, 0.5)
    return {"value": ctx.parent(a) * 3, **t}


@diamond.task(parents=[b, c])
def d(ctx: Any, x: int) -> int:  # a sync task
    return int(ctx.parent(b)["value"] + ctx.parent("c")["value"])


# -- fan-in of 20 parents ---------------------------------------------------------------------
fan_in = Workflow("fan-in")
_parents = []
for _i in range(20):
    async def _leaf(ctx: Context, x: int, _i: int = _i) -> int:
        return _i

    _parents.append(fan_in.task(f"p{_i}")(_leaf))


@fan_in.task(parents=_parents)
async def join(ctx: Context, x: int) -> int:
    return sum(ctx.parent(q) for q in _parents)


# -- conditional branches -----------------------------------------------------------------
branching = Workflow("branching")


@branching.task()
async def check(ctx: Context, inp: dict[str, Any]) -> dict[str, Any]:
    return {"big": inp["amount"] > 100}


@branching.task(parents=[check], skip_if=lambda ctx: not ctx.parent(check)["big"])
async def big(ctx: Context, inp: dict[str, Any]) -> str:
    return "big path"


@branching.task(parents=[check], skip_if=lambda ctx: ctx.parent(check)["big"])
async def small(ctx: Context, inp: dict[str, Any]) -> str:
    return "small path"


@branching.task(parents=[big])
async def after_big(ctx: Context, inp: dict[str, Any]) -> str:
    return "after big"


@branching.task(parents=[big, small])
async def merge(ctx: Context, inp: dict[str, Any]) -> dict[str, Any]:
    return {"big": ctx.parent(big), "small": ctx.parent(small),
            "skipped": [t.name for t in (big, small) if ctx.was_skipped(t)]}


# -- a failing task, with on_failure ---------------------------------------------------------
failing = Workflow("failing-flow")


@failing.task()
async def first(ctx: Context, x: Any) -> str:
    return "ok"


@failing.task(parents=[first], retry=Retry(max_attempts=1))
async def boom(ctx: Context, x: Any) -> None:
    raise NonRetriableError("the warehouse is on fire")


@failing.task(parents=[first])
async def slow_sibling(ctx: Context, x: Any) -> str:
    await ctx.sleep_for(30)
    return "never"


@failing.task(parents=[boom])
async def never(ctx: Context, x: Any) -> str:
    return "never"


@failing.on_failure()
async def report(ctx: Context, x: Any) -> dict[str, Any]:
    return {"failure": ctx.failure}


# -- a durable task inside a DAG -----------------------------------------------------------
durable_dag = Workflow("durable-dag")


@durable_dag.task()
async def prepare(ctx: Context, key: str) -> str:
    return key


@durable_dag.task(parents=[prepare])
async def approve(ctx: Context, key: str) -> dict[str, Any]:
    before = await ctx.step.run("before", lambda: "checked")
    await ctx.sleep_for(0.3)
    ev = await ctx.wait_for_event("flow.approved", match={"data.key": ctx.parent(prepare)},
                                  timeout=30)
    return {"before": before, "approved_by": ev["data"]["by"] if ev else None}


# -- task timeout ------------------------------------------------------------------------------
slow_flow = Workflow("slow-flow")


@slow_flow.task(timeout=1.0)
async def too_slow(ctx: Context, x: Any) -> None:
    await ctx.sleep_for(10)


# -- replay: succeeds once a flag file exists ---------------------------------------------
@task("replayable", retry=Retry(max_attempts=1))
async def replayable(ctx: Context, name: str) -> dict[str, Any]:
    first_value = await ctx.step.run("first", lambda: bump(f"{ctx.run_id}:first"))

    def second() -> str:
        if not os.path.exists(os.path.join(FLAGS, name)):
            raise RuntimeError("the flag is not there yet")
        return "second done"

    second_value = await ctx.step.run("second", second)
    return {"first": first_value, "second": second_value,
            "first_runs": _counts[f"{ctx.run_id}:first"]}


replay_flow = Workflow("replay-flow")


@replay_flow.task()
async def rf_one(ctx: Context, name: str) -> int:
    return bump(f"{ctx.run_id}:one")


@replay_flow.task(parents=[rf_one], retry=Retry(max_attempts=1))
async def rf_two(ctx: Context, name: str) -> str:
    if not os.path.exists(os.path.join(FLAGS, name)):
        raise RuntimeError("no flag")
    return "two done"


# -- cancel ----------------------------------------------------------------------------------
@task("long-parent")
async def long_parent(ctx: Context, n: int) -> list[Any]:
    return await ctx.spawn("kids", [Child("long-child", i) for i in range(n)])


@task("long-child")
async def long_child(ctx: Context, i: int) -> int:
    await ctx.sleep_for(60)
    return i


@task("cancellable", cancel_on=[CancelOn("order.cancelled", {"data.order_id": "input.order_id"})])
async def cancellable(ctx: Context, inp: dict[str, Any]) -> str:
    await ctx.wait_for_event("order.shipped", match={"data.order_id": inp["order_id"]},
                             timeout=60)
    return "shipped"


# -- timeouts -----------------------------------------------------------------------------
@task("run-timeout", timeout=1.0)
async def run_timeout(ctx: Context) -> None:
    await ctx.sleep_for(10)


@task("queue-timeout", queue_timeout=1.0)
async def queue_timeout(ctx: Context) -> str:
    return "started"


# -- triggers ------------------------------------------------------------------------------
@task("echo")
async def echo(ctx: Context, x: Any) -> Any:
    return x


@task("ticker")
async def ticker(ctx: Context) -> str:
    return "tick"


@task("slow-step")
async def slow_step(ctx: Context) -> str:
    return await ctx.step.run("slow", _timed, 1.5) and "done"  # type: ignore[no-any-return]


FLOWS = [diamond, fan_in, branching, failing, durable_dag, slow_flow, replay_flow, replayable,
         long_parent, long_child, cancellable, run_timeout, queue_timeout, echo, ticker,
         slow_step]

