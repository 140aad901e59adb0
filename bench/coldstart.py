"""Cold start: the SDK's import time, and each adapter's first call in a fresh process.

``python -m bench.coldstart --repeat 9`` starts a new interpreter per sample. Each
imports one of the example apps (``examples/functions/``: the SDK, the framework, the
app's functions and pydantic), then answers one signed invoke request of
``send-notification`` (a sync function with one step) in process, through the adapter's
own entry point (an ASGI call, a WSGI call, a Lambda event), then a second one (warm).
Medians are printed, and ``python -c pass`` so the interpreter's own start can be told
apart. ``--lean`` hides pygments and rich, as in a deployed bundle (httpx imports them
for its command line when they are installed, as they are in the dev virtualenv).
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import os
import statistics
import subprocess
import sys
import time
from typing import Any

from sdk import protocol as p
from tests.support import procs
from tests.support.lambda_shim import FakeContext, event_for, response_of
from tests.support.wsgi_call import wsgi_call

APPS = {
    "asgi": "examples.functions.app:app",
    "flask": "examples.functions.flask_app:app",
    "django": "examples.functions.django_app.wsgi:application",
    "lambda": "examples.functions.lambda_handler:handler",
}

# Runs in the fresh interpreter: argv[1] is the adapter, argv[2] its "module:attribute".
PROBE = r"""
import importlib, os, sys, time
if os.environ.get("COLDSTART_LEAN"):
    for m in ("pygments", "rich"):  # httpx imports them for its CLI when they are installed
        sys.modules[m] = None
t0 = time.perf_counter()
import sdk
t_sdk = time.perf_counter()
module, attr = sys.argv[2].split(":")
app = getattr(importlib.import_module(module), attr)
t_app = time.perf_counter()
from bench.coldstart import call
calls = []
for i in range(2):
    t = time.perf_counter()
    call(sys.argv[1], app, f"cold-{i}")
    calls.append(time.perf_counter() - t)
print({"sdk": t_sdk - t0, "app": t_app - t0, "first": calls[0], "second": calls[1]})
"""


def _request(call_id: str) -> tuple[bytes, dict[str, str]]:
    body = p.dumps(p.invoke_request(
        call_id=call_id, run_id=call_id, function="send-notification", attempt=0,
        input={"to": "ada@example.com"}, event=None, memo=[], budget_ms=10_000))
    return body, {**p.Signer(procs.SIGNING_KEY).sign(body), "content-type": "application/json"}


def _asgi(app: Any, body: bytes, headers: dict[str, str]) -> int:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(msg: dict[str, Any]) -> None:
        sent.append(msg)

    scope = {"type": "http", "method": "POST", "path": "/api/durable", "query_string": b"",
             "root_path": "", "headers": [(k.encode(), v.encode()) for k, v in headers.items()]}
    asyncio.run(app(scope, receive, send))
    return int(sent[0]["status"])


def _wsgi(app: Any, body: bytes, headers: dict[str, str]) -> int:
    return wsgi_call(app, "POST", body, headers)[0]


def _lambda(app: Any, body: bytes, headers: dict[str, str]) -> int:
    event = event_for("url", "POST", "/", list(headers.items()), body)
    return response_of(app(event, FakeContext()))[0]


CALLS = {"asgi": _asgi, "flask": _wsgi, "django": _wsgi, "lambda": _lambda}


def call(kind: str, app: Any, call_id: str) -> None:
    """One signed invoke request to ``app`` through adapter ``kind``'s entry point."""
    status = CALLS[kind](app, *_request(call_id))
    assert status == 200, status


def sample(kind: str, lean: bool) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(procs.ROOT), "DURABLE_SIGNING_KEY": procs.SIGNING_KEY,
           **({"COLDSTART_LEAN": "1"} if lean else {})}
    t = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", PROBE, kind, APPS[kind]], env=env,
                         cwd=procs.ROOT, capture_output=True, text=True, check=True)
    figures: dict[str, float] = ast.literal_eval(out.stdout.strip())
    figures["process"] = time.perf_counter() - t
    return figures


def bare_interpreter() -> float:
    t = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=9)
    ap.add_argument("--lean", action="store_true",
                    help="hide pygments and rich, which a deployed bundle does not have but "
                         "httpx imports (for its command line) wherever they are installed")
    args = ap.parse_args()
    bare = statistics.median(bare_interpreter() for _ in range(args.repeat))
    print(f"python -c pass: {bare * 1000:.0f} ms (the interpreter's own start)")
    samples: dict[str, list[dict[str, float]]] = {k: [] for k in APPS}
    for _ in range(args.repeat):
        for kind in APPS:  # alternating, so drift hits every adapter alike
            samples[kind].append(sample(kind, args.lean))
    print("| adapter | import sdk | import the app (with the SDK) | first call | second call "
          "| whole process |")
    print("|---|---|---|---|---|---|")
    for kind, xs in samples.items():
        med = {k: statistics.median(x[k] for x in xs) * 1000 for k in xs[0]}
        print(f"| {kind} | {med['sdk']:.0f} ms | {med['app']:.0f} ms | "
              f"{med['first']:.1f} ms | {med['second']:.1f} ms | {med['process']:.0f} ms |")


if __name__ == "__main__":
    main()
