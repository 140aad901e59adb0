"""Functions with concurrency limits and priorities, for tests/e2e/test_flow_concurrency.py.

Each call records the interval it worked in, one line appended to the file named by
``FLOWAPP_CALLS`` (default: ``flow-calls.log`` in the directory ``TESTAPP_FLAGS`` names;
``<function> <group> <label> <start> <end>``), so a test computes the
overlap of calls from what really ran, across orchestrator restarts and replicas.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from starlette.applications import Starlette
from starlette.routing import Route

from sdk import Client, Concurrency, Context, Workflow, serve, task
from tests.apps.replica_app import slow_effects
from tests.apps.testapp import home

_FLAGS = os.environ.get("TESTAPP_FLAGS")
CALLS = os.environ.get("FLOWAPP_CALLS") or (
    os.path.join(_FLAGS, "flow-calls.log") if _FLAGS else None)


def record(function: str, group: str, label: str, start: float) -> None:
    if CALLS:
        with open(CALLS, "a") as f:  # one short write per line: appends do not interleave
            f.write(f"{function} {group} {label} {start:.6f} {time.time():.6f}\n")


@task("flow-limited", concurrency=[Concurrency(20), Concurrency(3, key="input.customer")])
async def limited(ctx: Context, inp: dict[str, Any]) -> str:
    """A call working ``work`` seconds: at most 20 at once, 3 per customer."""
    t0 = time.time()
    await asyncio.sleep(inp.get("work", 0.05))
    record("flow-limited", inp["customer"], ctx.run_id, t0)
    return str(inp["customer"])


@task("flow-serial", concurrency=1)
async def serial(ctx: Context, inp: dict[str, Any]) -> str:
    """One call at a time; a run with ``sleep`` sleeps that long between two calls."""
    t0 = time.time()
    await asyncio.sleep(inp.get("work", 0.02))
    record("flow-serial", "-", inp.get("label", ctx.run_id), t0)
    if inp.get("sleep"):
        await ctx.sleep_for(inp["sleep"], name="nap")
        t1 = time.time()
        await asyncio.sleep(inp.get("work", 0.02))
        record("flow-serial", "-", f"{inp.get('label', ctx.run_id)}:after", t1)
    return str(inp.get("label"))


@task("flow-ranked", priority=2)
async def ranked(ctx: Context, inp: Any) -> Any:
    """A function with a declared priority and no limit."""
    return inp


pipeline = Workflow("flow-pipeline")


@pipeline.task(concurrency=2)
async def work(ctx: Context, inp: dict[str, Any]) -> str:
    """The workflow's one limited task: at most 2 calls of it across the workflow's runs."""
    t0 = time.time()
    await asyncio.sleep(inp.get("work", 0.05))
    record("flow-pipeline/work", "-", ctx.run_id, t0)
    return "done"


@pipeline.task(parents=[work])
async def after(ctx: Context, inp: dict[str, Any]) -> str:
    return "after"


FUNCTIONS = [limited, serial, ranked, pipeline, slow_effects]
client = Client(app_id="flowapp")

app = Starlette(routes=[
    Route("/", home),
    Route("/api/durable", serve(client, FUNCTIONS), methods=["GET", "POST"]),
])
