"""An app exercising every step kind, for end-to-end tests.

Side effects are appended to the file named by TESTAPP_EFFECTS (one line per execution
of a step's body: "<run_id> <step> <unix time>"), so tests can count executions across
app and orchestrator restarts.
"""

from __future__ import annotations

import asyncio
import os
import time
from datetime import timedelta
from typing import Any

from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from sdk import (
    Child,
    ChildRunError,
    Client,
    Context,
    NonRetriableError,
    Retry,
    RetryAfterError,
    StepError,
    SyncContext,
    serve,
    task,
)
from tests.apps.flows import FLOWS

EFFECTS = os.environ.get("TESTAPP_EFFECTS")
_attempts: dict[str, int] = {}


def effect(run_id: str, step: str) -> None:
    if EFFECTS:
        with open(EFFECTS, "a") as f:
            f.write(f"{run_id} {step} {time.time():.6f}\n")


@task("chain")
async def chain(ctx: Context, n: int) -> int:
    total = 0
    for i in range(n):
        total = await ctx.step.run("add", _add, total, i)
    return total


async def _add(a: int, b: int) -> int:
    return a + b


@task("sync-chain")
def sync_chain(ctx: SyncContext, n: int) -> dict[str, Any]:
    total = 0
    for i in range(n):
        total = ctx.step.run("add", lambda t=total, i=i: t + i)
    doubled = ctx.step.run("async-step-in-sync", _add, total, total)
    return {"total": total, "doubled": doubled}


@task("flaky", retry=Retry(max_attempts=4, initial_delay=0.05, factor=1.0))
async def flaky(ctx: Context, fails: int) -> dict[str, Any]:
    def attempt() -> str:
        n = _attempts.get(ctx.run_id, 0) + 1
        _attempts[ctx.run_id] = n
        if n <= fails:
            raise RuntimeError(f"transient failure {n}")
        return f"ok after {n}"

    out = await ctx.step.run("flaky-step", attempt)
    return {"result": out}


@task("step-fails-caught", retry=Retry(max_attempts=2, initial_delay=0.05))
async def step_fails_caught(ctx: Context) -> dict[str, Any]:
    def boom() -> None:
        raise ValueError("card declined")

    try:
        await ctx.step.run("charge", boom)
    except StepError as exc:
        return {"caught": exc.error_type, "message": exc.error_message, "step": exc.step}
    return {"caught": None}


@task("step-fails-for-good", retry=Retry(max_attempts=2, initial_delay=0.05))
async def step_fails_for_good(ctx: Context) -> None:
    def boom() -> None:
        raise NonRetriableError("account closed")

    await ctx.step.run("charge", boom)


@task("retry-after", retry=Retry(max_attempts=3))
async def retry_after(ctx: Context) -> str:
    def slow_down() -> str:
        n = _attempts.get(ctx.run_id, 0) + 1
        _attempts[ctx.run_id] = n
        if n == 1:
            raise RetryAfterError("rate limited", timedelta(milliseconds=300))
        return "done"

    return await ctx.step.run("call-api", slow_down)  # type: ignore[no-any-return]


@task("function-retry", retry=Retry(max_attempts=3, initial_delay=0.05, factor=1.0))
async def function_retry(ctx: Context) -> dict[str, Any]:
    before = await ctx.step.run("before", lambda: "recorded once")
    if ctx.attempt < 2:
        raise RuntimeError(f"function failed on attempt {ctx.attempt}")
    return {"before": before, "attempt": ctx.attempt}


@task("sleeper")
async def sleeper(ctx: Context, seconds: float) -> dict[str, float]:
    start = await ctx.step.run("start", time.time)
    await ctx.sleep_for(seconds)
    end = await ctx.step.run("end", time.time)
    return {"slept": end - start}


class WaitInput(BaseModel):
    key: str
    timeout: float | None = None


@task("waiter", input_model=WaitInput)
async def waiter(ctx: Context, inp: WaitInput) -> dict[str, Any]:
    ev = await ctx.wait_for_event("test.go", match={"data.key": inp.key}, timeout=inp.timeout)
    return {"event": ev}


@task("fan-out")
async def fan_out(ctx: Context, n: int) -> dict[str, Any]:
    outs = await ctx.spawn("double-all", [Child("double", i) for i in range(n)])
    return {"sum": sum(outs), "n": len(outs)}


@task("double")
async def double(ctx: Context, x: int) -> int:
    return await ctx.step.run("double", lambda: x * 2)  # type: ignore[no-any-return]


@task("fan-out-failing")
async def fan_out_failing(ctx: Context) -> dict[str, Any]:
    try:
        await ctx.spawn("kids", [Child("double", 1), Child("always-fails", None)])
    except ChildRunError as exc:
        return {"failed": [r["status"] for r in exc.results]}
    return {"failed": []}


@task("always-fails", retry=Retry(max_attempts=1))
async def always_fails(ctx: Context) -> None:
    raise NonRetriableError("nope")


@task("spawner-no-wait")
async def spawner_no_wait(ctx: Context) -> list[str]:
    return await ctx.spawn_no_wait("bg", [Child("double", 5)])


@task("sender")
async def sender(ctx: Context, key: str) -> list[str]:
    return await ctx.send_event("notify", {"name": "test.go", "data": {"key": key}})


class Typed(BaseModel):
    name: str
    count: int


@task("typed", input_model=Typed)
async def typed(ctx: Context, inp: Typed) -> str:
    return f"{inp.name} x{inp.count}"


@task("triggered", triggers=["test.trigger"])
async def triggered(ctx: Context) -> dict[str, Any]:
    assert ctx.event is not None
    return {"event_name": ctx.event["name"], "data": ctx.input}


_nondet: dict[str, int] = {}


@task("nondeterministic", retry=Retry(max_attempts=1))
async def nondeterministic(ctx: Context) -> None:
    n = _nondet.get(ctx.run_id, 0)
    _nondet[ctx.run_id] = n + 1
    await ctx.step.run("first" if n == 0 else "renamed", lambda: 1)
    await ctx.sleep_for(0.05)


@task("effects")
async def effects(ctx: Context, n: int) -> int:
    """n steps, each its own call (a short sleep between), each with a side effect."""
    for i in range(n):
        await ctx.step.run(f"s{i}", _effect_step, ctx.run_id, f"s{i}")
        await ctx.sleep_for(0.05, name=f"pause{i}")
    return n


async def _effect_step(run_id: str, step: str) -> str:
    effect(run_id, step)
    await asyncio.sleep(0.05)
    return step


@task("big-output")
async def big_output(ctx: Context) -> str:
    try:
        await ctx.step.run("huge", lambda: "x" * (2 * 1024 * 1024))
    except StepError as exc:
        return exc.error_type
    return "no error"


@task("long-sleep")
async def long_sleep(ctx: Context) -> str:
    await ctx.sleep_for(timedelta(hours=24))
    return await ctx.step.run("after", lambda: "woke up")  # type: ignore[no-any-return]


_attempt_times: dict[str, list[float]] = {}


@task("timed-retry", retry=Retry(max_attempts=3, initial_delay=0.2, factor=2.0, jitter=0))
async def timed_retry(ctx: Context) -> list[float]:
    """Fails twice (retried after 0.2 s, then 0.4 s); returns when each attempt began."""
    times = _attempt_times.setdefault(ctx.run_id, [])
    times.append(time.time())
    if ctx.attempt < 2:
        raise RuntimeError(f"attempt {ctx.attempt} fails")
    return times


@task("slow-retry", retry=Retry(max_attempts=3, initial_delay=3.0, factor=1.0, jitter=0))
async def slow_retry(ctx: Context) -> int:
    """Fails once, retried 3 s later (the retry falls due during a database outage)."""
    if ctx.attempt < 1:
        raise RuntimeError("first attempt fails")
    return ctx.attempt


FUNCTIONS = [v for v in list(globals().values()) if type(v).__name__ == "Function"] + FLOWS

client = Client(app_id="testapp")


async def home(request: Any) -> JSONResponse:
    return JSONResponse({"ok": True})


app = Starlette(routes=[
    Route("/", home),
    Route("/api/durable", serve(client, FUNCTIONS), methods=["GET", "POST"]),
])
