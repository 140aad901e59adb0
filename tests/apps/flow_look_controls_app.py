"""An app declaring every flow control, for what GET /functions and the dashboard show of
them (tests/e2e/test_flow_look_dashboard.py). The functions are trivial; only their
declarations matter."""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette
from starlette.routing import Route

from sdk import (
    Batch,
    Client,
    Concurrency,
    Context,
    Debounce,
    Priority,
    RateLimit,
    Singleton,
    Throttle,
    Workflow,
    serve,
    task,
)


@task("ctl-all", triggers=["ctl.changed"],
      concurrency=[Concurrency(5, key="event.data.customer_id"), Concurrency(50)],
      throttle=Throttle(100, period=60, burst=10),
      rate_limit=RateLimit(1000, period=3600, key="input.account"),
      debounce=Debounce(period=5, key="event.data.customer_id", max_wait=60),
      singleton=Singleton(key="input.account", mode="cancel"),
      priority=Priority(default=3, key="event.data.tier"))
async def ctl_all(ctx: Context, inp: Any) -> Any:
    return inp


@task("ctl-batch", triggers=["ctl.hook"], batch=Batch(max_size=100, timeout=5,
                                                      key="event.data.source"),
      singleton=Singleton(), priority=7)
async def ctl_batch(ctx: Context, inp: Any) -> Any:
    return inp


@task("ctl-none")
async def ctl_none(ctx: Context, inp: Any) -> Any:
    return inp


ctl_flow = Workflow("ctl-flow", priority=Priority(default=2))


@ctl_flow.task(concurrency=Concurrency(3, key="input.region"))
async def fetch(ctx: Context, inp: Any) -> Any:
    return inp


@ctl_flow.task(parents=[fetch])
async def store(ctx: Context, inp: Any) -> Any:
    return inp


FUNCTIONS = [ctl_all, ctl_batch, ctl_none, ctl_flow]

client = Client(app_id="flow-controls")

app = Starlette(routes=[
    Route("/api/durable", serve(client, FUNCTIONS), methods=["GET", "POST"]),
])
