"""An app with its own OpenTelemetry spans, for tests/e2e/test_tracing.py: spans go to
the file named by TRACED_SPANS, and the ``traceparent`` of each request received is
appended to TRACED_HEADERS."""

from __future__ import annotations

import os
from typing import Any

from opentelemetry import trace
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from sdk import Client, Context, serve, task
from sdk.asgi import Receive, Scope, Send
from tests.support.otel_boot import to_file

to_file(os.environ["TRACED_SPANS"], "traced-app")
tracer = trace.get_tracer("traced-app")


@task("traced")
async def traced(ctx: Context, n: int) -> int:
    """A step, a sleep, then a step that starts a span of the app's own."""
    first = await ctx.step.run("first", _double, n)
    await ctx.sleep_for(0.2, name="nap")
    return int(await ctx.step.run("second", _own_span, first))


async def _double(n: int) -> int:
    return 2 * n


async def _own_span(n: int) -> int:
    with tracer.start_as_current_span("app work") as span:
        span.set_attribute("app.n", n)
        return n + 1


class RecordTraceparent:
    """Appends each POST's ``traceparent`` header (or ``-``) to TRACED_HEADERS."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            headers = dict(scope["headers"])
            with open(os.environ["TRACED_HEADERS"], "a") as f:
                f.write(headers.get(b"traceparent", b"-").decode() + "\n")
        await self.app(scope, receive, send)


async def home(request: Any) -> JSONResponse:
    return JSONResponse({"ok": True})


app = Starlette(routes=[
    Route("/", home),
    Route("/api/durable", RecordTraceparent(serve(Client(app_id="traced"), [traced])),
          methods=["GET", "POST"]),
])
