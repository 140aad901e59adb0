"""An app that declares broken workflows (each path a different mistake), to check that
the orchestrator refuses them at registration. The SDK itself cannot declare most of
these (parents must be declared first), but an app in another language could."""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sdk import protocol as p
from tests.support.procs import SIGNING_KEY


def _wf(tasks: list[dict[str, Any]]) -> dict[str, Any]:
    return {"name": "broken", "kind": "workflow", "triggers": [], "tasks": tasks}


CASES = {
    "cycle": _wf([{"name": "a", "parents": ["c"]}, {"name": "b", "parents": ["a"]},
                  {"name": "c", "parents": ["b"]}]),
    "unknown-parent": _wf([{"name": "a", "parents": []}, {"name": "b", "parents": ["x"]}]),
    "duplicate": _wf([{"name": "a", "parents": []}, {"name": "a", "parents": []}]),
    "bad-cron": {"name": "crony", "kind": "task", "crons": [{"expression": "* * *"}]},
}


async def introspect(request: Request) -> Response:
    signer = p.Signer(SIGNING_KEY)
    signer.verify(await request.body(), request.headers)
    case = request.path_params["case"]
    body = p.dumps({"v": p.VERSION, "app_id": f"bad-{case}", "sdk": "hand-made",
                    "functions": [CASES[case]]})
    return Response(body, headers={"content-type": "application/json", **signer.sign(body)})


async def forged(request: Request) -> Response:
    """Introspects honestly, but signs its invoke answers with another key."""
    body = await request.body()
    p.Signer(SIGNING_KEY).verify(body, request.headers)
    msg = p.loads(body)
    if msg["kind"] == p.Kind.INTROSPECT:
        out = p.dumps({"v": p.VERSION, "app_id": "forger", "sdk": "hand-made", "functions": [
            {"name": "forged-fn", "kind": "task", "triggers": [], "retry": {}}]})
        return Response(out, headers={"content-type": "application/json",
                                      **p.Signer(SIGNING_KEY).sign(out)})
    answer = p.dumps({"v": p.VERSION, "call_id": msg["call_id"], "status": "complete",
                      "steps": [], "events": [], "output": "forged!"})
    return Response(answer, headers={"content-type": "application/json",
                                     **p.Signer("not-the-key").sign(answer)})


_renames = 0


async def renamed(request: Request) -> Response:
    """Reports a new app id on every introspection (an app replaced by another one at the
    same URL)."""
    global _renames
    signer = p.Signer(SIGNING_KEY)
    signer.verify(await request.body(), request.headers)
    _renames += 1
    body = p.dumps({"v": p.VERSION, "app_id": f"renamed-{_renames}", "sdk": "hand-made",
                    "functions": [{"name": f"renamed-fn-{_renames}", "kind": "task",
                                   "triggers": [], "retry": {}}]})
    return Response(body, headers={"content-type": "application/json", **signer.sign(body)})


async def home(request: Request) -> Response:
    return Response("ok")


app = Starlette(routes=[Route("/", home), Route("/forged", forged, methods=["POST"]),
                        Route("/renamed", renamed, methods=["POST"]),
                        Route("/{case}", introspect, methods=["POST"])])
