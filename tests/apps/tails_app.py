"""An app for kept memos (tests/e2e/test_memo_tails.py): long loops of steps and sleeps,
behind a middleware that logs, per invoke request, its run, ``memo_from``, the length of
the memo it carries and the answer's status and ``memo_kept`` (one JSON line each, to
``TAILS_LOG``)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sdk import Client, Context, serve, task

LOG = Path(os.environ.get("TAILS_LOG", "/tmp/tails.log"))


@task("tails-loop")
async def loop(ctx: Context, spec: dict[str, Any]) -> int:
    """``n`` times a step (its output: the running total from ``base``), then a sleep
    (of ``pause`` seconds after step ``pause_at``, if given)."""
    total = int(spec.get("base", 0))
    for i in range(int(spec["n"])):
        total = await ctx.step.run("add", lambda i=i, t=total: t + i)
        pause = i == spec.get("pause_at")
        await ctx.sleep_for(float(spec["pause"] if pause else spec.get("sleep", 0.002)))
    return total


@task("tails-mutate")
async def mutate(ctx: Context, n: int) -> list[int]:
    """Changes what each step returned: a later replay must still see the recorded
    output (a kept memo is not the user's to change)."""
    seen: list[int] = []
    for i in range(n):
        xs = await ctx.step.run("list", lambda i=i: [i])
        seen.append(len(xs))
        xs.append(-1)
        await ctx.sleep_for(0.002)
    return seen


class Recorder:
    """Logs each invoke request's memo shape and its answer."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        more = True
        while more:
            msg = await receive()
            chunks.append(msg.get("body", b""))
            more = msg.get("more_body", False)
        body = b"".join(chunks)
        answer: list[bytes] = []
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if sent:
                return {"type": "http.disconnect"}
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        async def capture(msg: Message) -> None:
            if msg["type"] == "http.response.body":
                answer.append(msg.get("body", b""))
            await send(msg)

        await self.app(scope, replay, capture)
        try:
            req, ans = json.loads(body), json.loads(b"".join(answer))
        except ValueError:
            return
        if req.get("kind") == "invoke":
            with LOG.open("a") as f:
                f.write(json.dumps({
                    "run": req["run"]["id"], "call": req["call_id"],
                    "memo_from": req.get("memo_from", 0), "memo": len(req["memo"]),
                    "epoch": req.get("memo_epoch"), "status": ans.get("status"),
                    "kept": ans.get("memo_kept", 0)}) + "\n")


app = Recorder(Starlette(routes=[Route(
    "/api/durable", serve(Client(app_id="tails"), [loop, mutate]),
    methods=["GET", "POST"])]))
