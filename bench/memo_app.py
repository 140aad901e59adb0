"""An app with large memos, for bench/memory.py: ``bench-big-memo`` records ``n`` steps of
about 1 MiB each (the memo sent back on each call grows to ``n`` MiB)."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.routing import Route

from sdk import Client, Context, serve, task


@task("bench-big-memo")
async def big_memo(ctx: Context, n: int) -> int:
    total = 0
    for i in range(n):
        out = await ctx.step.run(f"s{i}", lambda i=i: f"{i:x}" * (1000 * 1024 // len(f"{i:x}")))
        total += len(out)
    return total


client = Client(app_id="bench-memo")
app = Starlette(routes=[Route("/api/durable", serve(client, [big_memo]),
                              methods=["GET", "POST"])])
