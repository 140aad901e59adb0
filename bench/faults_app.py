"""The fault-injection harness's app (``python -m bench.faults``): a multi-step durable
task, a DAG workflow and a cron's function, each logging its side effects, behind an ASGI
middleware that answers some calls with 500, hangs past the call timeout, or drops the
connection.

Served by ``uvicorn bench.faults_app:app``. The environment names its files and odds:

- ``FAULTS_EFFECTS``: every execution of a step's body appends one JSON line
  ``{"run", "step", "call", "peer", "pid", "t"}`` (``call``: the call id it ran under;
  ``peer``: the TCP port the call came from, which tells the replica that sent it);
- ``FAULTS_LOG``: every fault injected appends ``{"call", "kind", "pid", "t"}``;
- ``FAULTS_SWITCH``: a file; faults are injected only while it reads ``on``;
- ``FAULT_P_ERROR``, ``FAULT_P_HANG``, ``FAULT_P_DROP``: the odds, per ``invoke`` call,
  of each fault (0 by default); ``FAULT_HANG_S``: how long a hang lasts (3 s);
  ``FAULT_SEED``: the generator's seed (the pid is added).

A fault is applied *after* the SDK ran the call: its steps ran and their side effects
happened, and the answer that would have recorded them is lost (a 500 instead, no
answer in time, or the TCP connection aborted), so the orchestrator has to call again
and the steps run again. Introspection is never faulted.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import os
import random
import time
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sdk import Client, Context, Retry, Workflow, serve, task

EFFECTS = os.environ.get("FAULTS_EFFECTS")
FAULTS = os.environ.get("FAULTS_LOG")
SWITCH = os.environ.get("FAULTS_SWITCH")
PATH = "/api/durable"
RETRY = Retry(max_attempts=100, initial_delay=0.1, factor=1.5, max_delay=1.0)
"""Generous: a hung call counts as a failed attempt (docs/architecture.md)."""

CHAIN_STEPS = 5
MOD = 1_000_000_007

_call: contextvars.ContextVar[tuple[str | None, int | None]] = contextvars.ContextVar(
    "call", default=(None, None))


def _append(path: str | None, record: dict[str, Any]) -> None:
    if path:
        line = (json.dumps(record, separators=(",", ":")) + "\n").encode()
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)


def effect(run_id: str, step: str) -> None:
    """One side effect of a step's body, logged with the call it ran under."""
    call, peer = _call.get()
    _append(EFFECTS, {"run": run_id, "step": step, "call": call, "peer": peer,
                      "pid": os.getpid(), "t": time.time()})


# -- the work -------------------------------------------------------------------------------

def chain_value(x: int, i: int, acc: int) -> int:
    """Step ``i``'s result: the harness computes the expected output the same way."""
    return (acc * 31 + x + i) % MOD


def chain_expected(x: int) -> int:
    acc = x
    for i in range(CHAIN_STEPS):
        acc = chain_value(x, i, acc)
    return acc


@task("fp-chain", retry=RETRY)
async def fp_chain(ctx: Context, x: int) -> dict[str, int]:
    """Five steps; a short sleep after each but the second (s1 and s2 share a call)."""
    acc = x
    for i in range(CHAIN_STEPS):
        acc = await ctx.step.run(f"s{i}", _chain_step, ctx.run_id, f"s{i}", x, i, acc)
        if i != 1:
            await ctx.sleep_for(0.05, name=f"pause{i}")
    return {"x": x, "result": acc}


async def _chain_step(run_id: str, step: str, x: int, i: int, acc: int) -> int:
    effect(run_id, step)
    await asyncio.sleep(0.02)
    return chain_value(x, i, acc)


dag = Workflow("fp-dag", retry=RETRY)
"""A diamond, three wide: top -> (left, mid, right) -> bottom."""


async def _value(run_id: str, step: str, value: int) -> int:
    effect(run_id, step)
    await asyncio.sleep(0.01)
    return value


@dag.task()
async def top(ctx: Context, n: int) -> int:
    return await ctx.step.run("top", _value, ctx.run_id, "top", n + 1)  # type: ignore[no-any-return]


@dag.task(parents=[top])
async def left(ctx: Context, n: int) -> int:
    return await ctx.step.run("left", _value, ctx.run_id, "left",  # type: ignore[no-any-return]
                              ctx.parent(top) * 2)


@dag.task(parents=[top])
async def mid(ctx: Context, n: int) -> int:
    first = await ctx.step.run("mid-a", _value, ctx.run_id, "mid-a", ctx.parent(top) * 3)
    return await ctx.step.run("mid-b", _value, ctx.run_id, "mid-b",  # type: ignore[no-any-return]
                              first + 1)


@dag.task(parents=[top])
async def right(ctx: Context, n: int) -> int:
    return await ctx.step.run("right", _value, ctx.run_id, "right",  # type: ignore[no-any-return]
                              ctx.parent(top) + 100)


@dag.task(parents=[left, mid, right])
async def bottom(ctx: Context, n: int) -> int:
    total = ctx.parent(left) + ctx.parent(mid) + ctx.parent(right)
    return await ctx.step.run("bottom", _value, ctx.run_id, "bottom",  # type: ignore[no-any-return]
                              total)


def dag_expected(n: int) -> dict[str, int]:
    """The workflow's output for input ``n``."""
    t = n + 1
    out = {"top": t, "left": t * 2, "mid": t * 3 + 1, "right": t + 100}
    out["bottom"] = out["left"] + out["mid"] + out["right"]
    return out


@task("fp-tick", retry=RETRY)
async def fp_tick(ctx: Context) -> str:
    """A cron's function: one side effect per fire."""
    await ctx.step.run("fire", _value, ctx.run_id, "fire", 1)
    return "fired"


FUNCTIONS = [fp_chain, dag, fp_tick]


# -- the fault injector ---------------------------------------------------------------------

class FaultInjector:
    """ASGI middleware in front of the SDK endpoint: runs each ``invoke`` call, then, by
    the odds, replaces its answer with a 500, hangs past the call timeout, or aborts the
    connection without answering."""

    def __init__(self, app: ASGIApp, *, p_error: float = 0.0, p_hang: float = 0.0,
                 p_drop: float = 0.0, hang_s: float = 3.0, seed: int = 0,
                 switch: str | None = None, log: str | None = None) -> None:
        self.app = app
        self.p_error, self.p_hang, self.p_drop = p_error, p_hang, p_drop
        self.hang_s = hang_s
        self.rng = random.Random(seed * 100_003 + os.getpid())
        self.switch = switch
        self.log = log

    def _on(self) -> bool:
        if not self.switch:
            return True
        try:
            with open(self.switch) as f:
                return f.read().strip() == "on"
        except OSError:
            return False

    def _pick(self) -> str | None:
        r = self.rng.random()
        for kind, p in (("error", self.p_error), ("hang", self.p_hang),
                        ("drop", self.p_drop)):
            if r < p:
                return kind
            r -= p
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != PATH:
            await self.app(scope, receive, send)
            return
        chunks = []
        more = True
        while more:
            msg = await receive()
            if msg["type"] != "http.request":
                return  # the client went away
            chunks.append(msg.get("body", b""))
            more = msg.get("more_body", False)
        body = b"".join(chunks)
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        call = kind = None
        try:
            req = json.loads(body)
            if isinstance(req, dict) and req.get("kind") == "invoke":
                call = req.get("call_id")
        except ValueError:
            pass
        if call is not None and self._on():
            kind = self._pick()
        client = scope.get("client")
        token = _call.set((call if isinstance(call, str) else None,
                           client[1] if client else None))
        try:
            if kind is None:
                await self.app(scope, replay, send)
                return
            answer: list[Message] = []

            async def keep(msg: Message) -> None:
                answer.append(msg)

            await self.app(scope, replay, keep)
        finally:
            _call.reset(token)
        _append(self.log, {"call": call, "kind": kind, "pid": os.getpid(), "t": time.time()})
        if kind == "error":
            await JSONResponse({"error": {"code": "injected", "message": "fault"}},
                               status_code=500)(scope, replay, send)
        elif kind == "hang":
            await asyncio.sleep(self.hang_s)
            for msg in answer:  # to a caller that gave up: it reads nothing
                await send(msg)
        else:
            await self._drop(send)

    async def _drop(self, send: Send) -> None:
        """Abort the TCP connection, no byte of an answer sent. uvicorn's ``send`` is a
        bound method of the request cycle, which holds the transport; elsewhere the
        headers are sent and the app raises (the server then closes the connection)."""
        transport = getattr(getattr(send, "__self__", None), "transport", None)
        if transport is not None and hasattr(transport, "abort"):
            transport.abort()
            await asyncio.sleep(0.05)  # the server sees the connection lost, sends nothing
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        raise ConnectionAbortedError("injected drop")


def _env_float(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


client = Client(app_id="faults-app")


async def home(request: Request) -> JSONResponse:
    return JSONResponse({"app": "faults-app", "functions": [f.name for f in FUNCTIONS]})


app = FaultInjector(  # outermost: ``send`` is then the server's own (``_drop``)
    Starlette(routes=[Route("/", home),
                      Route(PATH, serve(client, FUNCTIONS), methods=["GET", "POST"])]),
    p_error=_env_float("FAULT_P_ERROR", 0.0), p_hang=_env_float("FAULT_P_HANG", 0.0),
    p_drop=_env_float("FAULT_P_DROP", 0.0), hang_s=_env_float("FAULT_HANG_S", 3.0),
    seed=int(os.environ.get("FAULT_SEED", "0")), switch=SWITCH, log=FAULTS)
