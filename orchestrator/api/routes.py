"""REST endpoints. Handlers validate input and call the engine; no SQL here."""

from __future__ import annotations

import re
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from orchestrator.api.bodies import (
    MAX_EVENTS_PER_REQUEST,
    STATUSES,
    CreateRun,
    Event,
    RegisterApp,
    RotateKey,
    UpdateApp,
)
from orchestrator.api.fields import MAX_ID_CHARS, validated
from orchestrator.api.openapi import document
from orchestrator.api.parse import float_param, time_param
from orchestrator.api.responses import JSON, engine_of, path_id, query_str, read_body, read_json
from orchestrator.api.route_table import (
    DEFAULT_PAGE,
    DEFAULT_WAIT,
    MAX_CURSOR_CHARS,
    MAX_PAGE,
    MAX_WAIT,
)
from orchestrator.engine.metrics import CONTENT_TYPE as METRICS_TYPE
from orchestrator.errors import ApiError, Invalid

#: A run id, as ``next_cursor`` gives it (the empty string: the first page).
CURSOR_RE = re.compile(r"[0-9a-f]{0,64}")


async def healthz(request: Request) -> JSON:
    return JSON({"status": "ok"})


async def readyz(request: Request) -> JSON:
    """200 when ready; 503 with the reasons (component -> why) when the database cannot
    be reached or is full, or a background loop is in its failure backoff."""
    problems = await engine_of(request).health()
    if not problems:
        return JSON({"status": "ready"})
    return JSON({"status": "not ready", "problems": problems}, status_code=503,
                headers={"Retry-After": "5"})


async def metrics(request: Request) -> Response:
    """Prometheus text format: this replica's counters, the shared queue's gauges."""
    return Response(await engine_of(request).metrics_text(), media_type=METRICS_TYPE)


async def openapi(request: Request) -> JSON:
    return JSON(document())


async def register_app(request: Request) -> JSON:
    body = await read_body(request, RegisterApp)
    return JSON(await engine_of(request).register_app(
        body.url, body.signing_key, body.budget_ms, generate_key=body.generate_key),
        status_code=200)


async def update_app(request: Request) -> JSON:
    app_id = path_id(request, "app_id")
    body = await read_body(request, UpdateApp)
    return JSON(await engine_of(request).set_app_budget(app_id, body.budget_ms))


async def rotate_key(request: Request) -> JSON:
    app_id = path_id(request, "app_id")
    body = await read_body(request, RotateKey, empty_ok=True)
    return JSON(await engine_of(request).rotate_app_key(app_id, body.key), status_code=201)


async def drop_fallback_key(request: Request) -> Response:
    await engine_of(request).drop_app_fallback_key(path_id(request, "app_id"))
    return Response(status_code=204)


async def list_apps(request: Request) -> JSON:
    return JSON({"apps": await engine_of(request).list_apps()})


async def list_functions(request: Request) -> JSON:
    return JSON({"functions": await engine_of(request).list_functions()})


def _event(value: object, where: str) -> dict[str, Any]:
    ev = validated(Event, value, where)
    return {"id": ev.id, "name": ev.name, "data": ev.data, "ts": ev.ts}


async def send_events(request: Request) -> JSON:
    body = await read_json(request, engine_of(request).settings.max_body_bytes)
    if isinstance(body, list):
        if not body:
            raise Invalid("the event list is empty", "body")
        if len(body) > MAX_EVENTS_PER_REQUEST:
            raise Invalid(f"at most {MAX_EVENTS_PER_REQUEST} events per request", "body")
        events = [_event(e, f"body[{i}]") for i, e in enumerate(body)]
    else:
        events = [_event(body, "body")]
    return JSON(await engine_of(request).send_events(events), status_code=202)


async def list_events(request: Request) -> JSON:
    limit = int(float_param(request, "limit", DEFAULT_PAGE, 1, MAX_PAGE))
    cursor = query_str(request, "cursor", MAX_CURSOR_CHARS)
    return JSON(await engine_of(request).list_events(query_str(request, "name"), limit,
                                                   cursor or None))


async def get_event(request: Request) -> JSON:
    return JSON(await engine_of(request).get_event(path_id(request, "event_id")))


async def get_function(request: Request) -> JSON:
    return JSON(await engine_of(request).get_function(path_id(request, "name")))


async def create_run(request: Request) -> JSON:
    """Start a run; with ``?wait=<seconds>``, also wait up to that long for it to end and
    answer with the run (as ``GET /runs/{id}/wait`` does)."""
    wait = float_param(request, "wait", -1.0, 0.0, MAX_WAIT) \
        if "wait" in request.query_params else None
    body = await read_body(request, CreateRun)
    engine = engine_of(request)
    out = await engine.start_run(body.function, body.input, body.idempotency_key,
                                 body.priority)
    if wait is not None:
        out = await engine.wait_run(out["id"], wait, fresh=True)
    return JSON(out, status_code=201)


async def get_run(request: Request) -> JSON:
    return JSON(await engine_of(request).get_run(path_id(request, "run_id")))


async def wait_run(request: Request) -> JSON:
    timeout = float_param(request, "timeout", DEFAULT_WAIT, 0.0, MAX_WAIT)
    return JSON(await engine_of(request).wait_run(path_id(request, "run_id"), timeout))


async def list_runs(request: Request) -> JSON:
    q = request.query_params
    status = q.get("status")
    if status is not None and status not in STATUSES:
        raise Invalid(f"'status' must be one of {list(STATUSES)}", "status")
    limit = int(float_param(request, "limit", DEFAULT_PAGE, 1, MAX_PAGE))
    cursor = q.get("cursor")
    if cursor is not None and not CURSOR_RE.fullmatch(cursor):
        raise ApiError("'cursor' is not a cursor this API gave (a 'next_cursor')", "cursor")
    since, until = time_param(request, "since"), time_param(request, "until")
    event_id = query_str(request, "event_id", MAX_ID_CHARS) or None
    return JSON(await engine_of(request).list_runs(query_str(request, "function"), status,
                                                 limit, cursor or None, since=since,
                                                 until=until, event_id=event_id))


async def count_runs(request: Request) -> JSON:
    """Runs per status of a function (or all) in a time range."""
    since, until = time_param(request, "since"), time_param(request, "until")
    return JSON(await engine_of(request).count_runs(query_str(request, "function"),
                                                  since, until))


ROUTES = [
    Route("/healthz", healthz),
    Route("/readyz", readyz),
    Route("/metrics", metrics),
    Route("/api/v1/openapi.json", openapi),
    Route("/api/v1/apps", register_app, methods=["POST"]),
    Route("/api/v1/apps", list_apps, methods=["GET"]),
    Route("/api/v1/apps/{app_id}", update_app, methods=["PATCH"]),
    Route("/api/v1/apps/{app_id}/keys", rotate_key, methods=["POST"]),
    Route("/api/v1/apps/{app_id}/keys/fallback", drop_fallback_key, methods=["DELETE"]),
    Route("/api/v1/functions", list_functions, methods=["GET"]),
    Route("/api/v1/functions/{name}", get_function, methods=["GET"]),
    Route("/api/v1/events", send_events, methods=["POST"]),
    Route("/api/v1/events", list_events, methods=["GET"]),
    Route("/api/v1/events/{event_id}", get_event, methods=["GET"]),
    Route("/api/v1/runs", create_run, methods=["POST"]),
    Route("/api/v1/runs", list_runs, methods=["GET"]),
    Route("/api/v1/runs/counts", count_runs, methods=["GET"]),  # before /runs/{run_id}
    Route("/api/v1/runs/{run_id}", get_run, methods=["GET"]),
    Route("/api/v1/runs/{run_id}/wait", wait_run, methods=["GET"]),
]
