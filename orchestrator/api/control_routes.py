"""REST endpoints for bulk starts, schedules, crons, cancel and replay."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from orchestrator.api.parse import epoch, only, run_filter
from orchestrator.api.responses import (
    JSON,
    MAX_KEY_CHARS,
    engine_of,
    json_value,
    path_id,
    query_str,
    read_body,
    want_object,
    want_str,
)
from orchestrator.engine.control import FROM
from orchestrator.engine.engine import MAX_BULK, RunSpec
from orchestrator.errors import Invalid


async def bulk_runs(request: Request) -> JSON:
    """``{"function": f, "inputs": [...]}`` or ``{"runs": [{function, input,
    idempotency_key?}, ...]}``: all started in one transaction."""
    body = await read_body(request)
    specs: list[RunSpec] = []
    if "runs" in body:
        only(body, {"runs"})
        runs = body["runs"]
        if not isinstance(runs, list) or not runs:
            raise Invalid("'runs' must be a non-empty list", "runs")
        for i, r in enumerate(runs):
            r = want_object(r, f"runs[{i}]")
            only(r, {"function", "input", "idempotency_key"})
            fn = want_str(r, "function", where=f"runs[{i}].function")
            key = want_str(r, "idempotency_key", required=False,
                           where=f"runs[{i}].idempotency_key", max_chars=MAX_KEY_CHARS)
            json_value(r.get("input"), f"runs[{i}].input")
            assert fn is not None
            specs.append(RunSpec(fn, r.get("input"), key))
    else:
        only(body, {"function", "inputs"})
        fn = want_str(body, "function")
        inputs = body.get("inputs")
        if not isinstance(inputs, list) or not inputs:
            raise Invalid("'inputs' must be a non-empty list", "inputs")
        assert fn is not None
        for i, x in enumerate(inputs):
            json_value(x, f"inputs[{i}]")
        specs = [RunSpec(fn, x) for x in inputs]
    if len(specs) > MAX_BULK:
        raise Invalid(f"at most {MAX_BULK} runs per request", "runs")
    ids = await engine_of(request).start_runs(specs)
    return JSON({"ids": ids}, status_code=201)


async def cancel_run(request: Request) -> JSON:
    body = await read_body(request, empty_ok=True)
    only(body, {"reason"})
    reason = want_str(body, "reason", required=False)
    return JSON(await engine_of(request).cancel_run(path_id(request, "run_id"), reason))


async def cancel_runs(request: Request) -> JSON:
    body = await read_body(request)
    only(body, {"function", "status", "since", "until", "limit", "reason"})
    reason = want_str(body, "reason", required=False)
    return JSON(await engine_of(request).cancel_runs(run_filter(body), reason))


def _from(body: dict[str, Any]) -> str:
    start = body.get("from", "failed_step")
    if start not in FROM:
        raise Invalid(f"'from' must be one of {list(FROM)}", "from")
    return str(start)


async def replay_run(request: Request) -> JSON:
    body = await read_body(request, empty_ok=True)
    only(body, {"from", "input"})
    start = _from(body)
    if "input" in body and start != "start":
        raise Invalid("a new 'input' needs \"from\": \"start\"", "input")
    if "input" in body:
        json_value(body["input"], "input")
    kwargs = {"input": body["input"]} if "input" in body else {}
    return JSON(await engine_of(request).replay_run(path_id(request, "run_id"), start,
                                                  **kwargs))


async def replay_runs(request: Request) -> JSON:
    body = await read_body(request)
    only(body, {"function", "status", "since", "until", "limit", "from"})
    return JSON(await engine_of(request).replay_runs(run_filter(body), _from(body)))


async def create_schedule(request: Request) -> JSON:
    body = await read_body(request)
    only(body, {"function", "input", "at"})
    fn = want_str(body, "function")
    if "at" not in body:
        raise Invalid("'at' is required", "at")
    assert fn is not None
    at = epoch(body["at"], "at")
    json_value(body.get("input"), "input")
    out = await engine_of(request).create_schedule(fn, at, body.get("input"))
    return JSON(out, status_code=201)


async def list_schedules(request: Request) -> JSON:
    fn = query_str(request, "function")
    return JSON({"schedules": await engine_of(request).list_schedules(fn, 1000)})


async def get_schedule(request: Request) -> JSON:
    return JSON(await engine_of(request).get_schedule(path_id(request, "sid")))


async def delete_schedule(request: Request) -> Response:
    await engine_of(request).delete_schedule(path_id(request, "sid"))
    return Response(status_code=204)


async def create_cron(request: Request) -> JSON:
    body = await read_body(request)
    only(body, {"function", "expression", "timezone", "input"})
    fn = want_str(body, "function")
    expr = want_str(body, "expression")
    tz = want_str(body, "timezone", required=False) or "UTC"
    assert fn is not None and expr is not None
    json_value(body.get("input"), "input")
    out = await engine_of(request).create_cron(fn, expr, tz, body.get("input"))
    return JSON(out, status_code=201)


async def list_crons(request: Request) -> JSON:
    fn = query_str(request, "function")
    return JSON({"crons": await engine_of(request).list_crons(fn)})


async def delete_cron(request: Request) -> Response:
    await engine_of(request).delete_cron(path_id(request, "cid"))
    return Response(status_code=204)


ROUTES = [
    Route("/api/v1/runs/bulk", bulk_runs, methods=["POST"]),
    Route("/api/v1/runs/cancel", cancel_runs, methods=["POST"]),
    Route("/api/v1/runs/replay", replay_runs, methods=["POST"]),
    Route("/api/v1/runs/{run_id}/cancel", cancel_run, methods=["POST"]),
    Route("/api/v1/runs/{run_id}/replay", replay_run, methods=["POST"]),
    Route("/api/v1/schedules", create_schedule, methods=["POST"]),
    Route("/api/v1/schedules", list_schedules, methods=["GET"]),
    Route("/api/v1/schedules/{sid}", get_schedule, methods=["GET"]),
    Route("/api/v1/schedules/{sid}", delete_schedule, methods=["DELETE"]),
    Route("/api/v1/crons", create_cron, methods=["POST"]),
    Route("/api/v1/crons", list_crons, methods=["GET"]),
    Route("/api/v1/crons/{cid}", delete_cron, methods=["DELETE"]),
]
