"""REST endpoints for bulk starts, schedules, crons, cancel and replay."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from orchestrator.api.bodies import (
    BulkInputs,
    BulkRunList,
    CancelRun,
    CancelRuns,
    CreateCron,
    CreateSchedule,
    ReplayRun,
    ReplayRuns,
)
from orchestrator.api.fields import validated
from orchestrator.api.parse import run_filter
from orchestrator.api.responses import JSON, engine_of, path_id, query_str, read_body, read_json
from orchestrator.api.route_table import MAX_SCHEDULES
from orchestrator.engine.engine import RunSpec
from orchestrator.errors import Invalid


async def bulk_runs(request: Request) -> JSON:
    """``{"function": f, "inputs": [...]}`` or ``{"runs": [{function, input,
    idempotency_key?}, ...]}``: all started in one transaction."""
    raw = await read_json(request, engine_of(request).settings.max_body_bytes)
    specs: list[RunSpec]
    if isinstance(raw, dict) and "runs" in raw:
        runs = validated(BulkRunList, raw).runs
        specs = [RunSpec(r.function, r.input, r.idempotency_key, r.priority) for r in runs]
    else:
        body = validated(BulkInputs, raw)
        specs = [RunSpec(body.function, x, priority=body.priority) for x in body.inputs]
    ids = await engine_of(request).start_runs(specs)
    return JSON({"ids": ids}, status_code=201)


async def cancel_run(request: Request) -> JSON:
    body = await read_body(request, CancelRun, empty_ok=True)
    return JSON(await engine_of(request).cancel_run(path_id(request, "run_id"), body.reason))


async def cancel_runs(request: Request) -> JSON:
    body = await read_body(request, CancelRuns)
    return JSON(await engine_of(request).cancel_runs(run_filter(body), body.reason))


async def replay_run(request: Request) -> JSON:
    body = await read_body(request, ReplayRun, empty_ok=True)
    new_input = "input" in body.model_fields_set
    if new_input and body.start != "start":
        raise Invalid("a new 'input' needs \"from\": \"start\"", "input")
    kwargs = {"input": body.input} if new_input else {}
    return JSON(await engine_of(request).replay_run(path_id(request, "run_id"), body.start,
                                                  **kwargs))


async def replay_runs(request: Request) -> JSON:
    body = await read_body(request, ReplayRuns)
    return JSON(await engine_of(request).replay_runs(run_filter(body), body.start))


async def create_schedule(request: Request) -> JSON:
    body = await read_body(request, CreateSchedule)
    out = await engine_of(request).create_schedule(body.function, body.at, body.input,
                                                   body.priority)
    return JSON(out, status_code=201)


async def list_schedules(request: Request) -> JSON:
    fn = query_str(request, "function")
    return JSON({"schedules": await engine_of(request).list_schedules(fn, MAX_SCHEDULES)})


async def get_schedule(request: Request) -> JSON:
    return JSON(await engine_of(request).get_schedule(path_id(request, "sid")))


async def delete_schedule(request: Request) -> Response:
    await engine_of(request).delete_schedule(path_id(request, "sid"))
    return Response(status_code=204)


async def create_cron(request: Request) -> JSON:
    body = await read_body(request, CreateCron)
    out = await engine_of(request).create_cron(body.function, body.expression,
                                               body.timezone or "UTC", body.input)
    return JSON(out, status_code=201)


async def list_crons(request: Request) -> JSON:
    fn = query_str(request, "function")
    return JSON({"crons": await engine_of(request).list_crons(fn)})


async def delete_cron(request: Request) -> Response:
    await engine_of(request).delete_cron(path_id(request, "cid"))
    return Response(status_code=204)


async def get_cron(request: Request) -> JSON:
    return JSON(await engine_of(request).get_cron(path_id(request, "cid")))


async def pause_cron(request: Request) -> JSON:
    return JSON(await engine_of(request).pause_cron(path_id(request, "cid")))


async def resume_cron(request: Request) -> JSON:
    return JSON(await engine_of(request).resume_cron(path_id(request, "cid")))


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
    Route("/api/v1/crons/{cid}", get_cron, methods=["GET"]),
    Route("/api/v1/crons/{cid}/pause", pause_cron, methods=["POST"]),
    Route("/api/v1/crons/{cid}/resume", resume_cron, methods=["POST"]),
]
